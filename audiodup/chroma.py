"""Tuning-compensated chroma and key/tempo-invariant segment vectors.

Chroma folds the log-frequency spectrogram onto 12 pitch classes after a tuning estimate, so a
fractional pitch shift lands on the same classes. Segment vectors take a window that covers a fixed
stretch of *reference* time, resample it to a fixed number of steps and keep the magnitude of its
2-D Fourier transform: a key change is a circular shift along the pitch-class axis, which the
magnitude ignores. On the query side, windows are cut at several time scales, so one of them
lines up with the reference whatever the tempo change.
"""

from __future__ import annotations

import numpy as np

from .settings import DEFAULT_SETTINGS
from .spectral import LogSpectrogram, shift_bins

# the default of Settings.chroma_coeffs; kept for importers of the former constant
N_CHROMA_COEFFS = DEFAULT_SETTINGS.chroma_coeffs


def estimate_tuning(spec: LogSpectrogram) -> float:
    """Tuning offset in fractions of a semitone, in ``[-0.5, 0.5)``.

    The energy of a tonal spectrum on a log axis repeats every semitone; the phase of that
    periodicity tells where the semitone grid sits relative to the analysis bins.
    """
    per_semitone = spec.bins_per_octave // 12
    energy = np.sqrt(spec.magnitude).sum(axis=1)
    phase = 2 * np.pi * np.arange(len(energy)) / per_semitone
    angle = np.angle(np.sum(energy * np.exp(1j * phase)))
    return float(((angle / (2 * np.pi)) + 0.5) % 1.0 - 0.5)


def chroma_frames(spec: LogSpectrogram, tuning_semitones: float, fps: float) -> np.ndarray:
    """Chroma at ``fps`` frames per second, shape ``(n_frames, 12)``, each frame centred and
    L2-normalised (so frames compare by correlation).

    Columns are pitch classes relative to ``fmin_hz`` after removing ``tuning_semitones``.
    """
    per_semitone = spec.bins_per_octave // 12
    # what ndimage.shift(..., order=1, mode="nearest", prefilter=False) gives, 5x faster
    magnitude = shift_bins(np.sqrt(spec.magnitude), -tuning_semitones * per_semitone)
    n_bins = magnitude.shape[0] - magnitude.shape[0] % spec.bins_per_octave
    # each semitone collects its centre bin and the neighbours on either side
    semitones = magnitude[:n_bins].reshape(-1, per_semitone, magnitude.shape[1]).sum(axis=1)
    chroma = semitones.reshape(-1, 12, magnitude.shape[1]).sum(axis=0)  # (12, frames)
    n_out = int(chroma.shape[1] / spec.frames_per_second * fps)
    if n_out == 0:
        return np.zeros((0, 12), dtype=np.float32)
    # average the analysis frames that fall in each output frame's exact time span
    edges = np.round(np.arange(n_out + 1) * spec.frames_per_second / fps).astype(np.int64)
    sums = np.add.reduceat(chroma[:, : edges[-1]], edges[:-1], axis=1)
    pooled = (sums / np.diff(edges)[None, :]).T
    pooled = np.log1p(100.0 * pooled / max(float(pooled.max()), 1e-12))
    # centred: a flat (noise, silence) frame becomes zero instead of matching every other frame
    pooled -= pooled.mean(axis=1, keepdims=True)
    return _normalise_rows(pooled).astype(np.float32)


def segment_vectors(
    chroma: np.ndarray,
    fps: float,
    segment_s: float,
    hop_s: float,
    steps: int,
    time_scale: float = 1.0,
    coeffs: tuple[int, int] = N_CHROMA_COEFFS,
) -> tuple[np.ndarray, np.ndarray]:
    """Key-invariant vectors of chroma windows.

    A window covers ``segment_s * time_scale`` seconds of this recording: with ``time_scale =
    1 / tempo_ratio`` it covers ``segment_s`` of the reference. ``coeffs``
    (``settings.chroma_coeffs``) is how many pitch-class x time low-frequency 2-D FFT magnitudes
    are kept. Returns
    ``(vectors, starts_s)`` with unit-norm float32 vectors of dimension ``coeffs[0] * coeffs[1]``.
    """
    length_s = segment_s * time_scale
    duration_s = len(chroma) / fps
    if duration_s < length_s * 0.98 or len(chroma) < 2:
        return np.zeros((0, int(np.prod(coeffs))), np.float32), np.zeros(0)
    starts = np.arange(0.0, max(duration_s - length_s, 0.0) + 1e-9, hop_s)
    positions = (starts[:, None] + np.linspace(0, length_s, steps, endpoint=False)[None, :]) * fps
    idx = np.clip(positions, 0, len(chroma) - 1)
    lo = np.floor(idx).astype(int)
    hi = np.minimum(lo + 1, len(chroma) - 1)
    w = (idx - lo)[..., None]
    patches = chroma[lo] * (1 - w) + chroma[hi] * w  # (n, steps, 12)
    spectrum = np.abs(np.fft.fft2(patches - patches.mean(axis=(1, 2), keepdims=True), axes=(2, 1)))
    kc, kt = coeffs
    vectors = spectrum[:, :kt, :kc].reshape(len(starts), -1)
    return _normalise_rows(np.sqrt(vectors)).astype(np.float32), starts


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-9)
