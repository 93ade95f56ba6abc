"""The guided peak check: a rough alignment is refined and judged against chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiodup import Catalog
from audiodup.audio import load_audio
from audiodup.fingerprint import fingerprint_audio
from audiodup.peakcheck import (
    Alignment,
    PeakCheck,
    check_alignment,
    reference_occupancy,
    supports_recording,
)
from audiodup.peaks import PEAK_DTYPE
from audiodup.settings import DEFAULT_SETTINGS as S

UPLOADS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"
N_BINS = S.bins_per_octave * S.n_octaves
FPS = S.frames_per_second


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
    jitter, mixed with as many foreign peaks as an effect or another instrument would add."""
    kept = ref[rng.random(len(ref)) < survival]
    moved = np.zeros(len(kept), dtype=PEAK_DTYPE)
    moved["frame"] = np.round(kept["frame"] / tempo + rng.normal(0, 0.7, len(kept))).clip(0)
    moved["bin"] = kept["bin"] + pitch_bins + rng.normal(0, 0.2, len(kept))
    seconds = float(moved["frame"].max()) / FPS
    noise = random_peaks(rng, seconds, extra_per_second)
    noise["bin"] += pitch_bins
    return np.sort(np.concatenate([moved, noise]), order="frame")


def test_a_weak_copy_is_found_and_its_alignment_refined() -> None:
    rng = np.random.default_rng(1)
    ref = random_peaks(rng, 120.0)
    tempo, pitch = 0.85, -8.4  # slowed: 0.85 tempo, -2.8 semitones
    upload = altered_copy(rng, ref, tempo, pitch, survival=0.35, extra_per_second=5.0)
    centre = 60.0 * FPS
    # a rough guess, as a chroma alignment gives it: tempo 1 % off, 0.5 s late
    guess = Alignment(tempo * 1.01, pitch, centre, tempo * centre + 0.5 * FPS)
    check = check_alignment(upload, reference_occupancy(ref, N_BINS, S), guess, S)
    assert check is not None
    assert check.probability < 1e-12
    assert check.matched_peaks >= S.peak_check_min_ratio * check.chance_peaks
    assert check.alignment.tempo_ratio == pytest.approx(tempo, rel=0.003)
    assert check.alignment.ref_centre == pytest.approx(tempo * centre, abs=3)
    matched = check.matched_query_frames
    assert len(matched) == check.matched_peaks
    assert np.ptp(matched) > 20 * FPS  # coincidences all along the upload, not in one spot


def test_unrelated_peaks_are_not_evidence() -> None:
    rng = np.random.default_rng(2)
    ref, upload = random_peaks(rng, 120.0), random_peaks(rng, 60.0, 16.0)
    guess = Alignment(1.0, 0.0, 30.0 * FPS, 50.0 * FPS)
    check = check_alignment(upload, reference_occupancy(ref, N_BINS, S), guess, S)
    assert check is not None
    assert check.probability > 1e-3
    assert check.chance_peaks > 0


def test_the_wrong_pitch_finds_nothing() -> None:
    rng = np.random.default_rng(3)
    ref = random_peaks(rng, 90.0)
    upload = altered_copy(rng, ref, 1.0, 6.0, survival=0.5)
    occupied = reference_occupancy(ref, N_BINS, S)
    right = check_alignment(upload, occupied, Alignment(1.0, 6.0, 1000.0, 1000.0), S)
    wrong = check_alignment(upload, occupied, Alignment(1.0, 6.0 - 36, 1000.0, 1000.0), S)
    assert right is not None and right.probability < 1e-12
    assert wrong is None or wrong.probability > 1e-3


def test_too_few_peaks_give_no_check() -> None:
    rng = np.random.default_rng(4)
    ref = random_peaks(rng, 60.0)
    occupied = reference_occupancy(ref, N_BINS, S)
    assert check_alignment(ref[:5], occupied, Alignment(1.0, 0.0, 100.0, 100.0), S) is None
    empty = reference_occupancy(ref[:0], N_BINS, S)
    assert check_alignment(ref, empty, Alignment(1.0, 0.0, 100.0, 100.0), S) is None


def test_chroma_alignment_alone_leads_the_check_to_the_work(
    catalog: Catalog, work_ids: dict[str, int]
) -> None:
    """Without any hash evidence, the chroma alignment of a sped-up upload is enough for the
    peak check to find the work, with its tempo ratio and pitch shift."""
    s = catalog.settings
    query = fingerprint_audio(load_audio(UPLOADS_DIR / "speed_1.15_work_05.ogg", s), s, query=True)
    indexes = catalog.indexes()
    chroma = catalog._chroma_evidence(query, indexes, len(work_ids))
    checks = {w: check for w, (check, _) in catalog._peak_checks(query, {}, chroma).items()}
    check = checks[work_ids["work_05"]]
    assert check.probability < 1e-12
    assert check.alignment.tempo_ratio == pytest.approx(1.15, rel=0.01)
    semitones = check.alignment.pitch_bins / (s.bins_per_octave // 12)
    assert semitones == pytest.approx(12 * np.log2(1.15), abs=0.3)
    others = [c.probability for w, c in checks.items() if w != work_ids["work_05"]]
    assert all(p > 1e-3 for p in others)


@pytest.mark.parametrize(
    ("matched", "checked", "chance", "supported"),
    [
        (116, 600, 25.4, False),  # a re-arrangement: 4.6x chance, 19 % of the peaks
        (130, 600, 25.0, True),  # 5.2x chance
        (120, 590, 30.0, True),  # 20 % of the peaks
        (10, 40, 3.0, True),
    ],
)
def test_supports_recording_needs_one_floor(
    matched: int, checked: int, chance: float, supported: bool
) -> None:
    check = PeakCheck(
        Alignment(1.0, 0.0, 0.0, 0.0), matched, checked, chance, 1.0, np.zeros(matched)
    )
    assert supports_recording(check, S) is supported
