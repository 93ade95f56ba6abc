"""The guided peak check: a rough alignment is refined and judged against chance."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import chance_music, chord_cover

from audiodup import Catalog, screening
from audiodup.audio import load_audio
from audiodup.fingerprint import fingerprint_audio
from audiodup.match import HashVotes
from audiodup.peakcheck import (
    Alignment,
    PeakCheck,
    by_recording,
    cell_alignment,
    check_alignment,
    coincidence_probability,
    coincidences,
    confirms_recording,
    covers,
    reference_peaks,
    shared_material,
)
from audiodup.peaks import PEAK_DTYPE
from audiodup.settings import DEFAULT_SETTINGS as S
from audiodup.verdict import decide

UPLOADS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"
N_BINS = S.bins_per_octave * S.n_octaves
FPS = S.frames_per_second
IN_FULL = dataclasses.replace(S, peak_check_coarse_min_rate=0.0)  # no check given up early


def random_peaks(rng: np.random.Generator, seconds: float, per_second: float = 7.0) -> np.ndarray:
    n = int(seconds * per_second)
    peaks = np.zeros(n, dtype=PEAK_DTYPE)
    peaks["frame"] = np.sort(rng.integers(0, int(seconds * FPS), n))
    peaks["bin"] = rng.uniform(20, N_BINS - 20, n)
    peaks["strength"] = 1.0
    return peaks


def altered_copy(
    rng: np.random.Generator,
    ref: np.ndarray,
    tempo: float,
    pitch_bins: float,
    survival: float,
    extra_per_second: float = 9.0,
) -> np.ndarray:
    """Upload peaks: a share of the reference peaks moved by ``t_ref = tempo * t_up``, with
    jitter, mixed with as many foreign peaks as an effect or another instrument would add. The
    surviving peaks are the stronger ones, as in real alterations."""
    kept = ref[rng.random(len(ref)) < survival]
    moved = np.zeros(len(kept), dtype=PEAK_DTYPE)
    moved["frame"] = np.round(kept["frame"] / tempo + rng.normal(0, 0.7, len(kept))).clip(0)
    moved["bin"] = kept["bin"] + pitch_bins + rng.normal(0, 0.2, len(kept))
    moved["strength"] = 2.0
    seconds = float(moved["frame"].max()) / FPS
    noise = random_peaks(rng, seconds, extra_per_second)
    noise["bin"] += pitch_bins
    return np.sort(np.concatenate([moved, noise]), order="frame")


def test_a_weak_copy_is_found_and_its_alignment_refined() -> None:
    rng = np.random.default_rng(1)
    ref = random_peaks(rng, 120.0)
    tempo, pitch = 0.85, -8.4  # slowed: 0.85 tempo, -2.8 semitones
    upload = altered_copy(rng, ref, tempo, pitch, survival=0.45, extra_per_second=5.0)
    centre = 60.0 * FPS
    # a rough guess, as a chroma alignment gives it: tempo 1 % off, 0.5 s late
    guess = Alignment(tempo * 1.01, pitch, centre, tempo * centre + 0.5 * FPS)
    check = check_alignment(upload, reference_peaks(ref, N_BINS), guess, S)
    assert check is not None
    assert check.probability < 1e-12
    assert check.matched_peaks >= S.peak_check_min_ratio * check.chance_peaks
    assert check.alignment.tempo_ratio == pytest.approx(tempo, rel=0.003)
    assert check.alignment.ref_centre == pytest.approx(tempo * centre, abs=3)
    matched = check.matched_query_frames
    assert len(matched) == check.matched_peaks
    assert np.ptp(matched) > 20 * FPS  # coincidences all along the upload, not in one spot


def test_a_guess_several_percent_off_in_tempo_is_still_refined() -> None:
    """Weak hash lines and chroma alignments can be 3-5 % off: the coarse sweep finds the tempo."""
    rng = np.random.default_rng(5)
    ref = random_peaks(rng, 120.0)
    tempo = 1.4
    upload = altered_copy(rng, ref, tempo, 0.0, survival=0.5)
    centre = 30.0 * FPS
    guess = Alignment(tempo * 0.955, 0.0, centre, tempo * centre)
    check = check_alignment(upload, reference_peaks(ref, N_BINS), guess, S)
    assert check is not None and check.probability < 1e-12
    assert check.alignment.tempo_ratio == pytest.approx(tempo, rel=0.003)


def test_a_slowed_copy_is_checked_at_its_reference_density() -> None:
    """At tempo 0.5 a second of upload holds half a second of the work: the check keeps only as
    many of the strongest upload peaks as the stored density allows, so the survivors are not
    drowned by peaks that never had a stored counterpart."""
    rng = np.random.default_rng(6)
    ref = random_peaks(rng, 60.0)
    upload = altered_copy(rng, ref, 0.5, -36.0, survival=0.8, extra_per_second=13.0)
    assert len(upload) / (float(upload["frame"].max()) / FPS) > 15.0  # query density
    centre = 60.0 * FPS
    guess = Alignment(0.5, -36.0, centre, 0.5 * centre)
    check = check_alignment(upload, reference_peaks(ref, N_BINS), guess, S)
    assert check is not None and check.probability < 1e-12
    assert check.matched_peaks >= 0.4 * check.checked_peaks


def test_unrelated_peaks_are_not_evidence() -> None:
    """A chance lead stops after its coarse sweep (its chance measured on the peaks that sweep
    saw): probability 1, nothing confirmed. Checked in full (no coarse floor), it is still no
    evidence."""
    rng = np.random.default_rng(2)
    ref, upload = random_peaks(rng, 120.0), random_peaks(rng, 60.0, 16.0)
    guess = Alignment(1.0, 0.0, 30.0 * FPS, 50.0 * FPS)
    check = check_alignment(upload, reference_peaks(ref, N_BINS), guess, S)
    assert check is not None and not check.refined
    assert check.probability == 1.0 and not confirms_recording(check, S)
    assert check.checked_peaks <= S.peak_check_coarse_peaks
    assert check.matched_peaks < S.peak_check_coarse_min_rate * check.checked_peaks
    assert check.chance_peaks > 0

    full = check_alignment(upload, reference_peaks(ref, N_BINS), guess, IN_FULL)
    assert full is not None and full.refined
    assert full.probability > 1e-3
    assert full.chance_peaks > 0


def test_a_copy_is_never_given_up_after_the_coarse_sweep() -> None:
    """A lead 3 % off in tempo on a damaged copy (45 % of the peaks kept, as many again added:
    a third of those checked coincide, near the floor the whole check must clear) clears the
    coarse floor, and its check is the same as without that floor."""
    rng = np.random.default_rng(12)
    ref = random_peaks(rng, 90.0)
    upload = altered_copy(rng, ref, 1.06, 0.0, survival=0.45, extra_per_second=7.0)
    centre = 30.0 * FPS
    guess = Alignment(1.03, 0.0, centre, 1.06 * centre)
    stored = reference_peaks(ref, N_BINS)
    check = check_alignment(upload, stored, guess, S)
    assert check is not None and check.refined and check.probability < 1e-12
    assert confirms_recording(check, S)
    assert check == dataclasses.replace(
        check_alignment(upload, stored, guess, IN_FULL),
        matched_query_frames=check.matched_query_frames,
    )


def test_a_given_up_check_confirms_nothing() -> None:
    """Counts that clear both floors confirm nothing from a check given up after its coarse
    sweep: the floors are those of the whole check."""
    check = PeakCheck(Alignment(1.0, 0.0, 0.0, 0.0), 150, 200, 10.0, 1.0, np.zeros(0), True, 150)
    assert confirms_recording(check, S)
    assert not confirms_recording(dataclasses.replace(check, refined=False), S)
    # a held tone's or chord's dozens of peaks from one onset (audiodup.peakcheck.matched_onsets)
    few = dataclasses.replace(check, matched_onsets=S.peak_check_min_onsets - 1)
    assert not confirms_recording(few, S)


def test_the_wrong_pitch_finds_nothing() -> None:
    rng = np.random.default_rng(3)
    ref = random_peaks(rng, 90.0)
    upload = altered_copy(rng, ref, 1.0, 6.0, survival=0.5)
    stored = reference_peaks(ref, N_BINS)
    right = check_alignment(upload, stored, Alignment(1.0, 6.0, 1000.0, 1000.0), S)
    wrong = check_alignment(upload, stored, Alignment(1.0, 6.0 - 36, 1000.0, 1000.0), S)
    assert right is not None and right.probability < 1e-12
    assert wrong is None or wrong.probability > 1e-3


def test_too_few_peaks_give_no_check() -> None:
    rng = np.random.default_rng(4)
    ref = random_peaks(rng, 60.0)
    stored = reference_peaks(ref, N_BINS)
    assert check_alignment(ref[:5], stored, Alignment(1.0, 0.0, 100.0, 100.0), S) is None
    empty = reference_peaks(ref[:0], N_BINS)
    assert check_alignment(ref, empty, Alignment(1.0, 0.0, 100.0, 100.0), S) is None


@pytest.mark.parametrize("consecutive", [False, True], ids=["spread offsets", "consecutive"])
@pytest.mark.parametrize("seed", range(5))
def test_sparse_coincidences_equal_a_brute_force_count(seed: int, consecutive: bool) -> None:
    rng = np.random.default_rng(seed)
    ref = random_peaks(rng, 30.0, per_second=12.0)
    ref["bin"][:40] = 0.2  # peaks on the band edge
    stored = reference_peaks(ref, N_BINS)
    frames = rng.integers(-200, stored.n_frames + 200, 300)
    bins = rng.integers(0, N_BINS, 300)
    frames[:100] = ref["frame"][:100] + rng.integers(-3, 4, 100)  # some near the reference
    bins[:100] = np.round(ref["bin"][:100]).astype(int) + rng.integers(-2, 3, 100)
    bins = np.clip(bins, 0, N_BINS - 1)
    offsets = np.arange(-40, 41)  # as the sweep of a check
    if not consecutive:  # as its chance shifts
        offsets = np.unique(np.concatenate([offsets, [-900, -300, 300, 900]]))
    counts, checked, hit = coincidences(stored, frames, bins, offsets, S)

    ref_frames = ref["frame"].astype(int)
    ref_bins = np.round(ref["bin"]).astype(int)
    dt, df = S.peak_check_time_tol_frames, S.peak_check_bin_tol
    for column, offset in enumerate(offsets):
        moved = frames + offset
        inside = (moved >= 0) & (moved < stored.n_frames)
        near = (np.abs(moved[:, None] - ref_frames[None, :]) <= dt) & (
            np.abs(bins[:, None] - ref_bins[None, :]) <= df
        )
        coincide = near.any(axis=1) & inside
        assert checked[column] == inside.sum()
        assert counts[column] == coincide.sum()
        if column == 0:
            assert np.array_equal(hit, coincide)


def test_chroma_alignment_alone_leads_the_check_to_the_work(
    catalog: Catalog, work_ids: dict[str, int]
) -> None:
    """Without any hash evidence, the chroma alignment of a sped-up upload is enough for the
    peak check to find the work, with its tempo ratio and pitch shift."""
    s = catalog.settings
    query = fingerprint_audio(load_audio(UPLOADS_DIR / "speed_1.15_work_05.ogg", s), s, query=True)
    chroma = screening.chroma_evidence(
        query, catalog.indexes(), len(work_ids), s, catalog.fingerprint
    )
    found = screening.peak_checks(query, {}, chroma, s, catalog.fingerprint)
    checks = {w: f.check for w, f in found.items()}
    check = checks[work_ids["work_05"]]
    assert check.probability < 1e-12
    assert check.alignment.tempo_ratio == pytest.approx(1.15, rel=0.01)
    semitones = check.alignment.pitch_bins / (s.bins_per_octave // 12)
    assert semitones == pytest.approx(12 * np.log2(1.15), abs=0.3)
    others = [c.probability for w, c in checks.items() if w != work_ids["work_05"]]
    assert all(p > 1e-3 for p in others)


def test_peaks_where_a_significant_chroma_alignment_put_them_combine(
    catalog: Catalog, work_ids: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the hashes silent (as under heavy reverb), the chroma alignment and the peaks that
    coincide under it are two independent tests of the same work: their probabilities multiply."""
    s = catalog.settings
    query = fingerprint_audio(
        load_audio(UPLOADS_DIR / "stretch_0.80_work_01.ogg", s), s, query=True
    )
    silent = screening.Candidates([], np.zeros(0, np.int64), np.zeros(0))
    monkeypatch.setattr(screening, "verified_candidates", lambda *_: silent)
    work = work_ids["work_01"]
    n_works = len(work_ids)
    evidence = screening.gather_evidence(query, catalog.indexes(), s, catalog)
    assert evidence.hashes == {} and evidence.n_works == n_works
    chroma_fmp = {f.evidence.work_id: f.false_match_probability for f in evidence.chroma}[work]
    check = evidence.peaks[work].check
    assert chroma_fmp <= s.suspect_max_fmp and check.probability < 1e-12

    top = catalog.match_fingerprint(query)[0]
    assert top.work_id == work and top.matched_peaks == check.matched_peaks
    assert top.false_match_probability == pytest.approx(check.probability * chroma_fmp)
    assert top.false_match_probability < min(chroma_fmp, check.probability * n_works)


