"""Tests for audiodup.match (retrieve, vote, verify) and end-to-end screening of altered copies.

The end-to-end part screens the bundled uploads (made by pedalboard and scipy, see
fixtures/README.md) and further alterations made here with pedalboard against the session
catalog of the six fixture works, and checks every reported number against the truth.
"""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pedalboard
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st
from scipy.signal import resample_poly

from audiodup import Catalog, Match, Verdict
from audiodup import match as match_module
from audiodup.audio import load_audio
from audiodup.fingerprint import Fingerprint, fingerprint_audio, fingerprint_hashes
from audiodup.hashes import HASH_KEY_BITS, TripletHashes, pack_entry_ids
from audiodup.index import LoadedIndexes, sorted_hash_shard
from audiodup.match import (
    PATTERN_KEY_SCALE,
    HashVotes,
    _best_cells,
    _best_rotation,
    _first_argmax,
    _fit_lines,
    _rotation_offset_scores,
    _scale_grid,
    align_chroma,
    best_chroma_works,
    candidate_order,
    candidate_works,
    class_spectrum,
    look_up,
    lookup_hashes,
    query_keys,
    rarity_weights,
    stretched_chroma,
    verify_hashes,
    view_scales,
    work_votes,
)
from audiodup.peaks import PEAK_DTYPE
from audiodup.settings import DEFAULT_SETTINGS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
RELATED = [e for e in MANIFEST["uploads"] if e["work"] is not None]
UNRELATED = [e for e in MANIFEST["uploads"] if e["work"] is None]

TEMPO_TOLERANCE = 0.02  # relative
PITCH_TOLERANCE_SEMITONES = 0.3
TIME_TOLERANCE_S = 1.5
S = DEFAULT_SETTINGS


def upload_id(entry: dict) -> str:
    return Path(entry["file"]).stem


def find_match(verdict: Verdict, work_id: int) -> Match:
    found = [m for m in verdict.matches if m.work_id == work_id]
    assert found, f"work {work_id} not reported; matches: {verdict.matches}"
    return found[0]


def assert_alignment(
    match: Match,
    tempo_ratio: float,
    ref_start_s: float,
    query_start_s: float,
    query_end_s: float,
) -> None:
    """The aligned section lies on the true line ``ref = ref_start + (query - query_start) *
    tempo`` and inside the upload's matching span."""
    for q, r in ((match.query_start_s, match.ref_start_s), (match.query_end_s, match.ref_end_s)):
        expected_ref_s = ref_start_s + (q - query_start_s) * tempo_ratio
        assert r == pytest.approx(expected_ref_s, abs=TIME_TOLERANCE_S), (q, r, match)
    assert match.query_start_s >= query_start_s - TIME_TOLERANCE_S
    assert match.query_end_s <= query_end_s + TIME_TOLERANCE_S
    assert match.query_end_s > match.query_start_s


def assert_found(
    verdict: Verdict,
    work_id: int,
    tempo_ratio: float,
    pitch_shift_semitones: float,
    allowed_works: set[int],
) -> Match:
    assert verdict.error is None
    assert verdict.verdict == "duplicate", verdict
    assert verdict.matches, verdict
    top = verdict.matches[0]
    assert top.work_id == work_id, verdict.matches
    assert top.relation == "same_recording"
    assert top.tempo_ratio == pytest.approx(tempo_ratio, rel=TEMPO_TOLERANCE)
    assert top.pitch_shift_semitones == pytest.approx(
        pitch_shift_semitones, abs=PITCH_TOLERANCE_SEMITONES
    )
    assert top.false_match_probability <= S.duplicate_max_fmp
    assert top.matched_hashes > 0
    assert 0.0 < top.coverage <= 1.0
    # no other work is claimed as a duplicate
    confident = {
        m.work_id for m in verdict.matches if m.false_match_probability <= S.duplicate_max_fmp
    }
    assert confident <= allowed_works, verdict.matches
    return top


# --- bundled uploads ------------------------------------------------------------------------


@pytest.mark.parametrize("entry", RELATED, ids=upload_id)
def test_altered_upload_finds_its_work(
    catalog: Catalog, work_ids: dict[str, int], entry: dict
) -> None:
    verdict = catalog.screen(FIXTURES / entry["file"])
    allowed = {work_ids[entry["work"]]} | {work_ids[s["work"]] for s in entry["also_contains"]}
    top = assert_found(
        verdict,
        work_ids[entry["work"]],
        entry["tempo_ratio"],
        entry["pitch_shift_semitones"],
        allowed,
    )
    assert_alignment(
        top,
        entry["tempo_ratio"],
        entry["ref_start_s"],
        entry["query_start_s"],
        entry["query_end_s"],
    )
    # the aligned section covers a good part of what the upload shares with the work
    shared_s = entry["query_end_s"] - entry["query_start_s"]
    assert top.query_end_s - top.query_start_s >= 0.5 * shared_s
    assert verdict.duration_s == pytest.approx(entry["duration_s"], abs=0.05)


@pytest.mark.parametrize(
    "entry", [e for e in RELATED if e["kind"] in ("excerpt", "padded")], ids=upload_id
)
def test_excerpt_and_padding_are_located(
    catalog: Catalog, work_ids: dict[str, int], entry: dict
) -> None:
    verdict = catalog.screen(FIXTURES / entry["file"])
    spans = [{"work": entry["work"], **{k: entry[k] for k in SPAN_KEYS}}] + entry["also_contains"]
    for span in spans:
        match = find_match(verdict, work_ids[span["work"]])
        for key in SPAN_KEYS:
            assert getattr(match, key) == pytest.approx(span[key], abs=TIME_TOLERANCE_S), (
                span["work"],
                key,
                match,
            )


