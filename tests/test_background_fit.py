"""Material many works hold, and the per-query background fit of :mod:`audiodup.verdict`, run
on real screening evidence.

Chance hash lines are modelled with a prior mean excess (``chance_excess_base`` +
``chance_excess_per_vote * votes``); per query, the verified works outside the three strongest
lines are a background sample that can only raise that mean (``chance_excess_scale``, which
needs 8 or more of them). The bundled fixtures (6 works) and unrelated synthetic music never get
there: unrelated works give too few candidates with verified lines.

Here every catalog work carries the same 4 s sample (the same recording spliced in at a different
place in each: loop-based music shares samples that way), so an upload that holds the sample
verifies a line in every work. Those lines are no chance: they say which material the upload
holds, not which work it copies. Since session 44 they are marked as material many works hold
(:func:`audiodup.screening.shared_lines`) and leave the background (before, the fit held them
down, and with them a copy's own line in a catalog where 16 works held a sample:
``benchmarks/STOCK_SAMPLES.md``).

Chroma chance is measured per query from block maxima of the same search (issue #12), not by a
background fit; ``tests/test_chroma_calibration.py`` and ``tests/test_verdict.py`` test it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pedalboard
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st
from scipy.signal import resample_poly

from audiodup import Catalog
from audiodup.audio import load_audio
from audiodup.fingerprint import Fingerprint, fingerprint_audio
from audiodup.match import AlignedLine, HashEvidence
from audiodup.screening import (
    Evidence,
    HashFinding,
    gather_evidence,
    hash_candidates,
    lines_off_stretches,
    matches_from_evidence,
    one_recording,
    own_line_probability,
    score_hashes,
    score_lines,
    shared_lines,
    stored_hashes,
)
from audiodup.settings import DEFAULT_SETTINGS as S
from audiodup.synth import synthesize_work
from audiodup.verdict import (
    MIN_LINE_HASHES,
    chance_excess_scale,
    decide,
    hash_false_match_probability,
)

SR = 22050
N_WORKS = 24
WORK_S = 30.0
SAMPLE_S = 4.0  # longer than min_coverage_s: a line through the sample alone could be decisive
SAMPLE = synthesize_work(1000, SAMPLE_S, SR)  # a seed no catalog work uses
MIN_BACKGROUND = 8  # chance_excess_scale and chroma_false_match_probability use no fewer


def sample_start_s(seed: int) -> float:
    """Where work ``seed`` holds the shared sample: spread over the work, different per work."""
    return 0.5 + (seed * 7.3) % (WORK_S - SAMPLE_S - 1.0)


def work_audio(seed: int, *, with_sample: bool = True) -> np.ndarray:
    """A distinct synthetic piece with the shared sample spliced in (replacing its music)."""
    y = synthesize_work(seed, WORK_S, SR).astype(np.float64)
    if with_sample:
        start = round(sample_start_s(seed) * SR)
        y[start : start + len(SAMPLE)] = SAMPLE
    return (0.9 * y / np.max(np.abs(y))).astype(np.float32)


def change_speed(y: np.ndarray, speed: float) -> np.ndarray:
    ratio = Fraction(speed).limit_denominator(100)
    return resample_poly(y, ratio.denominator, ratio.numerator)


def time_stretch(y: np.ndarray, tempo_ratio: float, semitones: float) -> np.ndarray:
    return pedalboard.time_stretch(
        y[None, :], SR, stretch_factor=tempo_ratio, pitch_shift_in_semitones=semitones
    )[0]


def fingerprint_upload(y: np.ndarray, path: Path) -> Fingerprint:
    y = np.asarray(y, dtype=np.float32)
    sf.write(path, 0.9 * y / np.max(np.abs(y)), SR)
    return fingerprint_audio(load_audio(path, S), S, query=True)


@pytest.fixture(scope="module")
def shared_sample_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    """A catalog of ``N_WORKS`` distinct works that all hold the shared sample."""
    works = tmp_path_factory.mktemp("shared-sample") / "works"
    works.mkdir()
    for seed in range(N_WORKS):
        sf.write(works / f"w{seed:02d}.wav", work_audio(seed), SR)
    with Catalog.open(works.parent / "catalog") as catalog:
        results = catalog.add_paths([works])
        assert [r.status for r in results] == ["added"] * N_WORKS
        yield catalog


def work_id(catalog: Catalog, seed: int) -> int:
    return next(w.work_id for w in catalog.works() if Path(w.path).stem == f"w{seed:02d}")


def background(evidence: Evidence) -> list[HashEvidence]:
    """The works that form the hash background: all but the three strongest lines."""
    ranked = sorted(evidence.hashes.values(), key=lambda f: -f.evidence.main_inliers)
    return [f.evidence for f in ranked[3:]]


def fitted_scale(evidence: Evidence) -> float:
    hashed = [f.evidence for f in evidence.hashes.values()]
    top = {e.work_id for e in sorted(hashed, key=lambda e: -e.main_inliers)[:3]}
    return chance_excess_scale(hashed, top, S)


def hits_of(query: Fingerprint, catalog: Catalog) -> np.ndarray:
    """The retrieved hits of each work that got some: they say the works in competition."""
    return hash_candidates(query, catalog.indexes(), S)[1]


def without_the_fit(evidence: Evidence, hits: np.ndarray) -> Evidence:
    """The evidence scored with the prior alone (scale 1), as screening gathers it then: a hash
    line that is decisive under the prior ends the search before chroma and peaks."""
    hashes = {
        w: HashFinding(
            f.evidence, hash_false_match_probability(f.evidence, 1.0, evidence.n_works, S, hits)
        )
        for w, f in evidence.hashes.items()
    }
    if any(f.false_match_probability <= S.duplicate_max_fmp for f in hashes.values()):
        return Evidence(evidence.n_works, hashes)
    return replace(evidence, hashes=hashes)


def on_the_sample(evidence: Evidence) -> list[HashFinding]:
    """The lines marked as material many works hold: each no evidence."""
    marked = [f for f in evidence.hashes.values() if f.shared_with]
    assert all(f.false_match_probability == 1.0 for f in marked)
    assert all(f.shared_with >= S.shared_material_works for f in marked)
    return marked


# (seed of the work copied, make(y), tempo_ratio, pitch_shift_semitones)
COPIES = {
    "speed_1.1": (3, lambda y: change_speed(y, 1.1), 1.1, 12 * np.log2(1.1)),
    "stretch_1.15_pitch_-2": (10, lambda y: time_stretch(y, 1.15, -2.0), 1.15, -2.0),
}


@pytest.mark.parametrize("name", list(COPIES))
def test_an_altered_copy_is_found_beside_the_lines_on_the_sample(
    shared_sample_catalog: Catalog, tmp_path: Path, name: str
) -> None:
    """The other works' lines on the sample are marked and leave the background; the copied
    work's line, which holds the sample and the rest of the work, stays and decides."""
    catalog = shared_sample_catalog
    seed, make, tempo_ratio, semitones = COPIES[name]
    query = fingerprint_upload(make(work_audio(seed)), tmp_path / f"{name}.wav")
    evidence = gather_evidence(query, catalog.indexes(), S, catalog.store)
    assert len(on_the_sample(evidence)) >= MIN_BACKGROUND
    copied = work_id(catalog, seed)
    line = evidence.hashes[copied]
    assert line.shared_with == 0 and line.false_match_probability <= S.duplicate_max_fmp
    matches = matches_from_evidence(evidence, query, S, catalog.store)
    assert decide(matches, S) == "duplicate"
    top = matches[0]
    assert top.work_id == copied and top.relation == "same_recording"
    assert top.tempo_ratio == pytest.approx(tempo_ratio, rel=0.02)
    assert top.pitch_shift_semitones == pytest.approx(semitones, abs=0.3)
    assert top.coverage_s >= 0.6 * WORK_S / tempo_ratio  # the copy's line, not the 4-s sample
    # its hits on the sample are shown, and its probability is that of the others
    assert 0 < top.matched_on_shared_material == line.hits_on_shared < top.matched_hashes
    assert line.false_match_probability == own_line_probability(
        replace(line, false_match_probability=0.0), line.hits_on_shared
    )