@pytest.mark.parametrize(
    ("matched", "checked", "chance", "confirmed"),
    [
        (141, 600, 26.0, False),  # a re-arrangement: 5.4x chance but 23 % of the peaks
        (106, 585, 8.4, False),  # 12.6x chance, 18 % of the peaks
        (221, 600, 60.9, True),  # slowed + reverb: 3.6x chance, 37 % of the peaks
        (22, 180, 7.5, False),  # chance: 2.9x
        (13, 40, 3.0, True),
    ],
)
def test_a_recording_needs_both_floors(
    matched: int, checked: int, chance: float, confirmed: bool
) -> None:
    alignment = Alignment(1.0, 0.0, 0.0, 0.0)
    check = PeakCheck(alignment, matched, checked, chance, 1.0, np.zeros(matched), True, matched)
    assert confirms_recording(check, S) is confirmed


# -- material many works hold (peakcheck.shared_material) ---------------------------------------
def _check_on(frames, probability: float = 1e-12, chance: float = 2.0) -> PeakCheck:
    """A check whose coinciding upload peaks lie at ``frames`` (one onset each), its window
    the first 3,000 frames of the upload."""
    frames = np.asarray(frames, dtype=np.float64)
    n = len(frames)
    alignment = Alignment(1.0, 0.0, 0.0, 0.0)
    return PeakCheck(alignment, n, n * 3, chance, probability, frames, True, n, (0.0, 3000.0))


