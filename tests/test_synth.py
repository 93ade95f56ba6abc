"""Tests for audiodup.synth and for the generated fixtures in fixtures/audio."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import stft

from audiodup.synth import synthesize_work

SR = 22050
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
REGENERATE = "regenerate with: python fixtures/make_fixtures.py"


def _power_spectrogram(y: np.ndarray, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    freqs_hz, _, z = stft(y, fs=sr, nperseg=4096, noverlap=4096 - 1024)
    return freqs_hz, np.abs(z) ** 2


def _chroma(y: np.ndarray, sr: int = SR) -> np.ndarray:
    """Frame-wise pitch-class energy (12 x frames), each frame unit-normalised."""
    freqs_hz, power = _power_spectrogram(y, sr)
    keep = (freqs_hz > 55) & (freqs_hz < 2000)
    pitch_class = np.round(12 * np.log2(freqs_hz[keep] / 440.0) + 69).astype(int) % 12
    chroma = np.zeros((12, power.shape[1]))
    np.add.at(chroma, pitch_class, np.sqrt(power[keep]))
    return chroma / (np.linalg.norm(chroma, axis=0, keepdims=True) + 1e-12)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def pieces() -> dict[int, np.ndarray]:
    return {seed: synthesize_work(seed, duration_s=10.0) for seed in range(5)}


def test_same_seed_is_bit_identical() -> None:
    assert np.array_equal(synthesize_work(7, 5.0), synthesize_work(7, 5.0))


def test_different_seeds_have_unrelated_chroma(pieces: dict[int, np.ndarray]) -> None:
    for a, b in itertools.combinations(pieces, 2):
        assert _corr(_chroma(pieces[a]), _chroma(pieces[b])) < 0.3, (a, b)


@pytest.mark.parametrize(("duration_s", "sr"), [(1.0, 8000), (2.5, 22050), (0.3, 44100)])
def test_duration_and_sample_rate_respected(duration_s: float, sr: int) -> None:
    y = synthesize_work(3, duration_s=duration_s, sr=sr)
    assert y.dtype == np.float32
    assert y.shape == (round(duration_s * sr),)


def test_output_finite_and_peak_normalised(pieces: dict[int, np.ndarray]) -> None:
    for y in pieces.values():
        assert np.all(np.isfinite(y))
        assert np.max(np.abs(y)) <= 1.0
        assert np.max(np.abs(y)) == pytest.approx(0.7, abs=1e-3)


def test_output_is_tonal_not_noise(pieces: dict[int, np.ndarray]) -> None:
    for y in pieces.values():
        _, power = _power_spectrogram(y)
        power = power[:, power.sum(axis=0) > 0] + 1e-20
        flatness = np.exp(np.log(power).mean(axis=0)) / power.mean(axis=0)
        assert np.median(flatness) < 0.01  # white noise is ~0.5


def test_harmony_changes_over_time(pieces: dict[int, np.ndarray]) -> None:
    """Chords change: some 1-s windows of a piece have clearly different pitch-class content."""
    for y in pieces.values():
        chroma = _chroma(y)
        frames_per_window = int(1.0 * SR / 1024)
        n_windows = chroma.shape[1] // frames_per_window
        windows = chroma[:, : n_windows * frames_per_window]
        profiles = windows.reshape(12, n_windows, frames_per_window).mean(axis=2).T
        profiles /= np.linalg.norm(profiles, axis=1, keepdims=True)
        assert np.min(profiles @ profiles.T) < 0.75


def test_longer_rendering_starts_with_the_same_music() -> None:
    short, long = synthesize_work(4, 5.0), synthesize_work(4, 8.0)
    span = slice(SR // 10, 4 * SR)  # clear of the fades
    assert _corr(short[span], long[span]) > 0.9999


@pytest.mark.parametrize(("duration_s", "sr"), [(0.0, SR), (-1.0, SR), (1.0, 0)])
def test_invalid_arguments_raise(duration_s: float, sr: int) -> None:
    with pytest.raises(ValueError):
        synthesize_work(0, duration_s=duration_s, sr=sr)


# --- fixtures/audio -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest() -> dict:
    path = FIXTURES / "manifest.json"
    assert path.exists(), REGENERATE
    return json.loads(path.read_text())


def test_manifest_lists_exactly_the_files_present(manifest: dict) -> None:
    listed = {e["file"] for e in manifest["catalog"] + manifest["uploads"]}
    present = {
        str(p.relative_to(FIXTURES))
        for sub in ("catalog", "uploads")
        for p in (FIXTURES / sub).iterdir()
    }
    assert listed == present, REGENERATE


def test_catalog_is_six_40s_works_matching_the_synthesizer(manifest: dict) -> None:
    catalog = manifest["catalog"]
    assert [e["seed"] for e in catalog] == list(range(6))
    for entry in catalog:
        info = sf.info(FIXTURES / entry["file"])
        assert (info.samplerate, info.channels) == (SR, 1)
        assert info.duration == pytest.approx(40.0, abs=0.01)
    decoded, _ = sf.read(FIXTURES / catalog[0]["file"], dtype="float32")
    assert _corr(decoded, synthesize_work(0, 40.0)) > 0.99, REGENERATE


def test_upload_durations_match_their_variant(manifest: dict) -> None:
    expected_duration_s = {
        "stretch_0.80_work_01.ogg": 50.0,  # slower: 40 s / 0.80
        "stretch_1.25_work_02.ogg": 32.0,
        "pitch_-3_work_03.ogg": 40.0,
        "pitch_+2.5_work_04.ogg": 40.0,
        "speed_1.15_work_05.ogg": 40.0 / 1.15,
        "excerpt_15s_work_00.ogg": 15.0,
        "padded_work_01.ogg": 10.0 + 40.0 + 8.0,
        "mp3_work_02.mp3": 40.0,
        "nightcore_work_03.ogg": 32.0,
        "unrelated_a.ogg": 40.0,
        "unrelated_b.ogg": 30.0,
    }
    uploads = {Path(e["file"]).name: e for e in manifest["uploads"]}
    assert set(uploads) == set(expected_duration_s)
    for name, entry in uploads.items():
        info = sf.info(FIXTURES / entry["file"])
        assert (info.samplerate, info.channels) == (SR, 1), name
        assert info.duration == pytest.approx(expected_duration_s[name], abs=0.02), name
        assert entry["duration_s"] == pytest.approx(info.duration, abs=0.02), name


def test_upload_entries_are_self_consistent(manifest: dict) -> None:
    catalog_works = {e["work"] for e in manifest["catalog"]}
    catalog_seeds = {e["seed"] for e in manifest["catalog"]}
    for entry in manifest["uploads"]:
        if entry["work"] is None:
            assert entry["kind"] == "unrelated"
            assert entry["source_seed"] not in catalog_seeds
            continue
        assert entry["work"] in catalog_works
        ref_len_s = entry["ref_end_s"] - entry["ref_start_s"]
        query_len_s = entry["query_end_s"] - entry["query_start_s"]
        assert query_len_s == pytest.approx(ref_len_s / entry["tempo_ratio"], abs=1e-3)
        assert entry["query_end_s"] <= entry["duration_s"] + 1e-3
        if entry["kind"] in ("speed", "nightcore"):  # resampling couples tempo and pitch
            semitones = 12 * np.log2(entry["tempo_ratio"])
            assert entry["pitch_shift_semitones"] == pytest.approx(semitones, abs=1e-3)
    padded = next(e for e in manifest["uploads"] if e["kind"] == "padded")
    assert padded["query_start_s"] == 10.0