@pytest.mark.parametrize("seed", [500, 501])
def test_an_upload_sharing_only_the_sample_is_no_duplicate(
    shared_sample_catalog: Catalog, tmp_path: Path, seed: int
) -> None:
    """Other music holding the sample: every line that holds material is on the sample and
    marked. Scored as chance lines under the prior (as before session 44 without the fit),
    the best of them would make the upload a duplicate of one of the works that hold it."""
    catalog = shared_sample_catalog
    query = fingerprint_upload(work_audio(seed), tmp_path / f"unrelated_{seed}.wav")
    evidence = gather_evidence(query, catalog.indexes(), S, catalog.store)
    assert len(on_the_sample(evidence)) >= MIN_BACKGROUND
    assert min(f.false_match_probability for f in evidence.hashes.values()) > S.suspect_max_fmp
    matches = matches_from_evidence(evidence, query, S, catalog.store)
    assert decide(matches, S) == "clean"
    prior_only = without_the_fit(evidence, hits_of(query, catalog))
    best = min(f.false_match_probability for f in prior_only.hashes.values())
    assert best <= S.duplicate_max_fmp
    assert decide(matches_from_evidence(prior_only, query, S, catalog.store), S) == "duplicate"


SAMPLED = replace(S, whole_lookup_max_entries=0, max_query_hits=3_000)