def marked_checks(checks: list[PeakCheck], lines=None) -> list[PeakCheck]:
    """:func:`shared_material` of ``checks`` (works 0, 1, ...), in their order."""
    marked = shared_material(dict(enumerate(checks)), lines or {}, S)
    return [marked[k] for k in range(len(checks))]


SAMPLE_FRAMES = np.arange(100, 400, 10)  # 30 coinciding peaks over a few seconds of the upload


def test_a_check_that_other_works_share_confirms_nothing() -> None:
    """Three works each line up with the same seconds of the upload (a stock sample they hold,
    at other places in each): none of the three checks is evidence of its work."""
    assert S.shared_material_works == 2
    jitter = [0, 1, -1]  # the same upload peaks, found within the time tolerance
    checks = [_check_on(SAMPLE_FRAMES + d) for d in jitter]
    assert all(confirms_recording(c, S) for c in checks)
    marked = marked_checks(checks)
    assert [c.shared_with for c in marked] == [2, 2, 2]
    assert all(c.probability == 1.0 and not confirms_recording(c, S) for c in marked)


def test_a_hash_line_over_the_same_seconds_holds_the_material_too() -> None:
    """One other work's check and another work's hash line (its upload frames) over the sample:
    two others hold it. A line elsewhere in the upload holds none of it."""
    checks = [_check_on(SAMPLE_FRAMES), _check_on(SAMPLE_FRAMES + 1)]
    marked = marked_checks(checks, lines={7: (90.0, 410.0)})
    assert [c.shared_with for c in marked] == [2, 2]
    assert all(c.probability == 1.0 for c in marked)
    elsewhere = marked_checks(checks, lines={7: (1000.0, 1400.0)})
    assert all(c.shared_with == 0 and c.probability == 1e-12 for c in elsewhere)


