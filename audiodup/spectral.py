"""Shared spectral front end: one STFT, mapped onto a log-frequency axis.

Both fingerprints read this spectrogram, so the FFT runs once per file. On a log-frequency axis a
pitch shift is a translation, which the peak hashes and the chroma fold both rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.sparse

from .settings import DEFAULT_SETTINGS, Settings


@dataclass(frozen=True)
class LogSpectrogram:
    """Log-frequency magnitude spectrogram.

    ``magnitude`` has shape ``(n_bins, n_frames)``; bin ``k`` is centred at
    ``fmin_hz * 2 ** (k / bins_per_octave)``; frame ``t`` at ``t * hop_length / sample_rate_hz`` s.
    """

    magnitude: np.ndarray
    frames_per_second: float
    bins_per_octave: int
    fmin_hz: float

    @property
    def n_frames(self) -> int:
        return self.magnitude.shape[1]


def stft_magnitude(samples: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """Magnitude STFT with a Hann window, shape ``(n_fft // 2 + 1, n_frames)``, float32."""
    samples = np.asarray(samples, dtype=np.float32)
    if len(samples) < n_fft:
        samples = np.pad(samples, (0, n_fft - len(samples)))
    n_frames = 1 + (len(samples) - n_fft) // hop_length
    frames = np.lib.stride_tricks.as_strided(
        samples,
        shape=(n_frames, n_fft),
        strides=(samples.strides[0] * hop_length, samples.strides[0]),
        writeable=False,
    )
    window = np.hanning(n_fft).astype(np.float32)
    out = np.empty((n_fft // 2 + 1, n_frames), dtype=np.float32)
    block = 4096  # bounds the complex temporary for long files
    for start in range(0, n_frames, block):
        spectrum = scipy.fft.rfft(frames[start : start + block] * window, axis=1)
        out[:, start : start + block] = np.abs(spectrum).T
    return out


@lru_cache(maxsize=8)
def log_filterbank(
    sample_rate_hz: int, n_fft: int, fmin_hz: float, bins_per_octave: int, n_octaves: int
) -> scipy.sparse.csr_matrix:
    """Sparse ``(n_log_bins, n_fft // 2 + 1)`` matrix of triangular filters on a log axis.

    Each filter is at least one FFT bin wide, so low bins interpolate and high bins average.
    """
    n_bins = bins_per_octave * n_octaves
    fft_hz = np.arange(n_fft // 2 + 1) * sample_rate_hz / n_fft
    fft_step_hz = sample_rate_hz / n_fft
    centres = fmin_hz * 2.0 ** (np.arange(n_bins) / bins_per_octave)
    rows, cols, vals = [], [], []
    for k, fc in enumerate(centres):
        half_width = max(fc * (2.0 ** (1.0 / bins_per_octave) - 1.0), fft_step_hz)
        lo, hi = np.searchsorted(fft_hz, [fc - half_width, fc + half_width])
        idx = np.arange(max(lo, 0), min(hi + 1, len(fft_hz)))
        weights = np.clip(1.0 - np.abs(fft_hz[idx] - fc) / half_width, 0.0, None)
        weights /= weights.sum()
        rows.extend([k] * len(idx))
        cols.extend(idx.tolist())
        vals.extend(weights.tolist())
    return scipy.sparse.csr_matrix(
        (np.asarray(vals, dtype=np.float32), (rows, cols)), shape=(n_bins, len(fft_hz))
    )


def log_spectrogram(samples: np.ndarray, settings: Settings = DEFAULT_SETTINGS) -> LogSpectrogram:
    """Compute the shared log-frequency magnitude spectrogram of mono ``samples``."""
    magnitude = stft_magnitude(samples, settings.n_fft, settings.hop_length)
    bank = log_filterbank(
        settings.sample_rate_hz,
        settings.n_fft,
        settings.fmin_hz,
        settings.bins_per_octave,
        settings.n_octaves,
    )
    return LogSpectrogram(
        magnitude=np.asarray(bank @ magnitude, dtype=np.float32),
        frames_per_second=settings.frames_per_second,
        bins_per_octave=settings.bins_per_octave,
        fmin_hz=settings.fmin_hz,
    )
