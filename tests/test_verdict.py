"""Every rule of :mod:`audiodup.verdict` on hand-built evidence: the floors of ``decide``, the
rules that combine channels, and the chance models with and without a background sample."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from audiodup.match import AlignedLine, ChromaEvidence, HashEvidence
from audiodup.peakcheck import Alignment, PeakCheck, confirms_recording
from audiodup.results import Match
from audiodup.screening import (
    ChromaFinding,
    Evidence,
    HashFinding,
    PeakFinding,
    matches_from_evidence,
    score_hashes,
)
from audiodup.settings import DEFAULT_SETTINGS as S
from audiodup.verdict import (
    MAX_SCORE,
    MIN_LINE_HASHES,
    chance_excess_scale,
    channels_agree,
    chroma_false_match_probability,
    chroma_null_sample,
    clears_floor,
    combine_hash_and_chroma,
    combine_peaks_and_chroma,
    decide,
    hash_false_match_probability,
    peak_false_match_probability,
    score_from_probability,
    tempo_windows,
    transforms_agree,
)

FPS = S.frames_per_second
N_WORKS = 1000


def hashed(
    work_id: int = 1,
    main_inliers: int = 20,
    votes: int = 100,
    tempo: float = 1.0,
    pitch: float = 0.0,
    ref_start_s: float = 10.0,
) -> HashEvidence:
    """Hash lines whose main line maps upload 0 s to reference ``ref_start_s``."""
    line = AlignedLine(0.0, 30 * FPS, ref_start_s * FPS, (ref_start_s + 30 * tempo) * FPS, 1)
    empty = np.zeros(0)
    return HashEvidence(
        work_id, votes, main_inliers, main_inliers, tempo, pitch, (line,), 30.0, empty, empty
    )


def chroma(
    work_id: int = 1,
    similarity: float = 0.8,
    tempo: float = 1.0,
    pitch: float = 0.0,
    query_start_s: float = 5.0,
    ref_start_s: float = 15.0,
) -> ChromaEvidence:
    return ChromaEvidence(
        work_id,
        similarity,
        tempo,
        pitch,
        query_start_s,
        query_start_s + 20,
        ref_start_s,
        ref_start_s + 20,
    )


def check(
    matched: int = 40, checked: int = 100, chance: float = 5.0, probability: float = 1e-12
) -> PeakCheck:
    """A peak check whose coinciding peaks span 20 s of the upload."""
    frames = np.linspace(0.0, 20 * FPS, matched)
    alignment = Alignment(1.0, 0.0, 0.0, 10 * FPS)
    return PeakCheck(alignment, matched, checked, chance, probability, frames, True, matched)


def match(**fields) -> Match:
    """A duplicate-looking same-recording match; ``fields`` override."""
    values = dict(
        work_id=1,
        path="work.ogg",
        title=None,
        relation="same_recording",
        score=9.0,
        false_match_probability=1e-9,
        tempo_ratio=1.0,
        pitch_shift_semitones=0.0,
        query_start_s=0.0,
        query_end_s=30.0,
        ref_start_s=0.0,
        ref_end_s=30.0,
        coverage=1.0,
        coverage_s=30.0,
        matched_hashes=S.duplicate_min_hashes,
        chroma_similarity=None,
    )
    return Match(**{**values, **fields})


# -- decide and its floors -------------------------------------------------------------------------
def test_a_certain_long_same_recording_with_enough_hashes_is_a_duplicate() -> None:
    assert decide([match()], S) == "duplicate"


def test_nothing_matched_is_clean() -> None:
    assert decide([], S) == "clean"


@pytest.mark.parametrize(
    ("fields", "label"),
    [
        ({"relation": "same_composition", "false_match_probability": 1e-30}, "suspect"),
        ({"coverage_s": S.min_coverage_s - 0.1}, "suspect"),
        ({"false_match_probability": S.duplicate_max_fmp * 10}, "suspect"),
        ({"false_match_probability": S.suspect_max_fmp}, "suspect"),
        ({"false_match_probability": S.suspect_max_fmp * 10}, "clean"),
        ({"false_match_probability": S.duplicate_max_fmp}, "duplicate"),
        ({"coverage_s": S.min_coverage_s}, "duplicate"),
    ],
)
def test_relation_probability_and_coverage_thresholds(fields: dict, label: str) -> None:
    assert decide([match(**fields)], S) == label


def test_any_duplicate_among_the_matches_decides() -> None:
    weak = match(false_match_probability=1e-4, work_id=2)
    assert decide([weak, match()], S) == "duplicate"
    assert decide([weak], S) == "suspect"


@pytest.mark.parametrize(
    ("hashes", "peaks", "chroma_confirmed", "label"),
    [
        (S.duplicate_min_hashes, None, False, "duplicate"),
        (S.duplicate_min_hashes - 1, None, False, "suspect"),
        (0, S.duplicate_min_peaks, False, "duplicate"),
        (0, S.duplicate_min_peaks - 1, False, "suspect"),
        (S.duplicate_min_hashes - 1, S.duplicate_min_peaks - 1, True, "duplicate"),
    ],
)
def test_a_duplicate_needs_one_channel_over_its_floor(
    hashes: int, peaks: int | None, chroma_confirmed: bool, label: str
) -> None:
    m = match(matched_hashes=hashes, matched_peaks=peaks, chroma_confirmed=chroma_confirmed)
    assert clears_floor(m, S) is (label == "duplicate")
    assert decide([m], S) == label


def test_a_shown_chroma_similarity_does_not_skip_the_peak_floor() -> None:
    """A peak-only match led by an insignificant chroma alignment shows its similarity; that is
    no evidence, so with hashes and peaks under their floors it is not a duplicate. (HEAD before
    screening.py accepted ``or m.chroma_similarity`` and called it one.)"""
    m = match(
        matched_hashes=S.duplicate_min_hashes - 1,
        matched_peaks=S.duplicate_min_peaks - 1,
        chroma_similarity=0.55,
    )
    assert decide([m], S) == "suspect"


# -- combining channels ----------------------------------------------------------------------------
def test_hash_and_chroma_probabilities_multiply_and_pay_the_search_once() -> None:
    assert combine_hash_and_chroma(1e-4, 1e-2, 100) == pytest.approx(1e-8)
    assert combine_hash_and_chroma(1.0, 1.0, 1) == 1.0


def test_a_peak_check_alone_pays_for_every_work_searched() -> None:
    assert peak_false_match_probability(1e-9, N_WORKS) == pytest.approx(1e-6)
    assert peak_false_match_probability(0.01, N_WORKS) == 1.0


@pytest.mark.parametrize(
    ("chroma_fmp", "expected"),
    [
        (None, 1e-9 * N_WORKS),
        (S.suspect_max_fmp * 10, 1e-9 * N_WORKS),  # not significant: the check alone
        (S.suspect_max_fmp, 1e-9 * S.suspect_max_fmp),
        (1e-5, 1e-9 * 1e-5),
    ],
)
def test_peaks_multiply_with_a_significant_chroma_alignment_only(
    chroma_fmp: float | None, expected: float
) -> None:
    fmp = combine_peaks_and_chroma(1e-9, N_WORKS, chroma_fmp, S, confirmed=True)
    assert fmp == pytest.approx(expected)


def test_transforms_agree_on_tempo_pitch_modulo_octave_and_offset() -> None:
    h = hashed(pitch=12.0)
    assert transforms_agree(h, chroma(pitch=0.0), S)  # chroma knows pitch modulo an octave
    assert transforms_agree(h, chroma(ref_start_s=16.9), S)
    assert not transforms_agree(h, chroma(ref_start_s=17.5), S)
    assert not transforms_agree(h, chroma(pitch=1.0), S)
    assert not transforms_agree(h, chroma(tempo=1.05), S)
    assert transforms_agree(
        hashed(tempo=1.02, ref_start_s=10.0), chroma(tempo=1.0, ref_start_s=15.1), S
    )


def test_channels_agree_needs_agreeing_transforms_and_a_confirming_check() -> None:
    confirming, related = check(), check(matched=40, checked=200, chance=5.0)
    assert confirms_recording(confirming, S) and not confirms_recording(related, S)
    assert channels_agree(hashed(), chroma(), confirming, S)
    assert not channels_agree(hashed(), chroma(), None, S)
    assert not channels_agree(hashed(), chroma(), related, S)
    assert not channels_agree(hashed(), chroma(tempo=1.1), confirming, S)


# -- chance models ---------------------------------------------------------------------------------
def background(n: int, main_inliers: int, votes: int = 1000) -> list[HashEvidence]:
    return [hashed(work_id=10 + i, main_inliers=main_inliers, votes=votes) for i in range(n)]


def test_the_chance_excess_scale_needs_eight_background_works() -> None:
    top = [hashed(work_id=1, main_inliers=200)]
    noisy = background(7, main_inliers=MIN_LINE_HASHES + 5)
    assert chance_excess_scale(top + noisy, {1}, S) == 1.0
    noisy = background(8, main_inliers=MIN_LINE_HASHES + 5)
    prior = S.chance_excess_base + S.chance_excess_per_vote * 1000
    assert chance_excess_scale(top + noisy, {1}, S) == pytest.approx(5 / prior)
    # the excluded works are not background, and a quiet background never lowers the prior
    assert chance_excess_scale(top + noisy, {1} | {e.work_id for e in noisy}, S) == 1.0
    assert chance_excess_scale(background(8, MIN_LINE_HASHES), set(), S) == 1.0


def test_hash_false_match_probability_is_a_geometric_tail_times_the_works() -> None:
    mean = S.chance_excess_base + S.chance_excess_per_vote * 100
    e = hashed(main_inliers=MIN_LINE_HASHES + 10, votes=100)
    expected = (mean / (1 + mean)) ** 10 * N_WORKS
    assert hash_false_match_probability(e, 1.0, N_WORKS, S) == pytest.approx(expected)
    scaled = (2 * mean / (1 + 2 * mean)) ** 10 * N_WORKS
    assert hash_false_match_probability(e, 2.0, N_WORKS, S) == pytest.approx(scaled)
    assert hash_false_match_probability(hashed(main_inliers=MIN_LINE_HASHES), 1.0, 5, S) == 1.0


def tail(votes: int, excess: int) -> float:
    mean = S.chance_excess_base + S.chance_excess_per_vote * votes
    return (mean / (1 + mean)) ** excess


def by_inliers(probability: float) -> float:
    """A bound on the most inliers on one line, paid its share of the budget."""
    return probability / (1.0 - S.hash_own_tail_share)


def test_with_the_hits_the_search_is_paid_by_the_works_that_could_give_the_line() -> None:
    e = hashed(work_id=0, main_inliers=MIN_LINE_HASHES + 10, votes=100)
    alone = hash_false_match_probability(e, 1.0, 1, S)
    assert alone == pytest.approx(tail(100, 10))
    # a million works with fewer hits than the line's 13 inliers cannot give it: they do not pay
    quiet = np.r_[100, np.full(1_000_000, 12)]
    assert hash_false_match_probability(e, 1.0, len(quiet), S, quiet) == pytest.approx(
        by_inliers(alone)
    )
    # works with enough hits each pay their own tail (more hits, a heavier tail)
    busy = np.r_[100, np.full(999, 12), 13, 500]
    expected = tail(100, 10) + tail(13, 10) + tail(500, 10)
    assert hash_false_match_probability(e, 1.0, len(busy), S, busy) == pytest.approx(
        by_inliers(expected)
    )
    scaled = sum(
        (2 * m / (1 + 2 * m)) ** 10
        for m in (S.chance_excess_base + S.chance_excess_per_vote * v for v in (100, 13, 500))
    )
    assert hash_false_match_probability(e, 2.0, len(busy), S, busy) == pytest.approx(
        by_inliers(scaled)
    )
    # the matched work always competes, even when the hits given are someone else's
    assert hash_false_match_probability(e, 1.0, 5, S, np.zeros(5)) == pytest.approx(
        by_inliers(alone)
    )
    assert hash_false_match_probability(hashed(main_inliers=MIN_LINE_HASHES), 1.0, 5, S, busy) == 1


def test_a_line_rare_among_its_own_hits_is_paid_over_the_works_that_could_be_as_rare() -> None:
    """A line of 23 inliers among its work's 672 hits, in a catalog of 10^5 works of ~500 chance
    hits each and a few of ~10,000 (measured at 10^5 works: `airship_remix`'s tempo 0.93 chain).
    Most inliers on a line, the works of 10,000 hits could give 23 by chance; given its own hits
    the line is far rarer, and every work could be as rare: each pays its tail."""
    rng = np.random.default_rng(6)
    hits = np.r_[672, rng.poisson(500, 99_990), np.full(9, 9_756)]
    e = hashed(work_id=0, main_inliers=23, votes=672)
    fmp = hash_false_match_probability(e, 1.0, len(hits), S, hits)
    inliers_alone = tail(9_756, 20) * 9 + tail(672, 20)
    assert inliers_alone > S.duplicate_max_fmp  # the first search alone leaves it a suspect
    assert fmp == pytest.approx(tail(672, 20) * len(hits) / S.hash_own_tail_share)
    assert fmp < S.duplicate_max_fmp
    # a work whose hits all fall on one line cannot be rarer than its tail: few hits, few rivals
    few = np.r_[672, np.full(99_999, 10)]
    assert hash_false_match_probability(e, 1.0, len(few), S, few) == pytest.approx(
        by_inliers(tail(672, 20))
    )


def test_one_query_s_lines_are_scored_as_each_alone() -> None:
    """``score_hashes`` scores a query's lines against one competition, its sums kept per line
    strength: each line's probability is the one it gets alone, whatever the order."""
    rng = np.random.default_rng(8)
    hits = np.r_[rng.poisson(30, 5_000), rng.poisson(900, 50)].astype(np.float64)
    lines = [
        hashed(work_id=w, main_inliers=inliers, votes=votes)
        for w, (inliers, votes) in enumerate(
            [(4, 40), (4, 900), (9, 35), (9, 1200), (23, 672), (23, 30), (3, 10)]
        )
    ]
    # four lines outside the strongest three are too few to fit a background: scale 1
    alone = {e.work_id: hash_false_match_probability(e, 1.0, len(hits), S, hits) for e in lines}
    assert alone[5] < alone[4] < 1e-6  # the same inliers among fewer hits: rarer
    for order in (lines, lines[::-1]):
        scored = score_hashes(order, len(hits), S, hits[rng.permutation(len(hits))])
        assert {w: f.false_match_probability for w, f in scored.items()} == pytest.approx(
            alone, rel=1e-12
        )


def test_a_chance_line_among_few_hits_stays_below_duplicate_in_a_large_catalog() -> None:
    """The chance case of the per-work search: a work with 20 hits, 10 of them on one line (a
    drum loop shared by two unrelated tracks), among 10^6 works of a few hits each, and a
    few thousand with hundreds: every work could give a line as rare, so it is not even a
    suspect."""
    rng = np.random.default_rng(7)
    hits = np.r_[20, rng.poisson(20, 10**6 - 3_001), rng.poisson(400, 3_000)]
    e = hashed(work_id=0, main_inliers=10, votes=20)
    assert hash_false_match_probability(e, 1.0, len(hits), S, hits) > S.suspect_max_fmp


def test_a_true_copy_stays_a_duplicate_as_the_catalog_grows() -> None:
    """A copy whose line holds 16 inliers among 40 hits, in catalogs of 10^2 to 10^7 works whose
    other works get a few chance hits each from a 5-s upload (Poisson, mean 2): paid over every
    work it falls to suspect at 10^7 works; paid over the works in competition it stays."""
    rng = np.random.default_rng(3)
    copy = hashed(work_id=0, main_inliers=16, votes=40)
    chance = [hashed(work_id=w, main_inliers=4, votes=9) for w in range(1, 9)]
    labels, old_labels = [], []
    for n_works in (10**2, 10**4, 10**5, 10**6, 10**7):
        hits = np.r_[40, np.minimum(rng.poisson(2.0, n_works - 1), 11)]
        hits[1:9] = 9
        scored = score_hashes([copy, *chance], n_works, S, hits)
        labels.append(decide(list(combine(Evidence(n_works, scored)).values()), S))
        old = score_hashes([copy, *chance], n_works, S)
        old_labels.append(decide(list(combine(Evidence(n_works, old)).values()), S))
    assert labels == ["duplicate"] * 5
    assert old_labels[:3] == ["duplicate"] * 3 and old_labels[-1] != "duplicate"


def test_a_chance_line_stays_below_duplicate_in_a_large_catalog() -> None:
    """A short excerpt of a never-indexed track: its best chance line holds 9 inliers, among
    10^6 works of which thousands got that many hits (Poisson, mean 4). They all compete, so
    the line is no duplicate, nor a suspect."""
    rng = np.random.default_rng(4)
    n_works = 10**6
    hits = rng.poisson(4.0, n_works)
    best = hashed(work_id=int(np.argmax(hits)), main_inliers=9, votes=int(hits.max()))
    scored = score_hashes([best], n_works, S, hits)
    assert decide(list(combine(Evidence(n_works, scored)).values()), S) == "clean"
    assert scored[best.work_id].false_match_probability > S.suspect_max_fmp


@pytest.mark.parametrize("mean_hits", [3.0, 30.0, "mixed"])
def test_the_competing_works_hash_fmp_is_calibrated_when_chance_is_the_model(
    mean_hits,
) -> None:
    """Simulated queries against 2,000 works: every work gets Poisson hits (mixed: 1 % of the
    works 100 times as many) and, when chance is what the model says, a line whose excess is
    geometric given its hits (capped by them). The reported line's FMP (the least of the most
    inliers' and the rarest given its hits') has share(FMP <= p) <= p."""
    rng = np.random.default_rng(5)
    n_works, n_queries = 2000, 3000
    fmps = []
    for _ in range(n_queries):
        if mean_hits == "mixed":
            hits = rng.poisson(np.where(rng.random(n_works) < 0.01, 300.0, 3.0))
        else:
            hits = rng.poisson(mean_hits, n_works)
        mean = S.chance_excess_base + S.chance_excess_per_vote * hits
        # geometric excess: P(excess >= k) = (mean / (1 + mean)) ** k
        excess = rng.geometric(1.0 / (1.0 + mean)) - 1
        inliers = np.minimum(MIN_LINE_HASHES + excess, hits)
        lines = np.flatnonzero(hits >= MIN_LINE_HASHES)
        if len(lines) == 0:
            fmps.append(1.0)
            continue
        rarest = mean[lines] ** (inliers[lines] - MIN_LINE_HASHES) / (1.0 + mean[lines]) ** (
            inliers[lines] - MIN_LINE_HASHES
        )
        best = {lines[np.argmax(inliers[lines])], lines[np.argmin(rarest)]}
        fmps.append(
            min(
                hash_false_match_probability(
                    hashed(work_id=int(w), main_inliers=int(inliers[w]), votes=int(hits[w])),
                    1.0,
                    n_works,
                    S,
                    hits,
                )
                for w in best
            )
        )
    fmps = np.array(fmps)
    for p in (0.1, 0.01):
        k = int(np.sum(fmps <= p))
        assert k <= stats.binom.ppf(0.999, n_queries, p), (p, k)
    assert np.mean(fmps <= 0.5) > 0.01  # not vacuous: chance sometimes looks likely


def blocks_of(
    work_id: int, maxima, best_block: int = 0, ref_frames: int = 900, similarity: float = 0.5
) -> ChromaEvidence:
    """An alignment of ``work_id`` whose reference blocks reached ``maxima``."""
    ev = chroma(work_id=work_id, similarity=similarity)
    return dataclasses.replace(
        ev,
        block_maxima=np.asarray(maxima, dtype=np.float32),
        best_block=best_block,
        ref_frames=ref_frames,
    )


def test_the_chance_sample_leaves_out_the_match_and_the_blocks_beside_it() -> None:
    tested = blocks_of(1, [0.1, 0.2, 0.9, 0.3, 0.4, 0.5], best_block=2)
    other = blocks_of(2, [0.6, 0.7], best_block=0)
    null = chroma_null_sample([tested, other], 1)
    assert sorted(null.round(3)) == [0.1, 0.4, 0.5, 0.6, 0.7]  # blocks 1-3 of work 1 left out
    assert sorted(chroma_null_sample([tested, other], 2).round(3)) == [
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.9,
    ]  # all of work 1, none of work 2's two blocks


def test_chroma_fmp_is_the_weibull_tail_of_the_query_own_blocks() -> None:
    rng = np.random.default_rng(0)
    null = 1.0 - 0.5 * rng.weibull(20.0, 40)  # block maxima near 0.5
    aligned = [blocks_of(w, null[w * 10 : w * 10 + 10], best_block=-5) for w in range(4)]
    ev = dataclasses.replace(aligned[0], similarity=0.9)
    gap = np.log(1.0 - null)
    alpha = np.pi / (np.sqrt(6.0) * np.std(gap, ddof=1) * (1 + S.chance_fit_margin / np.sqrt(40)))
    sigma = np.exp(np.mean(gap) + np.euler_gamma / alpha)
    tests = 100 * 6 * tempo_windows(S)  # 900 frames at 5 fps: six 30-s blocks per work
    expected = 1.0 - np.exp(-tests * (0.1 / sigma) ** alpha)
    assert chroma_false_match_probability(ev, aligned, S, 100) == pytest.approx(expected)
    # more works, a weaker alignment, or a query chance favours more: less significant
    fmp = chroma_false_match_probability(ev, aligned, S, 100)
    assert chroma_false_match_probability(ev, aligned, S, 10_000) > fmp
    assert 1e-9 < fmp < 1e-2
    weaker = dataclasses.replace(ev, similarity=0.85)
    assert chroma_false_match_probability(weaker, aligned, S, 100) > fmp
    easier = [blocks_of(b.work_id, 0.5 + 0.5 * b.block_maxima, -5) for b in aligned]
    assert chroma_false_match_probability(ev, easier, S, 100) > fmp
    assert tempo_windows(S) == pytest.approx(np.log(4.0) / np.log(S.chroma_scale_step**2))


@pytest.mark.parametrize("n_works", [10, 1000])
def test_chroma_fmp_is_calibrated_when_chance_is_what_the_blocks_say(n_works: int) -> None:
    """Simulated queries: every query has its own chance law (a reversed Weibull of random
    shape and scale), its candidates show 8 x 6 blocks of it, and the best chance alignment in the
    catalog is the largest of all the catalog's blocks. The share of FMP <= p stays under p."""
    rng = np.random.default_rng(12)
    n_queries = 4000
    tests = n_works * 6 * tempo_windows(S)
    fmps = []
    for _ in range(n_queries):
        alpha, sigma = rng.uniform(3.0, 30.0), rng.uniform(0.3, 0.9)
        null = 1.0 - sigma * rng.weibull(alpha, 48)
        # the catalog maximum by inverting P(max <= x) = exp(-tests * ((1 - x) / sigma) ** alpha)
        top = 1.0 - sigma * (-np.log(rng.random()) / tests) ** (1.0 / alpha)
        aligned = [blocks_of(w, null[w * 6 : w * 6 + 6], best_block=-5) for w in range(8)]
        best = dataclasses.replace(aligned[0], similarity=float(top))
        fmps.append(chroma_false_match_probability(best, aligned, S, n_works))
    fmps = np.array(fmps)
    for p in (0.1, 0.01):
        k = int(np.sum(fmps <= p))
        # at most p, up to binomial noise: a one-sided 99.9 % bound under share p
        assert k <= stats.binom.ppf(0.999, n_queries, p), (p, k)
    assert np.mean(fmps <= 0.5) > 0.05  # not vacuous: chance sometimes looks likely


def test_with_few_blocks_the_prior_applies_widened_for_short_alignments() -> None:
    few = [blocks_of(1, [0.5] * 3, best_block=-5)]
    ev = dataclasses.replace(few[0], similarity=0.9)  # a 20-s alignment (chroma())
    z = (0.9 - S.chance_chroma_mean) / (S.chance_chroma_std * np.sqrt(S.chance_block_s / 20))
    assert chroma_false_match_probability(ev, few, S, 10) == pytest.approx(stats.norm.sf(z) * 10)
    long = dataclasses.replace(ev, query_start_s=0.0, query_end_s=60.0)
    z = (0.9 - S.chance_chroma_mean) / S.chance_chroma_std
    assert chroma_false_match_probability(long, few, S, 10) == pytest.approx(stats.norm.sf(z) * 10)
    assert chroma_false_match_probability(dataclasses.replace(ev, similarity=0.0), [], S, 10) == 1


def test_score_is_minus_log10_of_the_probability_capped() -> None:
    assert score_from_probability(1e-5) == pytest.approx(5.0)
    assert score_from_probability(0.0) == MAX_SCORE
    assert score_from_probability(1e-400) == MAX_SCORE


# -- the rules as screening applies them -----------------------------------------------------------
class NoWorks:
    """A catalog that knows no names (matches show an empty path)."""

    def work(self, work_id: int) -> None:
        return None

    def fingerprint(self, work_id: int):
        raise AssertionError("combining reads no fingerprint")


QUERY = SimpleNamespace(duration_s=30.0)


def combine(evidence: Evidence) -> dict[int, Match]:
    return {m.work_id: m for m in matches_from_evidence(evidence, QUERY, S, NoWorks())}


def test_hash_lines_alone_make_a_recording_match_and_weak_ones_none() -> None:
    evidence = Evidence(N_WORKS, {1: HashFinding(hashed(), 1e-8), 2: HashFinding(hashed(2), 0.1)})
    found = combine(evidence)
    assert list(found) == [1]
    assert found[1].relation == "same_recording" and not found[1].chroma_confirmed
    assert found[1].chroma_similarity is None and found[1].matched_peaks is None
    assert found[1].matched_onsets is None


def test_agreeing_hashes_and_chroma_confirmed_by_peaks_combine() -> None:
    peaks = PeakFinding(1, check(probability=0.5), None)
    evidence = Evidence(
        N_WORKS, {1: HashFinding(hashed(), 1e-4)}, (ChromaFinding(chroma(), 1e-2),), {1: peaks}
    )
    m = combine(evidence)[1]
    assert m.false_match_probability == pytest.approx(1e-4 * 1e-2 / N_WORKS)
    assert m.chroma_confirmed and m.chroma_similarity == 0.8 and m.matched_peaks == 40
    assert m.matched_onsets == 40  # check() gives every coinciding peak its own onset
    assert decide([m], S) == "duplicate"
    # without the peaks' confirmation the hash line stands alone
    alone = combine(Evidence(N_WORKS, evidence.hashes, evidence.chroma))[1]
    assert alone.false_match_probability == 1e-4 and not alone.chroma_confirmed


def test_chroma_alone_is_at_most_a_composition() -> None:
    evidence = Evidence(N_WORKS, {}, (ChromaFinding(chroma(similarity=0.9), 1e-9),))
    m = combine(evidence)[1]
    assert m.relation == "same_composition" and m.matched_hashes == 0
    assert decide([m], S) == "suspect"
    weak = Evidence(
        N_WORKS, {}, (ChromaFinding(chroma(similarity=S.chroma_min_similarity - 0.01), 1e-9),)
    )
    assert combine(weak) == {}


def test_a_peak_check_led_by_an_insignificant_chroma_alignment_is_no_duplicate() -> None:
    """The floor skip end to end: the check's own probability is tiny, the chroma alignment
    that led it is not significant, hashes and peaks are under their floors."""
    led = ChromaFinding(chroma(similarity=0.55), 0.5)
    few = check(matched=S.duplicate_min_peaks - 1, checked=20, chance=1.0, probability=1e-15)
    evidence = Evidence(N_WORKS, {}, (led,), {1: PeakFinding(1, few, led)})
    m = combine(evidence)[1]
    assert m.false_match_probability == pytest.approx(1e-15 * N_WORKS)
    assert m.chroma_similarity == 0.55 and not m.chroma_confirmed
    assert m.coverage_s >= S.min_coverage_s
    assert decide([m], S) == "suspect"


def test_a_significant_chroma_alignment_multiplies_with_its_peaks() -> None:
    led = ChromaFinding(chroma(similarity=0.7), 1e-4)
    evidence = Evidence(N_WORKS, {}, (led,), {1: PeakFinding(1, check(probability=1e-9), led)})
    m = combine(evidence)[1]
    assert m.relation == "same_recording"
    assert m.false_match_probability == pytest.approx(1e-9 * 1e-4)
    assert m.matched_peaks == 40 and m.matched_onsets == 40 and decide([m], S) == "duplicate"


def test_a_peak_check_replaces_a_weaker_match_only() -> None:
    hashes = {1: HashFinding(hashed(), 1e-5)}
    better = Evidence(N_WORKS, hashes, (), {1: PeakFinding(1, check(probability=1e-12), None)})
    assert combine(better)[1].false_match_probability == pytest.approx(1e-9)
    worse = Evidence(N_WORKS, hashes, (), {1: PeakFinding(1, check(probability=1e-7), None)})
    assert combine(worse)[1].false_match_probability == 1e-5


def test_peaks_that_do_not_confirm_the_recording_do_not_borrow_the_chroma_probability() -> None:
    """A check under its floors has probability 1: multiplied with a significant chroma alignment
    it used to give the chroma probability itself, as a same recording, and replace a weaker hash
    match; a re-arrangement (same chords, other recording) then read as a duplicate."""
    assert combine_peaks_and_chroma(1.0, N_WORKS, 1e-9, S, confirmed=False) == 1.0
    led = ChromaFinding(chroma(similarity=0.95), 1e-9)
    unconfirmed = check(matched=40, checked=200, chance=30.0, probability=1.0)
    assert not confirms_recording(unconfirmed, S)
    weak_line = hashed(main_inliers=5, tempo=1.3)  # another transform: channels do not agree
    evidence = Evidence(
        N_WORKS, {1: HashFinding(weak_line, 1e-4)}, (led,), {1: PeakFinding(1, unconfirmed, led)}
    )
    m = combine(evidence)[1]
    assert m.false_match_probability == 1e-4  # the hash line's own, not the chroma one
    assert decide([m], S) != "duplicate"


def test_matches_come_most_certain_first() -> None:
    evidence = Evidence(
        N_WORKS, {w: HashFinding(hashed(w), fmp) for w, fmp in [(1, 1e-4), (2, 1e-9), (3, 1e-6)]}
    )
    assert [m.work_id for m in matches_from_evidence(evidence, QUERY, S, NoWorks())] == [2, 3, 1]