def test_a_copy_is_not_shared_by_works_that_hold_only_its_sample() -> None:
    """The work the upload copies lines up over the whole upload; the works that hold only the
    sample it contains share a tenth of those peaks: the copy stays evidence, the others do not
    (each is shared by the other two that hold the sample)."""
    copy = _check_on(np.arange(0, 3000, 10))
    others = [_check_on(SAMPLE_FRAMES + d) for d in (0, 1, 2)]
    marked = marked_checks([copy, *others])
    assert marked[0].shared_with == 0 and marked[0].probability == copy.probability
    assert confirms_recording(marked[0], S)
    assert all(c.probability == 1.0 for c in marked[1:])


def test_a_check_that_stays_is_scored_on_its_peaks_beyond_the_shared_seconds() -> None:
    """A work that holds the sample and 20 more peaks of the upload: its 30 peaks on the
    sample would be there in other music holding it, so the check is as certain as 20 peaks
    against the chance of the rest of its window (its 1e-12 said all 50), never more."""
    own = np.linspace(1000, 2900, 20)
    check = dataclasses.replace(_check_on(np.r_[SAMPLE_FRAMES, own], chance=5.0), search_cells=100)
    others = [_check_on(SAMPLE_FRAMES + d) for d in (0, 1, 2)]
    marked = marked_checks([check, *others])[0]
    assert marked.shared_with == 0 and marked.peaks_on_shared == 30
    window_off = 1.0 - (392 - 100) / 3000  # the stretches: the sample in the four works
    alone = coincidence_probability(20, 5.0 * window_off, 100, S)
    assert marked.probability == pytest.approx(alone) and alone > 1e-6
    weak = dataclasses.replace(check, probability=0.5)  # less certain than its own peaks say
    assert marked_checks([weak, *others])[0].probability == 0.5