def test_an_upload_sharing_only_the_sample_is_no_duplicate_after_a_sampled_look_up(
    shared_sample_catalog: Catalog, tmp_path: Path
) -> None:
    """The same upload as above, its look-up sampled as in a catalog of more than
    ``whole_lookup_max_entries`` (here by a budget of 3,000 hits): the hash lines stay below
    `suspect` as above, and the checks the four-peak votes lead land on the 4-s sample in every
    work they check. Each such check is as far above chance as a copy's (one, 26 of 78 peaks,
    made this upload a duplicate before session 44), but the other works' checks hold the same
    upload peaks: material many works share confirms none of them
    (:func:`audiodup.peakcheck.shared_material`)."""
    catalog = shared_sample_catalog
    query = fingerprint_upload(work_audio(500), tmp_path / "unrelated_500.wav")
    evidence = gather_evidence(query, catalog.indexes(), SAMPLED, catalog.store)
    assert min(f.false_match_probability for f in evidence.hashes.values()) > S.suspect_max_fmp
    on_the_sample = [
        f.check
        for f in evidence.peaks.values()
        if f.check.matched_peaks >= S.peak_check_min_ratio * f.check.chance_peaks
    ]
    assert len(on_the_sample) > S.shared_material_works
    # those that clear the rate floor too would each be a recording's evidence on their own
    alone = [c for c in on_the_sample if c.matched_peaks >= S.peak_check_min_rate * c.checked_peaks]
    assert alone and all(c.shared_with >= S.shared_material_works for c in alone)
    assert all(f.probability == 1.0 for f in evidence.peaks.values())
    matches = matches_from_evidence(evidence, query, SAMPLED, catalog.store)
    assert decide(matches, SAMPLED) == "clean"


@pytest.mark.parametrize("name", list(COPIES))
def test_an_altered_copy_is_found_after_a_sampled_look_up(
    shared_sample_catalog: Catalog, tmp_path: Path, name: str
) -> None:
    """A copy of one of the works that hold the sample: the other works share its sample's
    seconds only, the copied work lines up over the whole upload."""
    catalog = shared_sample_catalog
    seed, make, tempo_ratio, semitones = COPIES[name]
    query = fingerprint_upload(make(work_audio(seed)), tmp_path / f"{name}.wav")
    evidence = gather_evidence(query, catalog.indexes(), SAMPLED, catalog.store)
    matches = matches_from_evidence(evidence, query, SAMPLED, catalog.store)
    assert decide(matches, SAMPLED) == "duplicate"
    top = matches[0]
    assert top.work_id == work_id(catalog, seed)
    assert top.tempo_ratio == pytest.approx(tempo_ratio, rel=0.02)
    assert top.pitch_shift_semitones == pytest.approx(semitones, abs=0.3)


def test_an_unrelated_upload_without_the_sample_has_no_background(
    shared_sample_catalog: Catalog, tmp_path: Path
) -> None:
    catalog = shared_sample_catalog
    query = fingerprint_upload(work_audio(500, with_sample=False), tmp_path / "unrelated.wav")
    evidence = gather_evidence(query, catalog.indexes(), S, catalog.store)
    assert len(background(evidence)) < MIN_BACKGROUND and fitted_scale(evidence) == 1.0
    assert decide(matches_from_evidence(evidence, query, S, catalog.store), S) == "clean"


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


