"""Tests for audiodup.peaks: local maxima of the log spectrogram."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiodup.peaks import PEAK_DTYPE, _neighbourhood_max, find_peaks
from audiodup.settings import DEFAULT_SETTINGS
from audiodup.spectral import LogSpectrogram, log_spectrogram
from audiodup.synth import synthesize_work

S = DEFAULT_SETTINGS
FPS = S.frames_per_second


def spectrogram(magnitude: np.ndarray) -> LogSpectrogram:
    return LogSpectrogram(
        magnitude=np.asarray(magnitude, dtype=np.float32),
        frames_per_second=FPS,
        bins_per_octave=S.bins_per_octave,
        fmin_hz=S.fmin_hz,
    )


def blobs(
    centres: list[tuple[float, float]], shape: tuple[int, int] = (216, 400), width: float = 1.0
) -> np.ndarray:
    """Gaussian bumps at (bin, frame) on a faint noise floor."""
    bins = np.arange(shape[0])[:, None]
    frames = np.arange(shape[1])[None, :]
    out = np.full(shape, 1e-3)
    for b, f in centres:
        out += np.exp(-((bins - b) ** 2) / (2 * width**2) - ((frames - f) ** 2) / 8.0)
    return out


@pytest.fixture(scope="module")
def music_spectrogram() -> LogSpectrogram:
    return log_spectrogram(synthesize_work(21, duration_s=20.0, sr=S.sample_rate_hz), S)


def test_peaks_are_sorted_structured_and_in_range(music_spectrogram: LogSpectrogram) -> None:
    peaks = find_peaks(music_spectrogram, 8.0, S.peak_time_radius, S.peak_freq_radius)
    assert peaks.dtype == PEAK_DTYPE
    assert len(peaks) > 50
    order = np.lexsort((peaks["bin"], peaks["frame"]))
    assert np.array_equal(order, np.arange(len(peaks)))
    assert peaks["frame"].max() < music_spectrogram.n_frames
    n_bins = music_spectrogram.magnitude.shape[0]
    assert np.all((peaks["bin"] >= 0.5) & (peaks["bin"] <= n_bins - 1.5))
    assert np.all(np.isfinite(peaks["strength"])) and np.all(peaks["strength"] > 0)


@pytest.mark.parametrize("peaks_per_second", [2.0, 6.0, 12.0])
def test_density_is_capped_per_block(
    music_spectrogram: LogSpectrogram, peaks_per_second: float
) -> None:
    peaks = find_peaks(music_spectrogram, peaks_per_second, S.peak_time_radius, S.peak_freq_radius)
    block = max(1, round(FPS))
    per_block = max(1, round(peaks_per_second * block / FPS))
    counts = np.bincount(peaks["frame"] // block)
    assert counts.max() <= per_block
    duration_s = music_spectrogram.n_frames / FPS
    assert len(peaks) >= 0.5 * peaks_per_second * duration_s  # spread over the whole piece


def test_denser_setting_keeps_a_superset(music_spectrogram: LogSpectrogram) -> None:
    sparse = find_peaks(music_spectrogram, 4.0, S.peak_time_radius, S.peak_freq_radius)
    dense = find_peaks(music_spectrogram, 9.0, S.peak_time_radius, S.peak_freq_radius)
    key = lambda p: set(zip(p["frame"].tolist(), np.round(p["bin"], 3).tolist(), strict=True))  # noqa: E731
    assert key(sparse) <= key(dense)


def test_isolated_bumps_are_found_with_sub_bin_precision() -> None:
    centres = [(40.3, 50), (120.0, 150), (181.7, 260)]
    peaks = find_peaks(spectrogram(blobs(centres)), 10.0, S.peak_time_radius, S.peak_freq_radius)
    found = sorted(zip(peaks["frame"].tolist(), peaks["bin"].tolist(), strict=True))
    assert len(found) == 3
    for (frame, bin_), (b, f) in zip(found, centres, strict=True):
        assert frame == f
        assert bin_ == pytest.approx(b, abs=0.15)


@given(shift=st.integers(-30, 30))
def test_frequency_translation_moves_peaks(shift: int) -> None:
    centres = [(60.0, 40), (100.4, 120), (150.8, 200), (90.2, 300)]
    base = find_peaks(spectrogram(blobs(centres)), 10.0, S.peak_time_radius, S.peak_freq_radius)
    moved_centres = [(b + shift, f) for b, f in centres]
    moved = find_peaks(
        spectrogram(blobs(moved_centres)), 10.0, S.peak_time_radius, S.peak_freq_radius
    )
    assert np.array_equal(moved["frame"], base["frame"])
    np.testing.assert_allclose(moved["bin"], base["bin"] + shift, atol=0.02)


def test_time_offset_moves_peaks() -> None:
    """Prepending whole seconds of background shifts every peak by the same number of frames."""
    music = synthesize_work(22, duration_s=8.0, sr=S.sample_rate_hz)
    pad_frames = 2 * round(FPS)
    pad = np.zeros(pad_frames * S.hop_length, np.float32)
    base = find_peaks(log_spectrogram(music, S), 6.0, S.peak_time_radius, S.peak_freq_radius)
    late = find_peaks(
        log_spectrogram(np.concatenate([pad, music]), S),
        6.0,
        S.peak_time_radius,
        S.peak_freq_radius,
    )
    base_set = set(zip(base["frame"].tolist(), np.round(base["bin"], 2).tolist(), strict=True))
    late_set = {
        (f - pad_frames, b)
        for f, b in zip(late["frame"].tolist(), np.round(late["bin"], 2).tolist(), strict=True)
    }
    assert len(base_set & late_set) >= 0.8 * len(base_set)


@pytest.mark.parametrize(
    "magnitude",
    [np.zeros((216, 100)), np.ones((216, 100)), np.zeros((3, 1))],
    ids=["silent", "flat", "tiny"],
)
def test_featureless_spectrograms_give_no_peaks(magnitude: np.ndarray) -> None:
    peaks = find_peaks(spectrogram(magnitude), 6.0, S.peak_time_radius, S.peak_freq_radius)
    assert peaks.dtype == PEAK_DTYPE
    assert len(peaks) == 0


def test_quiet_passages_keep_peaks() -> None:
    """Peaks are chosen per block, so a quiet second next to a loud one still has peaks."""
    centres = [(60.0 + 10 * (i % 7), 10 + 20 * i) for i in range(19)]
    magnitude = blobs(centres, shape=(216, 400))
    magnitude[:, 200:] *= 1e-3  # second half 60 dB quieter
    peaks = find_peaks(spectrogram(magnitude), 10.0, S.peak_time_radius, S.peak_freq_radius)
    assert np.sum(peaks["frame"] >= 200) >= 8


@given(
    rows=st.integers(1, 30),
    cols=st.integers(1, 40),
    freq_radius=st.integers(0, 6),
    time_radius=st.integers(0, 8),
    seed=st.integers(0, 2**32 - 1),
    ties=st.booleans(),
)
def test_neighbourhood_max_is_scipy_maximum_filter(
    rows: int, cols: int, freq_radius: int, time_radius: int, seed: int, ties: bool
) -> None:
    """The peak picker's own maximum filter gives exactly scipy's, borders (outside = 0.0),
    negative values and ties included (issue #16: it replaced ndimage.maximum_filter)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, cols)).astype(np.float32)
    if ties:
        x = np.round(x)
    size = (2 * freq_radius + 1, 2 * time_radius + 1)
    expected = ndimage.maximum_filter(x, size=size, mode="constant")
    got = _neighbourhood_max(x, freq_radius, time_radius)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