def test_chance_checks_of_a_large_catalog_hold_no_material() -> None:
    """On a 5-s excerpt at 10^4 works, ten works' chance checks had 6-12 peaks each at 3x their
    chance, on the same seconds: no holders (their Poisson tail, paid for the cells searched,
    is no `suspect`), so the seconds are no shared material and a check there stays."""
    few = SAMPLE_FRAMES[:9]
    chance = [
        dataclasses.replace(_check_on(few + d, chance=1.6), search_cells=300) for d in (0, 1, -1)
    ]
    assert all(c.matched_peaks >= S.peak_check_min_ratio * c.chance_peaks for c in chance)
    assert [c.shared_with for c in marked_checks(chance)] == [0, 0, 0]
    strong = [_check_on(SAMPLE_FRAMES + d) for d in (0, 1, -1)]  # 30 peaks at chance 2
    assert [c.shared_with for c in marked_checks(strong)] == [2, 2, 2]


def test_copies_of_one_recording_hold_material_once() -> None:
    """Three other works hold the seconds the check is on, but two of them are copies of one
    recording the catalog holds twice (``related``): two recordings, still shared material.
    When the third is a copy of the check's own work, one other recording holds it: fewer than
    ``shared_material_works``, and the check stays evidence."""
    checks = [_check_on(SAMPLE_FRAMES + d) for d in (0, 1, -1, 2)]

    def copies(*pairs):
        return lambda a, b: {a, b} in [set(p) for p in pairs]

    assert all(c.shared_with == 3 for c in marked_checks(checks))
    by_two = shared_material(dict(enumerate(checks)), {}, S, copies((1, 2)))
    assert by_two[0].shared_with == 2 and by_two[0].probability == 1.0
    own = shared_material(dict(enumerate(checks)), {}, S, copies((1, 2), (0, 3)))
    assert own[0].shared_with == 0 and own[0].probability == checks[0].probability
    frames = np.arange(10.0)
    held = {1: frames < 8, 2: frames < 6, 3: frames >= 5}
    merged = by_recording(0, held, copies((1, 2), (0, 3)))
    assert len(merged) == 1 and np.array_equal(merged[0], frames < 8)