def test_a_copy_is_found_where_the_catalog_already_holds_copies_of_its_work(
    catalog_copy: Path, tmp_path: Path
) -> None:
    """Four sped-up or slowed copies of a work already in the catalog (uploads the service
    recorded, say) line up with a new copy of it over the whole upload, each: a recording
    several works hold, no short material. Before session 45 one of them, whose line the
    verifier cut in three sections, made a stretch of its hits over nearly all the upload, and
    every line was no evidence (the copy fell back to its peak check, once to `suspect`)."""
    y, sr = sf.read(FIXTURES / "catalog" / "work_02.ogg", dtype="float32")
    for speed in (0.8, 0.9, 1.1, 1.2):
        sf.write(tmp_path / f"w2_speed_{speed}.wav", change_speed(y, speed), sr)
    upload = FIXTURES / "uploads" / "stretch_1.25_work_02.ogg"
    with Catalog.open(catalog_copy) as catalog:
        added = catalog.add_paths(sorted(tmp_path.glob("w2_speed_*.wav")))
        assert [r.status for r in added] == ["added"] * 4
        query = fingerprint_audio(load_audio(upload, S), S, query=True)
        evidence = gather_evidence(query, catalog.indexes(), S, catalog.store)
        assert not any(f.shared_with for f in evidence.hashes.values())
        own = next(w.work_id for w in catalog.works() if Path(w.path).name == "work_02.ogg")
        assert evidence.hashes[own].false_match_probability <= S.duplicate_max_fmp
        verdict = catalog.screen(upload, top_k=5)
    assert verdict.verdict == "duplicate"
    family = {own} | {r.work_id for r in added}  # one recording: any of them may come first
    assert {m.work_id for m in verdict.matches} <= family
    assert all(m.false_match_probability < 1e-15 for m in verdict.matches[:3])


def test_part_of_a_work_the_catalog_holds_three_times_is_found_within_other_music(
    catalog_copy: Path, tmp_path: Path
) -> None:
    """20 s of a work within other music, the catalog holding the work and two earlier copies
    of it: three works line up with the same 20 s, as with a sample three songs hold. But they
    are one recording (:func:`audiodup.screening.one_recording`), and hold it once: the copy is
    a duplicate (before session 45 it was clean; ``benchmarks/RECORDED_COPIES.md``)."""
    y, sr = sf.read(FIXTURES / "catalog" / "work_02.ogg", dtype="float32")
    earlier = [tmp_path / f"w2_speed_{speed}.wav" for speed in (0.9, 1.1)]
    for path, speed in zip(earlier, (0.9, 1.1), strict=True):
        sf.write(path, change_speed(y, speed), sr)
    other = synthesize_work(777, 60.0, sr).astype(np.float32)
    part = y[10 * sr : 30 * sr]
    other[20 * sr : 40 * sr] = part * np.sqrt(np.mean(other**2) / np.mean(part**2))
    upload = tmp_path / "inside.wav"
    sf.write(upload, 0.9 * other / np.max(np.abs(other)), sr)
    with Catalog.open(catalog_copy) as catalog:
        added = catalog.add_paths(earlier)
        own = next(w.work_id for w in catalog.works() if Path(w.path).name == "work_02.ogg")
        family = {own} | {r.work_id for r in added}
        reference = catalog.fingerprint
        related = one_recording(reference, stored_hashes(reference, S), S)
        assert related(*sorted(family)[:2]) and related(*sorted(family)[1:])
        assert not any(related(own, w.work_id) for w in catalog.works() if w.work_id not in family)
        verdict = catalog.screen(upload)
    assert verdict.verdict == "duplicate" and verdict.matches[0].work_id in family
    assert verdict.matches[0].query_start_s == pytest.approx(20.0, abs=2.0)


