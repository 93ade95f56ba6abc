"""Tests for audiodup.spectral: the STFT and the log-frequency spectrogram."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from audiodup.settings import DEFAULT_SETTINGS, Settings
from audiodup.spectral import (
    log_filterbank,
    log_spectrogram,
    magnitude_at_hop,
    shift_bins,
    stft_magnitude,
)

S = DEFAULT_SETTINGS
SR = S.sample_rate_hz


def tone(freq_hz: float, duration_s: float = 2.0, harmonics: int = 1) -> np.ndarray:
    t = np.arange(int(duration_s * SR)) / SR
    y = sum(0.5 / h * np.sin(2 * np.pi * freq_hz * h * t) for h in range(1, harmonics + 1))
    return np.asarray(y, dtype=np.float32)


def bin_hz(k: float) -> float:
    return S.fmin_hz * 2.0 ** (k / S.bins_per_octave)


@given(n_samples=st.integers(0, 20_000), hop=st.sampled_from([64, 256, 512]))
def test_stft_shape(n_samples: int, hop: int) -> None:
    n_fft = 1024
    out = stft_magnitude(np.zeros(n_samples, np.float32), n_fft, hop)
    expected_frames = 1 + (max(n_samples, n_fft) - n_fft) // hop
    assert out.shape == (n_fft // 2 + 1, expected_frames)
    assert out.dtype == np.float32


@pytest.mark.parametrize("fft_bin", [5, 100, 700])
def test_stft_peak_at_the_tone_frequency(fft_bin: int) -> None:
    freq_hz = fft_bin * SR / S.n_fft
    out = stft_magnitude(tone(freq_hz), S.n_fft, S.hop_length)
    assert np.all(np.argmax(out, axis=0) == fft_bin)


def test_stft_is_linear_in_amplitude() -> None:
    y = tone(440.0)
    a = stft_magnitude(y, S.n_fft, S.hop_length)
    b = stft_magnitude(3.0 * y, S.n_fft, S.hop_length)
    np.testing.assert_allclose(b, 3.0 * a, rtol=1e-4, atol=1e-4)


def test_stft_handles_more_frames_than_one_block() -> None:
    """The FFT runs in blocks of frames; the seams must be invisible."""
    y = tone(330.0, duration_s=4200 * S.hop_length / SR + 1.0)
    out = stft_magnitude(y, S.n_fft, S.hop_length)
    assert out.shape[1] > 4096
    column_energy = out.sum(axis=0)
    inner = column_energy[10:-10]
    assert np.ptp(inner) / inner.mean() < 1e-3


def test_filterbank_rows_are_normalised_triangles() -> None:
    bank = log_filterbank(SR, S.n_fft, S.fmin_hz, S.bins_per_octave, S.n_octaves).toarray()
    assert bank.shape == (S.bins_per_octave * S.n_octaves, S.n_fft // 2 + 1)
    assert np.all(bank >= 0)
    np.testing.assert_allclose(bank.sum(axis=1), 1.0, rtol=1e-5)
    # each filter is centred on its log-frequency
    fft_hz = np.arange(S.n_fft // 2 + 1) * SR / S.n_fft
    centroid_hz = bank @ fft_hz
    for k in (0, 50, 150, bank.shape[0] - 1):
        assert centroid_hz[k] == pytest.approx(bin_hz(k), rel=0.03)


@pytest.mark.parametrize("k", [20, 60, 99, 150, 190])
def test_log_spectrogram_puts_a_tone_on_its_bin(k: int) -> None:
    spec = log_spectrogram(tone(bin_hz(k)), S)
    assert spec.magnitude.shape[0] == S.bins_per_octave * S.n_octaves
    assert spec.magnitude.dtype == np.float32
    profile = spec.magnitude[:, 5:-5].mean(axis=1)
    assert abs(int(np.argmax(profile)) - k) <= 1


def test_a_semitone_is_a_fixed_translation() -> None:
    per_semitone = S.bins_per_octave // 12
    base = log_spectrogram(tone(220.0, harmonics=4), S).magnitude[:, 5:-5].mean(axis=1)
    for semitones in (-5, 1, 7):
        shifted_hz = 220.0 * 2 ** (semitones / 12)
        moved = log_spectrogram(tone(shifted_hz, harmonics=4), S).magnitude[:, 5:-5].mean(axis=1)
        lags = np.arange(-30, 31)
        scores = [np.dot(np.roll(base, lag), moved) for lag in lags]
        assert lags[int(np.argmax(scores))] == semitones * per_semitone


def test_frame_rate_and_length() -> None:
    duration_s = 3.0
    spec = log_spectrogram(tone(440.0, duration_s), S)
    assert spec.frames_per_second == pytest.approx(SR / S.hop_length)
    assert spec.n_frames == 1 + (int(duration_s * SR) - S.n_fft) // S.hop_length
    assert spec.bins_per_octave == S.bins_per_octave
    assert spec.fmin_hz == S.fmin_hz


def test_settings_shape_the_spectrogram() -> None:
    settings = Settings(bins_per_octave=24, n_octaves=5, hop_length=128)
    spec = log_spectrogram(tone(440.0), settings)
    assert spec.magnitude.shape[0] == 24 * 5
    assert spec.frames_per_second == pytest.approx(SR / 128)


def test_silence_gives_zero_spectrogram() -> None:
    spec = log_spectrogram(np.zeros(SR * 2, np.float32), S)
    assert np.all(spec.magnitude == 0)


@given(
    rows=st.integers(1, 60),
    cols=st.integers(1, 600),
    shift=st.floats(-80.0, 80.0, allow_nan=False),
    seed=st.integers(0, 2**32 - 1),
)
@hypothesis_settings(deadline=None)
def test_shift_bins_is_scipy_ndimage_shift(rows: int, cols: int, shift: float, seed: int) -> None:
    """chroma's tuning shift gives exactly ndimage.shift's values (issue #16: it replaced it),
    whole bins, fractions and shifts past the ends included."""
    from scipy import ndimage

    x = np.random.default_rng(seed).normal(size=(rows, cols)).astype(np.float32)
    expected = ndimage.shift(x, (shift, 0), order=1, mode="nearest", prefilter=False)
    got = shift_bins(x, shift)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


@pytest.mark.parametrize("seconds", [0.05, 1.0, 7.3, 30.0])
def test_log_spectrogram_is_the_filter_bank_times_the_stft(seconds: float) -> None:
    """The fused path (frame blocks, only the FFT bins the filters read) gives exactly
    ``log_filterbank(...) @ stft_magnitude(...)``, as computed before issue #16."""
    y = np.random.default_rng(7).normal(size=int(seconds * SR)).astype(np.float32)
    y += tone(440.0, seconds, harmonics=5)[: len(y)]
    bank = log_filterbank(SR, S.n_fft, S.fmin_hz, S.bins_per_octave, S.n_octaves)
    expected = np.asarray(bank @ stft_magnitude(y, S.n_fft, S.hop_length), dtype=np.float32)
    got = log_spectrogram(y, S).magnitude
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


@hypothesis_settings(max_examples=25, deadline=None)
@given(
    n_samples=st.integers(0, 3 * S.n_fft),
    hop=st.sampled_from([S.hop_length // 2, 2 * S.hop_length, S.hop_length // 4, 3 * S.hop_length]),
    seed=st.integers(0, 2**16),
)
def test_magnitude_at_another_hop_is_the_stft_at_that_hop(n_samples: int, hop: int, seed: int):
    """Derived from the spectrogram at the ordinary hop, bit for bit, or None (other ratios,
    audio shorter than a frame and a hop); never a wrong array."""
    samples = np.random.default_rng(seed).standard_normal(n_samples).astype(np.float32)
    known = log_spectrogram(samples, S).magnitude
    derived = magnitude_at_hop(known, samples, S, hop)
    direct = log_spectrogram(samples, Settings(hop_length=hop)).magnitude
    if hop in (S.hop_length // 2, 2 * S.hop_length) and n_samples >= S.n_fft + S.hop_length:
        assert derived is not None
    if derived is not None:
        assert derived.dtype == direct.dtype and np.array_equal(derived, direct)