def test_a_recording_that_several_works_hold_over_the_whole_window_stays_evidence() -> None:
    """Four works that each hold the whole recording the upload copies (copies already in the
    catalog) share all of each other's peaks, but over the whole window the checks looked at:
    that is a copy of a recording, not a sample spliced into other music. The same four
    sharing only the first tenth of the window are material many works hold."""
    whole = np.arange(0, 3000, 10)
    checks = marked_checks([_check_on(whole + d) for d in (0, 1, 1, -1)])
    assert all(c.shared_with == 0 and c.probability == 1e-12 for c in checks)
    assert all(confirms_recording(c, S) for c in checks)
    assert S.shared_material_max_span == 0.5
    tenth = np.arange(0, 300, 10)
    checks = marked_checks([_check_on(tenth + d) for d in (0, 1, 1, -1)])
    assert all(c.shared_with == 3 and c.probability == 1.0 for c in checks)


def test_checks_at_chance_or_on_other_peaks_share_nothing() -> None:
    """Only works whose checks exceed chance as a recording does count as holding the material
    (a held tone of two onsets does not); one that does is fewer than ``shared_material_works``,
    and a check on other seconds of the upload shares none of its peaks."""
    check = _check_on(SAMPLE_FRAMES)
    at_chance = _check_on(SAMPLE_FRAMES, probability=1.0, chance=20.0)  # 30 peaks, 1.5x chance
    held_tone = dataclasses.replace(_check_on(SAMPLE_FRAMES), matched_onsets=2)
    elsewhere = _check_on(SAMPLE_FRAMES + 1000)
    one = _check_on(SAMPLE_FRAMES + 1)
    marked = marked_checks([check, at_chance, held_tone, elsewhere, elsewhere, one])
    assert marked[0].shared_with == 0 and marked[0].probability == check.probability


# -- the look-up's coarse cell as a lead (peakcheck.cell_alignment) ------------------------------
def _votes(work, query_frame, ref_frame, log_tempo, pitch_bins) -> HashVotes:
    n = len(work)
    return HashVotes(
        work=np.asarray(work, np.int64),
        query_frame=np.asarray(query_frame, np.float64),
        ref_frame=np.asarray(ref_frame, np.float64),
        query_bin=np.full(n, 100.0),
        ref_bin=np.full(n, 100.0),
        query_span=np.full(n, 10.0),
        ref_span=np.full(n, 10.0),
        log_tempo=np.asarray(log_tempo, np.float64),
        pitch_bins=np.asarray(pitch_bins, np.float64),
        pattern=np.arange(n, dtype=np.int64),
    )