def test_a_short_work_that_is_mostly_the_sample_is_no_copy_of_a_work_holding_it(
    tmp_path: Path,
) -> None:
    """A 6-s jingle that is little more than the 4-s sample lines up with most of itself in
    every work holding the sample, but with a sixth of such a work: no copy of it (the share
    is the longer's), so the sample stays material three recordings hold and other music
    holding it stays clean. (Judged by the shorter, the jingle was a copy of a 30-s work, two
    recordings held the sample, and the upload was a `duplicate`: a review's finding.)"""
    works = tmp_path / "works"
    works.mkdir()
    for seed in (1, 2):
        sf.write(works / f"w{seed:02d}.wav", work_audio(seed), SR)
    jingle = synthesize_work(2000, 6.0, SR).astype(np.float64)
    jingle[SR : SR + len(SAMPLE)] = SAMPLE
    sf.write(works / "zjingle.wav", (0.9 * jingle / np.max(np.abs(jingle))).astype(np.float32), SR)
    upload = tmp_path / "other_music.wav"
    sf.write(upload, work_audio(500), SR)
    with Catalog.open(tmp_path / "catalog") as catalog:
        assert [r.status for r in catalog.add_paths([works])] == ["added"] * 3
        ids = {Path(w.path).stem: w.work_id for w in catalog.works()}
        related = one_recording(catalog.fingerprint, stored_hashes(catalog.fingerprint, S), S)
        assert not any(related(ids[w], ids["zjingle"]) for w in ("w01", "w02"))
        verdict = catalog.screen(upload)
    assert verdict.verdict == "clean", verdict.matches


def test_a_line_that_stays_is_scored_on_its_hits_beyond_the_shared_seconds() -> None:
    """The excerpt above, scored as its look scores lines (one competition): its 9 hits on the
    sample's seconds would be there in other music holding the sample, so its probability is
    that of a line of its 21 other hits, far less certain than all 30 would say, and still a
    duplicate's. Scored again with the same stretches, it stays the same."""
    sample = [line_over(w, 10.0, 14.0, 1.0).evidence for w in (1, 2, 3)]
    excerpt = line_over(4, 5.0, 19.5, 1.0, hits=30).evidence
    hits = np.full(N_WORKS, 400.0)
    scored = score_lines([*sample, excerpt], N_WORKS, S, hits, 60.0)
    assert all(scored[w].shared_with for w in (1, 2, 3))
    found = scored[4]
    assert not found.shared_with and found.hits_on_shared == 9
    own = replace(excerpt, main_inliers=21)
    assert found.false_match_probability == pytest.approx(
        hash_false_match_probability(own, 1.0, N_WORKS, S, hits)
    )
    whole = hash_false_match_probability(excerpt, 1.0, N_WORKS, S, hits)
    assert whole < found.false_match_probability / 1e3
    assert found.false_match_probability <= S.duplicate_max_fmp
    stretches = [(10.0 * FPS, 14.0 * FPS, 3)]
    assert lines_off_stretches(scored, stretches, S)[4] == found


# -- the fits on constructed evidence ------------------------------------------------------------
def line(work_id: int, main_inliers: int, votes: int) -> HashEvidence:
    empty = np.zeros(0)
    aligned = AlignedLine(0.0, 100.0, 0.0, 100.0, main_inliers)
    return HashEvidence(
        work_id, votes, main_inliers, main_inliers, 1.0, 0.0, (aligned,), 10.0, empty, empty
    )


def test_score_hashes_fits_the_works_outside_the_three_strongest() -> None:
    strong = [line(w, 100 + w, 2000) for w in range(3)]
    weak = [line(10 + w, MIN_LINE_HASHES + 4, 500) for w in range(MIN_BACKGROUND)]
    scored = score_hashes(strong + weak, N_WORKS, S)
    scale = 4 / (S.chance_excess_base + S.chance_excess_per_vote * 500)
    for e in strong + weak:
        assert scored[e.work_id].false_match_probability == pytest.approx(
            hash_false_match_probability(e, scale, N_WORKS, S)
        )
    # one background work fewer: the prior alone
    scored = score_hashes(strong + weak[1:], N_WORKS, S)
    for e in strong + weak[1:]:
        assert scored[e.work_id].false_match_probability == hash_false_match_probability(
            e, 1.0, N_WORKS, S
        )
    # the strongest lines are never their own background, whatever order they come in
    reordered = score_hashes(weak + strong[::-1], N_WORKS, S)
    assert reordered[0].false_match_probability == pytest.approx(
        hash_false_match_probability(strong[0], scale, N_WORKS, S)
    )


evidence_lists = st.lists(
    st.tuples(st.integers(MIN_LINE_HASHES, 60), st.integers(3, 20_000)), min_size=0, max_size=20
)