SPAN_KEYS = ("query_start_s", "query_end_s", "ref_start_s", "ref_end_s")


def test_padded_upload_also_reports_the_medley_work(
    catalog: Catalog, work_ids: dict[str, int]
) -> None:
    entry = next(e for e in MANIFEST["uploads"] if e["kind"] == "padded")
    assert [s["work"] for s in entry["also_contains"]] == ["work_05"]
    verdict = catalog.screen(FIXTURES / entry["file"])
    reported = [m.work_id for m in verdict.matches]
    assert reported[:1] == [work_ids[entry["work"]]]  # the longer piece first
    medley = find_match(verdict, work_ids["work_05"])
    assert medley.relation == "same_recording"
    assert medley.false_match_probability <= S.duplicate_max_fmp
    assert medley.tempo_ratio == pytest.approx(1.0, rel=TEMPO_TOLERANCE)
    assert medley.pitch_shift_semitones == pytest.approx(0.0, abs=PITCH_TOLERANCE_SEMITONES)


@pytest.mark.parametrize("entry", UNRELATED, ids=upload_id)
def test_unrelated_upload_is_clean(catalog: Catalog, entry: dict) -> None:
    verdict = catalog.screen(FIXTURES / entry["file"])
    assert verdict.error is None
    assert verdict.verdict == "clean", verdict.matches


@pytest.mark.parametrize("work", [f"work_{i:02d}" for i in range(6)])
def test_catalog_work_matches_itself_exactly(
    catalog: Catalog, work_ids: dict[str, int], catalog_files: dict[str, Path], work: str
) -> None:
    verdict = catalog.screen(catalog_files[work])
    top = assert_found(verdict, work_ids[work], 1.0, 0.0, {work_ids[work]})
    assert top.tempo_ratio == pytest.approx(1.0, rel=0.002)
    assert top.pitch_shift_semitones == pytest.approx(0.0, abs=0.05)
    assert_alignment(top, 1.0, 0.0, 0.0, 40.0)
    assert top.coverage > 0.8
    assert top.path == str(catalog_files[work])


def test_top_k_limits_and_orders_matches(catalog: Catalog, work_ids: dict[str, int]) -> None:
    padded = FIXTURES / "uploads" / "padded_work_01.ogg"
    assert len(catalog.screen(padded, top_k=1).matches) == 1
    matches = catalog.screen(padded, top_k=10).matches
    assert [m.false_match_probability for m in matches] == sorted(
        m.false_match_probability for m in matches
    )
    for m in matches:
        expected_score = min(300.0, -np.log10(max(m.false_match_probability, 1e-300)))
        assert m.score == pytest.approx(expected_score, abs=0.01)


# --- alterations made here with pedalboard ---------------------------------------------------


def time_stretch(y: np.ndarray, sr: int, tempo_ratio: float, semitones: float = 0.0):
    return pedalboard.time_stretch(
        y[None, :], sr, stretch_factor=tempo_ratio, pitch_shift_in_semitones=semitones
    )[0]


def change_speed(y: np.ndarray, speed: float) -> np.ndarray:
    ratio = Fraction(speed).limit_denominator(100)
    return resample_poly(y, ratio.denominator, ratio.numerator)


