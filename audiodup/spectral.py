"""Shared spectral front end: one STFT, mapped onto a log-frequency axis.

Both fingerprints read this spectrogram, so the FFT runs once per file. On a log-frequency axis a
pitch shift is a translation, which the peak hashes and the chroma fold both rely on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
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


# FFT frames per block: the windowed block and its spectrum stay in cache. Bigger blocks were
# slower (4096 frames: 0.16 CPU-s for a 4-min upload, 256: 0.05) and the values are the same:
# each frame is transformed alone.
_BLOCK_FRAMES = 256


def stft_magnitude(samples: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """Magnitude STFT with a Hann window, shape ``(n_fft // 2 + 1, n_frames)``, float32."""
    n_frames, blocks = _magnitude_blocks(samples, n_fft, hop_length, n_fft // 2 + 1)
    out = np.empty((n_fft // 2 + 1, n_frames), dtype=np.float32)
    for start, magnitude in blocks:
        out[:, start : start + len(magnitude)] = magnitude.T
    return out


def _magnitude_blocks(
    samples: np.ndarray, n_fft: int, hop_length: int, n_bins: int
) -> tuple[int, Iterator[tuple[int, np.ndarray]]]:
    """``n_frames`` and the STFT magnitude of bins ``0 .. n_bins - 1`` block by block:
    ``(first frame, (frames, n_bins) float32)``, frames in time order."""
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
    import scipy.fft  # on first use (0.2 CPU-s): commands that do not fingerprint skip it

    def blocks() -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, n_frames, _BLOCK_FRAMES):
            spectrum = scipy.fft.rfft(frames[start : start + _BLOCK_FRAMES] * window, axis=1)
            yield start, np.abs(spectrum[:, :n_bins])

    return n_frames, blocks()


@lru_cache(maxsize=8)
def log_filterbank(
    sample_rate_hz: int, n_fft: int, fmin_hz: float, bins_per_octave: int, n_octaves: int
) -> scipy.sparse.csr_matrix:
    """Sparse ``(n_log_bins, n_fft // 2 + 1)`` matrix of triangular filters on a log axis.

    Each filter is at least one FFT bin wide, so low bins interpolate and high bins average.
    """
    import scipy.sparse

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
    bank = _read_columns_of_filterbank(
        settings.sample_rate_hz,
        settings.n_fft,
        settings.fmin_hz,
        settings.bins_per_octave,
        settings.n_octaves,
    )
    n_fft, hop = settings.n_fft, settings.hop_length
    n_frames, blocks = _magnitude_blocks(samples, n_fft, hop, bank.shape[1])
    magnitude = np.empty((bank.shape[0], n_frames), dtype=np.float32)
    for start, block in blocks:
        magnitude[:, start : start + len(block)] = bank @ np.ascontiguousarray(block.T)
    return LogSpectrogram(
        magnitude=magnitude,
        frames_per_second=settings.frames_per_second,
        bins_per_octave=settings.bins_per_octave,
        fmin_hz=settings.fmin_hz,
    )


def magnitude_at_hop(
    known: np.ndarray, samples: np.ndarray, settings: Settings, hop_length: int
) -> np.ndarray | None:
    """The ``magnitude`` of ``log_spectrogram(samples, settings)`` at ``hop_length`` instead of
    ``settings.hop_length``, from ``known`` (the magnitude at ``settings.hop_length``), or None
    when it cannot be derived (another ratio, audio shorter than a frame and a hop).

    Each frame is transformed alone, so a frame starting at the same sample has the same values
    bit for bit: a hop twice as long is every other known frame, and a hop half as long is the
    known frames interleaved with those of an STFT started half a hop in (one new FFT per two
    frames instead of two).
    """
    hop, n_fft = settings.hop_length, settings.n_fft
    if len(samples) < n_fft + hop:
        return None
    n_frames = 1 + (len(samples) - n_fft) // hop_length
    if hop_length == 2 * hop:
        return np.ascontiguousarray(known[:, ::2])  # reductions see the same layout
    if 2 * hop_length == hop:
        out = np.empty((known.shape[0], n_frames), dtype=np.float32)
        out[:, ::2] = known
        odd = log_spectrogram(samples[hop_length:], settings).magnitude
        out[:, 1::2] = odd[:, : n_frames // 2]
        return out
    return None


@lru_cache(maxsize=8)
def _read_columns_of_filterbank(
    sample_rate_hz: int, n_fft: int, fmin_hz: float, bins_per_octave: int, n_octaves: int
) -> scipy.sparse.csr_matrix:
    """:func:`log_filterbank` without the FFT bins above its last filter, which it never reads
    (above 4.2 kHz of 5.5 by default): their magnitudes need not be taken. Each log bin then
    sums the same products in the same order as ``log_filterbank(...) @ stft_magnitude(...)``."""
    bank = log_filterbank(sample_rate_hz, n_fft, fmin_hz, bins_per_octave, n_octaves)
    used = int(bank.indices.max()) + 1 if bank.nnz else 1
    return bank[:, :used]


def shift_bins(magnitude: np.ndarray, bins: float) -> np.ndarray:
    """``magnitude`` (bins x frames) moved up by ``bins`` log bins (fractions too), by
    linear interpolation, the edge bins repeated beyond the ends.

    The same float32 values as ``ndimage.shift(magnitude, (bins, 0), order=1,
    mode="nearest", prefilter=False)`` (each value from its two neighbours in float64, then
    rounded), in blocks of frames that stay in cache: five times faster.
    """
    n = magnitude.shape[0]
    source = np.clip(np.arange(n, dtype=np.float64) - bins, 0, n - 1)
    below = np.floor(source)
    upper_weight = (source - below)[:, None]
    lower_weight = 1.0 - upper_weight
    lower = below.astype(np.int64)
    upper = np.minimum(lower + 1, n - 1)
    out = np.empty_like(magnitude)
    for start in range(0, magnitude.shape[1], _BLOCK_FRAMES):
        block = magnitude[:, start : start + _BLOCK_FRAMES].astype(np.float64)
        out[:, start : start + _BLOCK_FRAMES] = (
            block[lower] * lower_weight + block[upper] * upper_weight
        )
    return out
