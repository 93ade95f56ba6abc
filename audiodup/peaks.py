"""Spectral peaks: salient local maxima of the log-frequency spectrogram."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spectral import LogSpectrogram

# Peaks as a structured array: frame index, sub-bin log frequency and log-magnitude strength.
PEAK_DTYPE = np.dtype([("frame", "<u4"), ("bin", "<f4"), ("strength", "<f4")])


@dataclass(frozen=True)
class PeakCandidates:
    """Every local maximum of a spectrogram that may be kept as a peak, before the selection per
    second: bin, frame and salience (height above the local background) of each, and the
    log-magnitude there and one bin below and above, for the sub-bin refinement (kept per
    candidate, not the whole spectrogram). :func:`select_peaks` picks a density from them, so
    an upload's query peaks and the peaks a catalog stores share one search."""

    bins: np.ndarray
    frames: np.ndarray
    strength: np.ndarray
    log_mag: np.ndarray  # (3, n) float32: one bin below, at and one bin above each candidate
    frames_per_second: float


def find_peaks(
    spec: LogSpectrogram,
    peaks_per_second: float,
    time_radius: int,
    freq_radius: int,
) -> np.ndarray:
    """Pick spectral peaks, about ``peaks_per_second`` of them, spread evenly over time.

    A peak is a local maximum of the log-magnitude in a ``(2 * freq_radius + 1) x
    (2 * time_radius + 1)`` neighbourhood. Candidates are ranked by their height above the
    local background and the strongest are kept per one-second block, so quiet passages keep
    peaks too. Frequencies are refined to sub-bin precision by parabolic interpolation.

    Returns
    -------
    np.ndarray of PEAK_DTYPE, sorted by (frame, bin).
    """
    return select_peaks(peak_candidates(spec, time_radius, freq_radius), peaks_per_second)


def peak_candidates(spec: LogSpectrogram, time_radius: int, freq_radius: int) -> PeakCandidates:
    """The local maxima of :func:`find_peaks`, before any density is chosen."""
    from scipy import ndimage  # on first use: commands that do not fingerprint skip it

    empty = np.zeros(0, dtype=np.int64)
    if spec.magnitude.size == 0:
        neighbours = np.zeros((3, 0), dtype=np.float32)
        return PeakCandidates(empty, empty, empty, neighbours, spec.frames_per_second)
    log_mag = np.log1p(1000.0 * spec.magnitude / max(float(spec.magnitude.max()), 1e-12))
    is_max = _neighbourhood_max(log_mag, freq_radius, time_radius) == log_mag
    background = ndimage.uniform_filter(log_mag, size=(2 * freq_radius + 9, 2 * time_radius + 1))
    salience = log_mag - background
    is_max &= salience > 0.05
    is_max[0, :] = is_max[-1, :] = False
    bins, frames = np.nonzero(is_max)  # never an edge bin: a neighbour on either side
    neighbours = np.stack([log_mag[bins + step, frames] for step in (-1, 0, 1)])
    return PeakCandidates(bins, frames, salience[bins, frames], neighbours, spec.frames_per_second)


def select_peaks(candidates: PeakCandidates, peaks_per_second: float) -> np.ndarray:
    """The strongest ``peaks_per_second`` of ``candidates`` per one-second block, refined to
    sub-bin frequencies: :func:`find_peaks` at that density, PEAK_DTYPE sorted by (frame, bin)."""
    if len(candidates.frames) == 0:
        return np.zeros(0, dtype=PEAK_DTYPE)
    keep = _strongest_per_second(
        candidates.frames, candidates.strength, peaks_per_second, candidates.frames_per_second
    )
    bins, frames = candidates.bins[keep], candidates.frames[keep]
    strength = candidates.strength[keep]

    below, here, above = candidates.log_mag[:, keep]
    curvature = below - 2.0 * here + above
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(curvature < 0, 0.5 * (below - above) / curvature, 0.0)
    peaks = np.empty(len(bins), dtype=PEAK_DTYPE)
    peaks["frame"] = frames
    peaks["bin"] = bins + np.clip(delta, -0.5, 0.5)
    peaks["strength"] = strength
    return np.sort(peaks, order=["frame", "bin"])


def _neighbourhood_max(x: np.ndarray, freq_radius: int, time_radius: int) -> np.ndarray:
    """``ndimage.maximum_filter(x, size=(2 * freq_radius + 1, 2 * time_radius + 1),
    mode="constant")``, the same values (a maximum is exact) four times faster: one axis at a
    time, each window's maximum from maxima of 1, 2, 4, 8... neighbours."""
    return _window_max(_window_max(x, 2 * freq_radius + 1, axis=0), 2 * time_radius + 1, axis=1)


def _window_max(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """The maximum of ``size`` values centred on each (``size // 2`` before), along ``axis`` of
    2-D ``x``; outside ``x`` counts as 0.0, as ``mode="constant"`` has it."""
    n, before = x.shape[axis], size // 2
    shape = (n + size - 1, x.shape[1]) if axis == 0 else (x.shape[0], n + size - 1)
    padded = np.zeros(shape, dtype=x.dtype)
    inside = slice(before, before + n)
    padded[(inside, slice(None)) if axis == 0 else (slice(None), inside)] = x

    def shifted(a: np.ndarray, start: int, stop: int | None) -> np.ndarray:
        return a[start:stop] if axis == 0 else a[:, start:stop]

    widest, width = padded, 1  # widest[i]: the maximum of padded[i : i + width]
    while 2 * width <= size:
        widest = np.maximum(shifted(widest, 0, -width), shifted(widest, width, None))
        width *= 2
    rest = size - width
    if rest:
        widest = np.maximum(shifted(widest, 0, -rest), shifted(widest, rest, None))
    return shifted(widest, 0, n)


def thin_peaks(peaks: np.ndarray, peaks_per_second: float, frames_per_second: float) -> np.ndarray:
    """The strongest ``peaks_per_second`` of ``peaks`` per one-second block, still time-sorted.

    Thinning a denser selection gives the same peaks as selecting at the lower density directly.
    """
    keep = _strongest_per_second(
        peaks["frame"].astype(np.int64), peaks["strength"], peaks_per_second, frames_per_second
    )
    return peaks[np.sort(keep)]


def _strongest_per_second(
    frames: np.ndarray, strength: np.ndarray, peaks_per_second: float, frames_per_second: float
) -> np.ndarray:
    """Indices of the ``peaks_per_second`` strongest entries in each one-second block."""
    block = max(1, int(round(frames_per_second)))
    per_block = max(1, int(round(peaks_per_second * block / frames_per_second)))
    block_of = frames // block
    order = np.lexsort((-strength, block_of))
    sorted_blocks = block_of[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_blocks, sorted_blocks, side="left")
    return order[rank < per_block]