def add_noise(y: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(y))
    noise *= np.sqrt(np.mean(y**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return y + noise


# name: (make(y, sr), tempo_ratio, pitch_shift_semitones)
ALTERATIONS = {
    "stretch_0.7": (lambda y, sr: time_stretch(y, sr, 0.7), 0.7, 0.0),
    "stretch_1.4": (lambda y, sr: time_stretch(y, sr, 1.4), 1.4, 0.0),
    "pitch_+6": (lambda y, sr: time_stretch(y, sr, 1.0, 6.0), 1.0, 6.0),
    "pitch_-5": (lambda y, sr: time_stretch(y, sr, 1.0, -5.0), 1.0, -5.0),
    "speed_0.8": (lambda y, sr: change_speed(y, 0.8), 0.8, 12 * np.log2(0.8)),
    "noise_10dB": (lambda y, sr: add_noise(y, 10.0), 1.0, 0.0),
    "stretch_1.15_pitch_-2": (lambda y, sr: time_stretch(y, sr, 1.15, -2.0), 1.15, -2.0),
    "clipped": (lambda y, sr: np.clip(y * 4.0, -0.9, 0.9), 1.0, 0.0),
}


@pytest.mark.parametrize("work", ["work_02", "work_04"])
@pytest.mark.parametrize("alteration", list(ALTERATIONS))
def test_pedalboard_alterations_are_found(
    catalog: Catalog,
    work_ids: dict[str, int],
    catalog_files: dict[str, Path],
    tmp_path: Path,
    work: str,
    alteration: str,
) -> None:
    make, tempo_ratio, semitones = ALTERATIONS[alteration]
    y, sr = sf.read(catalog_files[work], dtype="float32")
    altered = np.asarray(make(y, sr), dtype=np.float32)
    peak = float(np.max(np.abs(altered)))
    altered = altered * (0.95 / peak) if peak > 0.95 else altered
    path = tmp_path / f"{alteration}_{work}.flac"
    sf.write(path, altered, sr)

    verdict = catalog.screen(path)
    top = assert_found(verdict, work_ids[work], tempo_ratio, semitones, {work_ids[work]})
    duration_s = len(altered) / sr
    assert_alignment(top, tempo_ratio, 0.0, 0.0, duration_s)


# --- verification from votes -----------------------------------------------------------------


def synthetic_votes(
    seed: int,
    sections: list[tuple[float, float, float, int]],  # (tempo, offset_frames, pitch_bins, n)
    work_id: int = 7,
    noise_votes: int = 400,
) -> HashVotes:
    """Votes for ``work_id`` along the given lines, plus random votes for it and other works."""
    rng = np.random.default_rng(seed)
    rows = []
    for tempo, offset, pitch_bins, n in sections:
        tq = rng.uniform(0, 1500, n)
        tr = tempo * tq + offset + rng.normal(0, 0.7, n)
        span_q = rng.uniform(10, 80, n)
        rows.append(
            (
                np.full(n, work_id),
                tq,
                tr,
                span_q,
                span_q * tempo * np.exp(rng.normal(0, 0.01, n)),
                pitch_bins + rng.normal(0, 0.2, n),
            )
        )
    m = noise_votes
    span_q = rng.uniform(10, 80, m)
    rows.append(
        (
            rng.choice([work_id, 8, 9], m),
            rng.uniform(0, 1500, m),
            rng.uniform(0, 1500, m),
            span_q,
            span_q * np.exp(rng.uniform(-0.7, 0.7, m)),
            rng.uniform(-36, 36, m),
        )
    )
    work, tq, tr, sq, sr_, pb = (np.concatenate(c) for c in zip(*rows, strict=True))
    query_bin = rng.uniform(40, 150, len(work))
    return HashVotes(
        work=work.astype(np.int64),
        query_frame=tq,
        ref_frame=tr,
        query_bin=query_bin,
        ref_bin=query_bin - pb,
        query_span=sq,
        ref_span=sr_,
        log_tempo=np.log(sr_ / sq),
        pitch_bins=pb,
        pattern=rng.permutation(len(work)).astype(np.int64),
    )


@pytest.mark.parametrize(
    ("tempo", "pitch_semitones"), [(1.0, 0.0), (0.8, 0.0), (1.3, -3.0), (1.15, 2.42), (0.6, 7.0)]
)
def test_verify_hashes_recovers_tempo_pitch_and_line(tempo: float, pitch_semitones: float) -> None:
    per_semitone = S.bins_per_octave // 12
    offset = 120.0
    votes = synthetic_votes(1, [(tempo, offset, pitch_semitones * per_semitone, 150)])
    evidence = verify_hashes(votes, 7, S.frames_per_second, per_semitone)
    assert evidence is not None
    assert evidence.work_id == 7
    assert evidence.tempo_ratio == pytest.approx(tempo, rel=0.01)
    assert evidence.pitch_shift_semitones == pytest.approx(pitch_semitones, abs=0.1)
    assert 130 <= evidence.inliers <= evidence.votes
    line = evidence.lines[0]
    for q, r in (
        (line.query_start_frame, line.ref_start_frame),
        (line.query_end_frame, line.ref_end_frame),
    ):
        assert r == pytest.approx(tempo * q + offset, abs=8.0)
    assert evidence.coverage_s == pytest.approx(
        (line.query_end_frame - line.query_start_frame) / S.frames_per_second, rel=0.05
    )


@pytest.mark.parametrize("per_semitone", [2, 4])
def test_verify_hashes_pitch_range_follows_bins_per_semitone(per_semitone: int) -> None:
    # 11 semitones at 4 bins each lie beyond the +-37.5 bins of 3 bins per semitone
    votes = synthetic_votes(1, [(1.1, 120.0, 11.0 * per_semitone, 150)])
    evidence = verify_hashes(votes, 7, S.frames_per_second, per_semitone)
    assert evidence is not None
    assert evidence.pitch_shift_semitones == pytest.approx(11.0, abs=0.1)


def test_verify_hashes_finds_two_sections() -> None:
    """A work used twice in an upload (e.g. a repeated sample) gives two parallel lines."""
    per_semitone = S.bins_per_octave // 12
    votes = synthetic_votes(2, [(1.0, 0.0, 0.0, 120), (1.0, -900.0, 0.0, 80)], noise_votes=100)
    evidence = verify_hashes(votes, 7, S.frames_per_second, per_semitone)
    assert evidence is not None
    offsets = sorted(
        round(line.ref_start_frame - line.query_start_frame) for line in evidence.lines[:2]
    )
    assert len(evidence.lines) >= 2
    assert offsets[0] == pytest.approx(-900, abs=8)
    assert offsets[1] == pytest.approx(0, abs=8)


def long_copy_votes(seed: int, tempo: float = 0.92, n_line: int = 200) -> HashVotes:
    """A full-length copy's line over 10,000 query frames (4 minutes), among chance hits of the
    same work piled up just below log tempo 0 (spans quantized) and spread over slower tempos."""
    rng = np.random.default_rng(seed)
    tq = np.concatenate([rng.uniform(0, 10_000, n_line), rng.uniform(0, 10_000, 1_500)])
    tr = np.concatenate(
        [tempo * tq[:n_line] + 300 + rng.normal(0, 0.7, n_line), rng.uniform(0, 11_000, 1_500)]
    )
    log_tempo = np.concatenate(
        [
            np.log(tempo) + rng.normal(0, 0.01, n_line),
            rng.normal(-0.01, 0.01, 800),
            rng.uniform(-0.2, -0.05, 700),
        ]
    )
    n = len(tq)
    span_q, pitch_bins, query_bin = (
        rng.uniform(10, 80, n),
        rng.normal(0, 0.2, n),
        rng.uniform(40, 150, n),
    )
    return HashVotes(
        work=np.full(n, 7, dtype=np.int64),
        query_frame=tq,
        ref_frame=tr,
        query_bin=query_bin,
        ref_bin=query_bin - pitch_bins,
        query_span=span_q,
        ref_span=span_q * np.exp(log_tempo),
        log_tempo=log_tempo,
        pitch_bins=pitch_bins,
        pattern=rng.permutation(n).astype(np.int64),
    )


@pytest.mark.parametrize("seed", range(6))
def test_a_long_copys_line_is_fitted_at_its_own_slope(seed: int) -> None:
    """The tempo cell next to the chance pile is suppressed and the one beyond it starts the fit:
    its hits' median is ~1 % slow, which over 4 minutes drifts the line apart (speed-0.92 copy
    of weight_of_revenge: 0.892, 8 of 42 inliers). The scanned slope holds the whole line."""
    evidence = verify_hashes(long_copy_votes(seed), 7, S.frames_per_second, 3)
    assert evidence is not None
    assert evidence.tempo_ratio == pytest.approx(0.92, rel=0.002)
    assert evidence.main_inliers >= 180
    assert evidence.coverage_s >= 0.8 * 10_000 / S.frames_per_second


@pytest.mark.parametrize("n_chance", [300, 3_000, 30_000])
def test_the_slope_scan_lifts_no_chance_line(
    n_chance: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scanning 41 slopes finds some slope where chance hits gather a few more; the scan must
    not turn that into a longer chance line, at any number of hits."""
    rng = np.random.default_rng(n_chance)
    works = [
        (rng.uniform(0, 10_000, n_chance), rng.uniform(0, 11_000, n_chance), rng.uniform(0.5, 2))
        for _ in range(5)
    ]

    def inliers_per_line() -> list[list[int]]:
        return [[line[0].sum() for line in _fit_lines(tq, tr, t, 4)] for tq, tr, t in works]

    scanned = inliers_per_line()
    monkeypatch.setattr(match_module, "_scanned_slope", lambda tq, tr, tempo: None)
    assert scanned == inliers_per_line()


def test_the_slope_counts_are_the_same_in_one_array_and_slope_by_slope(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(11)
    slopes = 0.9 * match_module._slope_factors()
    for n in (1, 3, 50, 2_000):
        tq = np.round(rng.uniform(0, 10_000, n))
        tr = np.round(0.9 * tq + rng.normal(0, 30, n) + rng.uniform(-1e6, 1e6))
        whole = match_module._most_in_window(tq, tr, slopes, 40.0)
        monkeypatch.setattr(match_module, "_SLOPE_SCAN_ONE_ARRAY", 0)
        assert np.array_equal(match_module._most_in_window(tq, tr, slopes, 40.0), whole)
        monkeypatch.undo()
        assert whole.max() <= n


def test_a_repeated_note_pattern_counts_once() -> None:
    """Two works that share only one figure repeated on a rhythmic grid (same key, same anchor
    bin, every bar) line up on a perfect line, but that is one coincidence, not one per bar."""
    per_semitone = S.bins_per_octave // 12
    votes = synthetic_votes(8, [(0.5, 40.0, 5.0, 20)], noise_votes=0)
    on_line = votes.work == 7  # no noise votes: every hit of the work is on the line
    repeated = HashVotes(
        *(
            np.where(on_line, 77, votes.pattern) if f == "pattern" else getattr(votes, f)
            for f in HashVotes.__dataclass_fields__
        )
    )
    distinct = verify_hashes(votes, 7, S.frames_per_second, per_semitone)
    once = verify_hashes(repeated, 7, S.frames_per_second, per_semitone)
    assert distinct is not None and distinct.main_inliers >= 18
    assert once is not None and once.main_inliers == 1
    assert once.tempo_ratio == pytest.approx(0.5, rel=0.01)


def test_flat_triplets_of_a_held_tone_count_once_per_anchor_bin() -> None:
    """A held tone's triplets are flat (no frequency difference): their keys differ only by the
    time ratio the peak picker's spacing gave them. With the flat level known they count once
    per anchor bin; a line of other keys is untouched."""
    per_semitone = S.bins_per_octave // 12
    flat_level = S.hash_max_df_bins // S.df_quant_bins
    _, df_bits = HASH_KEY_BITS
    votes = synthetic_votes(8, [(0.5, 40.0, 5.0, 20)], noise_votes=0)
    ratio = np.arange(len(votes.work), dtype=np.int64) % 16  # the spacing's time ratios
    flat_key = ratio << (2 * df_bits) | flat_level << df_bits | flat_level
    tone = HashVotes(
        *(
            flat_key * PATTERN_KEY_SCALE + 120 if f == "pattern" else getattr(votes, f)
            for f in HashVotes.__dataclass_fields__
        )
    )
    as_keys = verify_hashes(tone, 7, S.frames_per_second, per_semitone)
    held = verify_hashes(tone, 7, S.frames_per_second, per_semitone, flat_level=flat_level)
    assert as_keys is not None and as_keys.main_inliers == 16
    assert held is not None and held.main_inliers == 1
    music = verify_hashes(votes, 7, S.frames_per_second, per_semitone, flat_level=flat_level)
    plain = verify_hashes(votes, 7, S.frames_per_second, per_semitone)
    assert (music.inliers, music.main_inliers) == (plain.inliers, plain.main_inliers) >= (18, 18)


def test_verify_hashes_rejects_works_with_too_few_votes() -> None:
    votes = synthetic_votes(3, [(1.0, 0.0, 0.0, 2)], noise_votes=0)
    assert verify_hashes(votes, 7, S.frames_per_second, 3) is None
    assert verify_hashes(votes, 12345, S.frames_per_second, 3) is None


def test_random_votes_get_few_inliers() -> None:
    votes = synthetic_votes(4, [], noise_votes=900)
    evidence = verify_hashes(votes, 7, S.frames_per_second, 3)
    assert evidence is None or evidence.inliers < 0.1 * evidence.votes


def test_candidate_works_ranks_by_aligned_votes_not_raw_votes() -> None:
    aligned = synthetic_votes(5, [(1.0, 0.0, 0.0, 60)], noise_votes=0)
    # work 8 gets far more votes, but scattered over tempo, pitch and offset
    noise = synthetic_votes(6, [], work_id=8, noise_votes=3000)
    noise = HashVotes(
        *(
            np.where(noise.work == 7, 8, noise.work) if f == "work" else getattr(noise, f)
            for f in HashVotes.__dataclass_fields__
        )
    )
    votes = HashVotes(
        *(
            np.concatenate([getattr(aligned, f), getattr(noise, f)])
            for f in HashVotes.__dataclass_fields__
        )
    )
    assert (votes.work == 8).sum() > 10 * (votes.work == 7).sum()
    ranked = candidate_works(votes, 2, S.frames_per_second)
    assert ranked[0][0] == 7
    assert ranked[0][1] >= 25  # most of the line falls in one coarse cell
    assert candidate_works(synthetic_votes(5, [], noise_votes=0), 5, S.frames_per_second) == []


def test_candidate_order_draws_among_equal_supports_without_favouring_low_work_ids() -> None:
    # a large catalog gives thousands of works the same 2 or 3 chance hits in a cell: the first
    # works added must not win every such tie
    ties = sorted(range(1, 10_001), key=lambda w: candidate_order(w, 2))
    assert sorted(ties[:30]) != list(range(1, 31))
    assert max(ties[:30]) > 1_000
    assert candidate_order(9_999, 3) < candidate_order(1, 2)  # support comes first


def joined(*parts: HashVotes) -> HashVotes:
    return HashVotes(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in HashVotes.__dataclass_fields__)
    )


def test_a_line_at_a_tempo_cell_edge_keeps_its_support() -> None:
    # tempo 0.928 lies on the edge of two tempo cells of the first grid: its hits split between
    # them there, and the grid laid half a cell off holds more of them in one cell
    edge = synthetic_votes(5, [(0.928, 0.0, 0.0, 40)], work_id=7, noise_votes=0)
    first_grid = _best_cells(edge, S.frames_per_second, 1, None, 0.0)[1].max()
    assert dict(candidate_works(edge, 5, S.frames_per_second))[7] > first_grid


def test_rare_keys_outrank_common_keys_among_thin_supports() -> None:
    # two works with 3 hits in a cell each, one under rare keys, one under common keys
    # (work 8 under the rare keys: the scramble alone would put work 7 first)
    rare = synthetic_votes(1, [(1.0, 50.0, 0.0, 3)], work_id=8, noise_votes=0)
    common = synthetic_votes(2, [(1.0, 50.0, 0.0, 3)], work_id=7, noise_votes=0)
    rare = dataclasses.replace(rare, pattern=(np.arange(3) + 100) * PATTERN_KEY_SCALE)
    common = dataclasses.replace(common, pattern=(np.arange(3) + 200) * PATTERN_KEY_SCALE)
    votes = joined(rare, common)
    sizes = np.full(1 << 19, 5, dtype=np.int64)
    sizes[np.unique(common.pattern // PATTERN_KEY_SCALE)] = 5_000
    sizes[np.unique(rare.pattern // PATTERN_KEY_SCALE)] = 2
    weighted = candidate_works(votes, 2, S.frames_per_second, 2, rarity_weights(votes, sizes))
    assert [w for w, _ in weighted] == [8, 7]
    # counted alone the two cells tie: the order is then the scramble's, the same for any upload
    counted = candidate_works(votes, 2, S.frames_per_second, 2)
    assert [w for w, _ in counted] == [7, 8] and counted[0][1] == counted[1][1] == 3


def random_hashes(rng: np.random.Generator, n: int, n_keys: int, frames: int) -> TripletHashes:
    return TripletHashes(
        keys=rng.integers(0, n_keys, n).astype(np.uint32),
        anchor_frame=rng.integers(0, frames, n).astype(np.uint32),
        anchor_bin=rng.uniform(20, 200, n).astype(np.float32),
        span_frames=rng.integers(8, 60, n).astype(np.uint32),
    )


def test_work_votes_are_the_hits_the_whole_look_up_gives_that_work() -> None:
    rng = np.random.default_rng(3)
    works = {w: random_hashes(rng, 800, 4_000, 3_000) for w in range(1, 41)}
    keys = np.concatenate([h.keys for h in works.values()]).astype(np.int64)
    ids = np.concatenate([pack_entry_ids(w, h) for w, h in works.items()])
    shard = sorted_hash_shard(keys, ids)
    indexes = LoadedIndexes([shard], [], np.ones(41, bool), shard.bucket_sizes)
    query = random_hashes(rng, 3_000, 4_000, 1_000)
    whole = look_up(query, indexes, 1 << 30, 1 << 40)
    budgeted = look_up(query, indexes, 1 << 30, 2_000)
    assert whole.kept_share == 1.0 and 0 < budgeted.kept_share < 0.2
    assert (budgeted.usable == whole.usable).all()  # the budget drops hits, not usable keys
    usable = query_keys(query, budgeted.usable)
    for work_id in (1, 17, 40):
        own = work_votes(query, usable, work_id, works[work_id])
        mine = whole.votes.work == work_id
        expected = sorted(
            zip(
                whole.votes.query_frame[mine],
                whole.votes.ref_frame[mine],
                whole.votes.ref_bin[mine],
                whole.votes.ref_span[mine],
                whole.votes.pattern[mine],
                strict=True,
            )
        )
        got = sorted(
            zip(own.query_frame, own.ref_frame, own.ref_bin, own.ref_span, own.pattern, strict=True)
        )
        assert len(got) > (budgeted.votes.work == work_id).sum() and got == expected
        assert (own.work == work_id).all()


def test_work_votes_are_those_of_two_searches_in_the_same_order() -> None:
    """One search among the distinct query keys gives every field of the votes, in the order
    of the former left and right searches among all of them (repeated keys, absent ones, no
    usable key at all)."""
    from audiodup.match import _votes

    rng = np.random.default_rng(4)
    reference = random_hashes(rng, 2_000, 600, 3_000)  # half its keys not in the query
    query = random_hashes(rng, 1_500, 300, 1_000)  # few keys: many repeats
    for usable in (rng.random(1_500) < 0.7, np.zeros(1_500, bool)):
        keys = query_keys(query, usable)
        ids = pack_entry_ids(9, reference)
        ref_keys = reference.keys.astype(np.int64)
        lo = np.searchsorted(keys.keys, ref_keys, side="left")
        counts = np.searchsorted(keys.keys, ref_keys, side="right") - lo
        entry = np.repeat(np.arange(len(ids)), counts)
        positions = np.arange(len(entry)) + np.repeat(lo - (np.cumsum(counts) - counts), counts)
        former = _votes(query, keys.rows[positions], ids[entry], S.bins_per_semitone)
        got = work_votes(query, keys, 9, reference, S.bins_per_semitone)
        for f in dataclasses.fields(former):
            assert np.array_equal(getattr(got, f.name), getattr(former, f.name)), f.name
        assert (len(got.work) > 100) == usable.any()


# --- chroma alignment -----------------------------------------------------------------------


def chroma_fingerprint(chroma: np.ndarray, tuning: float = 0.0) -> Fingerprint:
    return Fingerprint(
        peaks=np.zeros(0, PEAK_DTYPE),
        chroma=chroma.astype(np.float32),
        tuning_semitones=tuning,
        duration_s=len(chroma) / S.chroma_fps,
        recipe=S.recipe,
    )


def smooth_chroma(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.random((n // 8 + 2, 12)) ** 4  # chord-like: a few strong classes per step
    x = np.repeat(steps, 8, axis=0)[:n]
    x -= x.mean(axis=1, keepdims=True)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize(("tempo", "rotation"), [(1.0, 0), (1.25, 3), (0.8, -2), (1.6, 5)])
def test_align_chroma_recovers_key_tempo_and_offset(tempo: float, rotation: int) -> None:
    reference = smooth_chroma(7, 300)
    start, stop = 60, 220
    excerpt = reference[start:stop]
    # played at `tempo`: fewer query frames for the same music when faster
    positions = np.arange(0, len(excerpt) - 1, tempo)
    query = excerpt[np.round(positions).astype(int)]
    query = np.roll(query, rotation, axis=1)  # transposed by `rotation` semitones
    evidence = align_chroma(
        chroma_fingerprint(query, 0.1),
        chroma_fingerprint(reference, -0.05),
        work_id=3,
        settings=S,
        scales=np.array([tempo / 1.05, tempo, tempo * 1.05]),
    )
    assert evidence is not None
    assert evidence.work_id == 3
    assert evidence.tempo_ratio == pytest.approx(tempo, rel=0.001)
    assert evidence.pitch_shift_semitones == pytest.approx(rotation + 0.15, abs=0.01)
    assert evidence.similarity > 0.9
    assert evidence.ref_start_s == pytest.approx(start / S.chroma_fps, abs=0.5)
    assert evidence.ref_end_s == pytest.approx(stop / S.chroma_fps, abs=0.5)
    assert evidence.query_start_s == pytest.approx(0.0, abs=0.5)
    assert evidence.query_end_s == pytest.approx(len(query) / S.chroma_fps, abs=0.5)


def test_align_chroma_of_unrelated_chroma_is_weak() -> None:
    evidence = align_chroma(
        chroma_fingerprint(smooth_chroma(8, 150)),
        chroma_fingerprint(smooth_chroma(9, 300)),
        work_id=1,
        settings=S,
        scales=np.array([1.0]),
    )
    assert evidence is None or evidence.similarity < 0.5


def test_align_chroma_keeps_the_best_similarity_of_every_reference_block() -> None:
    """The chance sample: one maximum per ``chance_block_s`` of reference, the alignment's own
    block holding the similarity itself."""
    reference = smooth_chroma(11, 900)  # 180 s: six 30-s blocks
    query = np.roll(reference[500:540], 4, axis=1)  # 8 s from the 100-s mark, transposed
    evidence = align_chroma(
        chroma_fingerprint(query), chroma_fingerprint(reference), 1, S, np.array([1.0])
    )
    assert evidence is not None and evidence.ref_frames == 900
    blocks = evidence.block_maxima
    assert len(blocks) == 6
    assert evidence.best_block == 3  # the query's centre lands at 104 s
    assert blocks[evidence.best_block] == pytest.approx(evidence.similarity, abs=1e-5)
    others = np.delete(blocks, evidence.best_block)
    assert np.all(others < evidence.similarity - 0.05) and np.all(others > -1)


def test_the_best_rotation_per_offset_is_numpy_s_maximum() -> None:
    """The per-offset maxima the chance blocks take, on the transposed scores alignment makes
    and on a contiguous array, a NaN included: the same values as ``max(axis=0)``."""
    rng = np.random.default_rng(5)
    transposed = rng.standard_normal((300, 12)).T  # as _scores_from_spectrum returns them
    contiguous = np.ascontiguousarray(transposed)
    contiguous[7, 40] = np.nan
    for scores in (transposed, contiguous):
        best = _best_rotation(scores)
        assert best.shape == (300,)
        assert np.array_equal(best, scores.max(axis=0), equal_nan=True)
    assert np.isnan(_best_rotation(contiguous)[40])


def test_the_first_best_rotation_and_offset_are_numpy_s_argmax() -> None:
    """Ties included (whole-number scores, constant ones), and a NaN: the rotation and offset of
    ``np.argmax`` over the transposed scores, the first in row order."""
    rng = np.random.default_rng(6)
    rounded = rng.integers(0, 4, (500, 12)).astype(np.float64).T  # many ties at the top
    constant = np.zeros((80, 12)).T
    with_nan = rng.standard_normal((60, 12)).T.copy()
    with_nan[4, 9] = np.nan
    cases = [rng.standard_normal((400, 12)).T, rounded, constant, with_nan]
    for scores in cases:
        expected = np.unravel_index(np.argmax(scores), scores.shape)
        assert _first_argmax(scores, _best_rotation(scores)) == tuple(int(i) for i in expected)
    assert (rounded == rounded.max()).sum() > 1


def _scores_by_the_former_formula(qs: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``_rotation_offset_scores`` as it was before issue #16: the 144 rotated pairs copied."""
    n_full = len(qs) + len(r) - 1
    size = 1 << int(np.ceil(np.log2(n_full)))
    q_spec = np.fft.rfft(qs[::-1], n=size, axis=0)
    r_spec = np.fft.rfft(r, n=size, axis=0)
    rolled = r_spec[:, (np.arange(12)[None, :] - np.arange(12)[:, None]) % 12]
    return np.fft.irfft(np.einsum("fc,frc->fr", q_spec, rolled), n=size, axis=0)[:n_full].T


def test_the_class_spectrum_sums_every_rotation_s_products() -> None:
    """Multiplied by a query's spectrum and inverted over the classes, the class spectrum gives
    for each rotation the sum of the query's classes times the rotated reference's."""
    rng = np.random.default_rng(3)
    reference = np.fft.rfft(smooth_chroma(4, 100).astype(np.float32), n=256, axis=0)
    query = rng.standard_normal((129, 12)) + 1j * rng.standard_normal((129, 12))
    got = np.fft.ifft(np.fft.fft(query, axis=1) * class_spectrum(reference), axis=1)
    for rot in range(12):
        products = (query * np.roll(reference, rot, axis=1)).sum(axis=1)
        assert np.allclose(got[:, rot], products, rtol=0, atol=1e-12 * np.abs(products).max())
    assert class_spectrum(reference).dtype == np.complex128


def test_rotation_offset_scores_equal_the_former_formula_on_stored_chroma(
    catalog: Catalog,
) -> None:
    """On the stored chroma of the fixture works stretched as screening stretches a query, and
    with the spectra kept between calls: the 144 products' scores to within 1e-12 of their
    scale, the same best rotation and offset (issue #16)."""
    chromas = [catalog.fingerprint(w.work_id).chroma for w in catalog.works()]
    assert len(chromas) >= 2
    compared = 0
    for q, r in zip(chromas, chromas[1:] + chromas[:1], strict=True):
        kept: dict[int, np.ndarray] = {}
        for tempo in (0.5, 0.83, 1.0, 1.21, 2.0):
            n = int(round(len(q) * tempo))
            pos = np.linspace(0, len(q) - 1, n)
            lo = np.floor(pos).astype(int)
            hi = np.minimum(lo + 1, len(q) - 1)
            w = (pos - lo)[:, None]
            qs = q[lo] * (1 - w) + q[hi] * w
            former = _scores_by_the_former_formula(qs, r)
            tolerance = 1e-12 * np.abs(former).max()
            for scores in (_rotation_offset_scores(qs, r), _rotation_offset_scores(qs, r, kept)):
                assert scores.shape == former.shape
                assert np.allclose(scores, former, rtol=0, atol=tolerance)
                assert np.argmax(scores) == np.argmax(former)
            compared += 1
    assert compared == 5 * len(chromas)


def test_stretched_chroma_keeps_the_ends_and_interpolates_between_frames() -> None:
    chroma = smooth_chroma(5, 40)
    assert np.array_equal(stretched_chroma(chroma, 40), chroma)
    twice = stretched_chroma(chroma, 79)  # a frame between every two
    assert np.allclose(twice[::2], chroma)
    assert np.allclose(twice[1::2], (chroma[:-1] + chroma[1:]) / 2)


def test_align_chroma_with_shared_query_spectra_is_the_same(catalog: Catalog) -> None:
    """Works aligned over the same scales share the query's spectra (``swept_chroma``): every
    field, the chance sample included, is what each alignment gives alone."""
    prints = [catalog.fingerprint(w.work_id) for w in catalog.works()]
    query = replace_chroma(prints[0], prints[0].chroma[40:200])
    shared: dict[tuple[int, int], np.ndarray] = {}
    for work_id, reference in enumerate(prints):
        alone = align_chroma(query, reference, work_id, S)
        sharing = align_chroma(query, reference, work_id, S, query_spectra=shared)
        assert alone is not None and sharing is not None
        assert alone == sharing
        assert np.array_equal(alone.block_maxima, sharing.block_maxima)
    assert 0 < len(shared) <= 2 * len(_scale_grid(S))  # one or two FFT sizes per scale


def test_aligned_and_swept_chroma_share_spectra_without_changing_an_alignment(
    catalog: Catalog,
) -> None:
    """Candidates at the same scale, and swept alignments refined around the same tempo, share
    the query's spectra: each alignment is the one computed alone, chance sample included."""
    from audiodup.screening import _fine_scales, aligned_chroma, swept_chroma

    prints = {w.work_id: catalog.fingerprint(w.work_id) for w in catalog.works()}
    first = next(iter(prints.values()))
    query = replace_chroma(first, first.chroma[40:200])
    candidates = [(w, scale) for scale in (1.0, 0.9) for w in prints]
    expected = []
    for work_id, scale in candidates:
        fine = (1.0 / scale) * _fine_scales(S)
        alone = align_chroma(query, prints[work_id], work_id, S, fine)
        expected += [alone] if alone is not None else []
    expected_swept = []
    for work_id in prints:
        coarse = align_chroma(query, prints[work_id], work_id, S)
        fine = coarse.tempo_ratio * _fine_scales(S)
        refined = align_chroma(query, prints[work_id], work_id, S, fine)
        expected_swept.append(refined if refined.similarity > coarse.similarity else coarse)
    got = aligned_chroma(query, candidates, S, prints.__getitem__)
    got_swept = swept_chroma(query, [(w, 1.0) for w in prints], S, prints.__getitem__)
    for got_list, want in ((got, expected), (got_swept, expected_swept)):
        assert len(want) >= len(prints) and got_list == want
        for a, b in zip(got_list, want, strict=True):
            assert np.array_equal(a.block_maxima, b.block_maxima)


def replace_chroma(fingerprint: Fingerprint, chroma: np.ndarray) -> Fingerprint:
    return dataclasses.replace(fingerprint, chroma=chroma, duration_s=len(chroma) / S.chroma_fps)


def test_align_chroma_needs_a_few_frames() -> None:
    tiny = chroma_fingerprint(smooth_chroma(1, 3))
    assert align_chroma(tiny, chroma_fingerprint(smooth_chroma(2, 100)), 1, S) is None


# --- hash look-up ---------------------------------------------------------------------------


def test_bucket_sizes_count_every_catalog_entry(catalog: Catalog) -> None:
    indexes = catalog.indexes()
    assert indexes.bucket_sizes.sum() == sum(s.ntotal for s in indexes.hash_shards) > 0


def test_lookup_skips_stop_words_and_keeps_within_the_hit_budget(
    catalog: Catalog, work_ids: dict[str, int]
) -> None:
    s = catalog.settings
    upload = FIXTURES / "uploads" / "stretch_0.80_work_01.ogg"
    query = fingerprint_audio(load_audio(upload, s), s, query=True)
    hashes = fingerprint_hashes(query, s, query=True)
    indexes = catalog.indexes()
    size = indexes.bucket_sizes[hashes.keys]
    everything = lookup_hashes(hashes, indexes)
    # every hit of a looked-up key, less those of implausible transforms (> 2.1x tempo)
    assert 0 < len(everything.work) <= size.sum()

    cap = int(np.percentile(size[size > 0], 90))
    capped = lookup_hashes(hashes, indexes, max_bucket_hits=cap)
    assert len(capped.work) < len(everything.work)
    kept_keys = np.unique(capped.pattern // PATTERN_KEY_SCALE)
    assert indexes.bucket_sizes[kept_keys].max() <= cap

    budget = len(everything.work) // 3
    bounded = lookup_hashes(hashes, indexes, max_total_hits=budget)
    assert 0 < len(bounded.work) <= budget
    kept = np.unique(bounded.pattern // PATTERN_KEY_SCALE)
    dropped = np.setdiff1d(everything.pattern // PATTERN_KEY_SCALE, kept)
    # the most common keys go first
    assert indexes.bucket_sizes[dropped].min() >= indexes.bucket_sizes[kept].max()
    # what is left still finds the work
    evidence = verify_hashes(bounded, work_ids["work_01"], s.frames_per_second, 3)
    assert evidence is not None and evidence.tempo_ratio == pytest.approx(0.8, rel=0.01)


def chroma_works_by_loop(works, sims, scales, n_works):
    """The loop chroma_candidates ran over every hit before issue #14's numpy version."""
    support, best_scale = {}, {}
    for w, s, scale in zip(works.tolist(), sims.tolist(), scales.tolist(), strict=True):
        support[w] = max(support.get(w, 0.0), s)
        if s > best_scale.get(w, (-1.0, 1.0))[0]:
            best_scale[w] = (s, scale)
    ranked = sorted(support.items(), key=lambda kv: -kv[1])[:n_works]
    return [(w, s, best_scale[w][1]) for w, s in ranked]


@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.sampled_from([-0.5, 0.0, 0.3, 0.5, 0.7, 0.9, 1.0])),
        max_size=80,
    ),
    st.integers(1, 10),
)
def test_best_chroma_works_equal_the_loop_over_every_hit(
    hits: list[tuple[int, float]], n_works: int
) -> None:
    """Same works, supports, scales and order, ties included (few values: many ties)."""
    works = np.array([w for w, _ in hits], dtype=np.int64)
    sims = np.array([s for _, s in hits], dtype=np.float32)
    scales = np.linspace(0.5, 2.0, len(hits))
    assert best_chroma_works(works, sims, scales, n_works) == chroma_works_by_loop(
        works, sims.astype(np.float64), scales, n_works
    )


@pytest.mark.parametrize("time_scale", [2.0, 0.5])
def test_a_further_look_searches_chroma_only_at_tempos_within_the_range(time_scale) -> None:
    """The upload as it is is searched at every scale; seen 2x slower or faster, only at the
    scales whose tempo ratio to the upload as it is (``time_scale / scale``) lies within the
    searched range, one grid step of margin: about half the grid, and the scales where a 2x
    stretched or sped-up copy meets its original (scale 1 of the view) among them."""
    grid = _scale_grid(S)
    assert np.array_equal(view_scales(S, 1.0), grid)
    kept = view_scales(S, time_scale)
    tempo = time_scale / grid
    step = S.chroma_scale_step
    inside = (tempo >= S.tempo_ratio_min / step) & (tempo <= S.tempo_ratio_max * step)
    assert np.array_equal(kept, grid[inside])
    assert len(grid) / 2 <= len(kept) <= len(grid) / 2 + 2
    assert np.min(np.abs(np.log(kept))) < np.log(step)  # a scale within a step of 1
    outside = np.setdiff1d(grid, kept)
    beyond = (time_scale / outside < S.tempo_ratio_min) | (time_scale / outside > S.tempo_ratio_max)
    assert np.all(beyond)