def test_a_cell_lead_takes_the_fullest_cell_of_its_work() -> None:
    """Twelve hits of work 3 at tempo 0.93 and -1.5 semitones (a cell edge of one tempo grid,
    inside a cell of the other) outvote chance hits of that work and a fuller cell of work 4."""
    rng = np.random.default_rng(5)
    tempo, pitch = 0.93, -1.5 * (S.bins_per_octave // 12)
    q_real = np.sort(rng.uniform(100, 900, 12))
    q_noise = rng.uniform(0, 1000, 30)
    work = [3] * 12 + [3] * 30 + [4] * 40
    query = np.r_[q_real, q_noise, rng.uniform(0, 1000, 40)]
    ref = np.r_[
        tempo * q_real + 2000 + rng.normal(0, 1, 12),
        rng.uniform(0, 5000, 30),
        0.5 * np.r_[rng.uniform(0, 1000, 40)] + 300,
    ]
    log_tempo = np.r_[np.log(tempo) + rng.normal(0, 0.004, 12), rng.uniform(-0.7, 0.7, 30)]
    log_tempo = np.r_[log_tempo, np.full(40, np.log(0.5))]
    pitch_bins = np.r_[np.full(12, pitch), rng.uniform(-30, 30, 30), np.zeros(40)]
    votes = _votes(work, query, ref, log_tempo, pitch_bins)

    lead = cell_alignment(votes, 3, S)
    assert lead is not None
    assert lead.tempo_ratio == pytest.approx(tempo, abs=0.03)
    assert lead.pitch_bins == pytest.approx(pitch, abs=1.5)
    assert lead.query_centre == pytest.approx(np.median(q_real), abs=100)
    assert lead.ref_frames(lead.query_centre) == pytest.approx(
        tempo * lead.query_centre + 2000, abs=S.frames_per_second
    )
    assert cell_alignment(votes, 5, S) is None  # no hit, no lead


def test_a_cell_lead_already_swept_by_a_check_of_its_work_adds_no_check() -> None:
    fps = S.frames_per_second
    lead = Alignment(0.93, -3.0, 500.0, 2465.0)
    assert covers(Alignment(0.95, -3.0, 400.0, 2372.0), lead, S)  # the same line, 2 % off
    assert not covers(Alignment(0.997, -3.0, 500.0, 2465.0), lead, S)  # tempo 7 % off
    assert not covers(Alignment(0.93, 9.0, 500.0, 2465.0), lead, S)  # another pitch
    assert not covers(Alignment(0.93, -3.0, 500.0, 2465.0 + 3 * fps), lead, S)  # 3 s away
    guesses = screening.peak_guesses({}, [], S, cells=[(3, lead), (4, lead)])
    assert [(w, a) for w, a, _ in guesses] == [(3, lead), (4, lead)]


CELLS_ONLY = dataclasses.replace(
    S,
    peak_check_hash_candidates=0,
    peak_check_min_chroma=2.0,  # no chroma-led check: a similarity is at most 1
    chroma_min_similarity=2.0,
    chroma_sweep_all_tempos=False,
    min_candidate_support=1,  # every look-up that hits anything leads a check
)


def _cells_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Screening where a cell lead is the only way to a match: no hash line is verified and no
    chroma alignment leads a check or matches."""
    monkeypatch.setattr(screening, "_verify", lambda *_: None)


def test_a_copy_without_a_verified_line_is_found_by_its_cell_lead(
    catalog: Catalog, work_ids: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = UPLOADS_DIR / "stretch_0.80_work_01.ogg"
    usual = catalog.screen(path).matches[0]
    query = fingerprint_audio(load_audio(path, S), S, query=True)
    _cells_only(monkeypatch)
    found = screening.match_fingerprint(query, catalog.indexes(), CELLS_ONLY, catalog.store)
    assert found and found[0].work_id == work_ids["work_01"] == usual.work_id
    assert decide(found, CELLS_ONLY) == "duplicate"
    assert found[0].tempo_ratio == pytest.approx(usual.tempo_ratio, rel=0.01)
    assert found[0].pitch_shift_semitones == pytest.approx(usual.pitch_shift_semitones, abs=0.3)
    assert found[0].matched_peaks >= S.duplicate_min_peaks
    # and without cell leads nothing is left to find it
    none = dataclasses.replace(CELLS_ONLY, peak_check_cell_leads=0)
    assert screening.match_fingerprint(query, catalog.indexes(), none, catalog.store) == []


def _chance_cases(folder: Path, catalog_audio: Path) -> list[Path]:
    """Music in no catalog work (:func:`conftest.chance_music`) and a re-arrangement of a
    catalog work (:func:`conftest.chord_cover`)."""
    import soundfile as sf

    sr = S.sample_rate_hz
    cover = folder / "chord_cover.wav"
    sf.write(cover, chord_cover(load_audio(catalog_audio, S).samples, sr), sr)
    return chance_music(folder, (9201, 9202, 9203), sr) + [cover]


def test_chance_cases_stay_below_duplicate_when_cell_leads_are_all_there_is(
    catalog: Catalog,
    catalog_files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unrelated music, a medley, a short excerpt and a re-arrangement: their look-ups still
    rank some work first, whose fullest cell leads a check; none may make a duplicate, with the
    cell leads alone or with every channel."""
    uploads = _chance_cases(tmp_path, catalog_files["work_02"])
    usual = {path.name: catalog.screen(path) for path in uploads}
    _cells_only(monkeypatch)
    for path in uploads:
        query = fingerprint_audio(load_audio(path, S), S, query=True)
        evidence = screening.gather_evidence(query, catalog.indexes(), CELLS_ONLY, catalog.store)
        assert evidence.peaks, path.name  # its best candidates' cells were checked
        found = screening.matches_from_evidence(evidence, query, CELLS_ONLY, catalog.store)
        assert decide(found, CELLS_ONLY) != "duplicate", path.name
        assert usual[path.name].verdict != "duplicate", path.name