@given(evidence_lists)
def test_the_hash_fit_never_lowers_a_probability(lines: list[tuple[int, int]]) -> None:
    evidence = [line(w, inliers, votes) for w, (inliers, votes) in enumerate(lines)]
    scored = score_hashes(evidence, N_WORKS, S)
    for e in evidence:
        assert scored[e.work_id].false_match_probability >= hash_false_match_probability(
            e, 1.0, N_WORKS, S
        )


# -- material many works hold (screening.shared_lines) --------------------------------------------
FPS = S.frames_per_second


def line_over(
    work_id: int, start_s: float, end_s: float, fmp: float, hits: int = 20
) -> HashFinding:
    """A scored line of ``work_id`` with ``hits`` hits evenly over upload seconds
    ``start_s``-``end_s``."""
    frames = np.linspace(start_s, end_s, hits) * FPS
    aligned = AlignedLine(frames[0], frames[-1], 0.0, frames[-1] - frames[0], hits)
    evidence = HashEvidence(
        work_id, 400, hits, hits, 1.0, 0.0, (aligned,), end_s - start_s, frames, frames
    )
    return HashFinding(evidence, fmp)


def test_lines_of_three_works_over_the_same_seconds_of_a_long_upload_are_no_evidence() -> None:
    """Three works' strong lines over the same 4 s of a 60-s upload (a sample each holds):
    none is evidence. A fourth work's line over the whole upload (a copy of it) stays, and so
    do the three when only two of them hold the seconds, or when the upload is those seconds."""
    assert S.shared_material_works == 2 and S.shared_material_max_span == 0.5
    upload = 60.0  # seconds
    sample = {w: line_over(w, 10.0 + 0.1 * w, 14.0, 1e-15) for w in (1, 2, 3)}
    copy = {4: line_over(4, 0.5, 59.0, 1e-80)}
    marked = shared_lines({**sample, **copy}, upload, S)
    assert all(marked[w].false_match_probability == 1.0 for w in sample)
    assert all(marked[w].shared_with == 3 for w in sample)  # the copy spans them too
    assert marked[4].false_match_probability == 1e-80 and not marked[4].shared_with
    assert marked[4].hits_on_shared > 0  # its hits on the sample's seconds
    two = {w: sample[w] for w in (1, 2)}
    assert shared_lines(two, upload, S) == two
    weak_third = {**two, 3: line_over(3, 10.0, 14.0, 0.5)}  # at chance: holds nothing
    assert shared_lines(weak_third, upload, S) == weak_third
    # a line the background fit held down still holds the material it is strong on
    fitted = {**two, 3: replace(line_over(3, 10.0, 14.0, 0.5), prior_probability=1e-15)}
    assert all(f.false_match_probability == 1.0 for f in shared_lines(fitted, upload, S).values())
    elsewhere = {**two, 3: line_over(3, 30.0, 34.0, 1e-15)}
    assert shared_lines(elsewhere, upload, S) == elsewhere
    excerpt = 5.0  # an upload that is the 4 s: an excerpt, held by three works
    assert shared_lines(sample, excerpt, S) == sample


def test_a_line_with_enough_hits_of_its_own_beyond_the_shared_seconds_stays() -> None:
    """A 15-s excerpt of a work around the 4-s sample it shares with three others: the others'
    lines make the sample's seconds a stretch of material many works hold, but the work's own
    line holds 21 of its 30 hits beyond it, more than the ``duplicate_min_hashes`` a duplicate
    needs: it stays. A line with 5 of its 20 hits beyond (fewer than 8) is no evidence, though
    it reaches past the stretch."""
    sample = {w: line_over(w, 10.0, 14.0, 1e-15) for w in (1, 2, 3)}
    excerpt = line_over(4, 5.0, 19.5, 1e-40, hits=30)
    barely = line_over(5, 9.5, 14.8, 1e-12)
    marked = shared_lines({**sample, 4: excerpt, 5: barely}, 60.0, S)
    assert marked[4].evidence == excerpt.evidence and not marked[4].shared_with
    assert marked[4].hits_on_shared == 30 - 21
    assert marked[5].false_match_probability == 1.0 and marked[5].shared_with >= 2
    hits = barely.evidence.match_query_frames / FPS
    assert 5 == np.count_nonzero((hits < 10.0) | (hits > 14.0)) < S.duplicate_min_hashes
