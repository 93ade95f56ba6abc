"""Guided peak check: given a hypothesised alignment, do the upload's peaks land on the work's?

Hashes need three peaks to survive together; heavy reverb, 2x stretches and very short excerpts
leave too few intact triplets. A weak hash line or a chroma alignment still says *where* to look:
map every upload peak through ``t_ref = tempo * (t_up - centre) + ref_at_centre`` and
``bin_ref = bin_up - pitch``, and count the ones that fall within a small tolerance of a stored
reference peak. The alignment is refined on a small (tempo, offset) grid; chance is measured on the
same pair with the offset moved by seconds, where nothing real lines up. The tail probability of
the count is multiplied by the grid size, so the search is paid for.

Shifted offsets underestimate chance for music that is merely aligned (same key, chords changing
on the same beats) or re-arranged (a theme re-sequenced at another tempo with the same
instruments): on the benchmark corpus such pairs reached 4.6x the shifted-offset rate and 19 % of
the upload's peaks; real copies reached 5x in 87 % of checks and 20 % in 98 %
(``python -m benchmarks.calibrate --peaks``). So the count must reach ``peak_check_min_ratio``
times chance and ``peak_check_min_rate`` of the peaks checked, and the tail is taken against an
inflated chance rate. When hashes and chroma already agree on an alignment, one of the two floors
(:func:`supports_recording`) decides whether their probabilities may combine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, stats

from .match import ChromaEvidence, HashEvidence
from .settings import Settings


@dataclass(frozen=True)
class Alignment:
    """A hypothesis to check: ``t_ref = tempo * (t_up - query_centre) + ref_centre`` (frames)."""

    tempo_ratio: float
    pitch_bins: float
    query_centre: float
    ref_centre: float

    def ref_frames(self, query_frames: np.ndarray | float) -> np.ndarray | float:
        return self.tempo_ratio * (query_frames - self.query_centre) + self.ref_centre


@dataclass(frozen=True)
class PeakCheck:
    """The refined alignment and how far its peak coincidences exceed chance."""

    alignment: Alignment
    matched_peaks: int
    checked_peaks: int  # upload peaks that map inside the reference
    chance_peaks: float  # expected coincidences at shifted offsets
    probability: float  # tail probability times the grid size, before the search over works
    matched_query_frames: np.ndarray  # upload frames of the coinciding peaks

    def aligned_frames(self) -> tuple[float, float, float, float]:
        """``(query_start, query_end, ref_start, ref_end)`` frames where the peaks coincide."""
        q0, q1 = float(self.matched_query_frames.min()), float(self.matched_query_frames.max())
        return q0, q1, float(self.alignment.ref_frames(q0)), float(self.alignment.ref_frames(q1))


def hash_alignment(evidence: HashEvidence, settings: Settings) -> Alignment:
    """The alignment of a hash evidence's main line, centred on it."""
    line = evidence.lines[0]
    centre = (line.query_start_frame + line.query_end_frame) / 2
    ref_centre = line.ref_start_frame + evidence.tempo_ratio * (centre - line.query_start_frame)
    pitch_bins = evidence.pitch_shift_semitones * (settings.bins_per_octave // 12)
    return Alignment(evidence.tempo_ratio, pitch_bins, centre, ref_centre)


def chroma_alignments(evidence: ChromaEvidence, settings: Settings) -> list[Alignment]:
    """The alignment of a chroma evidence at its pitch and an octave either side (chroma knows
    pitch only modulo an octave)."""
    fps = settings.frames_per_second
    centre_s = (evidence.query_start_s + evidence.query_end_s) / 2
    ref_centre_s = evidence.ref_start_s + (centre_s - evidence.query_start_s) * evidence.tempo_ratio
    per_octave = settings.bins_per_octave
    pitch_bins = evidence.pitch_shift_semitones * (per_octave // 12)
    return [
        Alignment(evidence.tempo_ratio, pitch_bins + k, centre_s * fps, ref_centre_s * fps)
        for k in (0, -per_octave, per_octave)
    ]


def check_alignment(
    query_peaks: np.ndarray, occupied: np.ndarray, guess: Alignment, settings: Settings
) -> PeakCheck | None:
    """Refine ``guess`` and measure its peak coincidences against chance.

    ``occupied`` is :func:`reference_occupancy` of the work's stored peaks.
    """
    fps = settings.frames_per_second
    n_bins = occupied.shape[1]
    tq = query_peaks["frame"].astype(np.float64)
    fq = query_peaks["bin"].astype(np.float64)
    tq, fq = _window(tq, fq, guess.query_centre, settings.peak_check_max_peaks)
    ref_bins = np.round(fq - guess.pitch_bins).astype(np.int64)
    in_band = (ref_bins >= 0) & (ref_bins < n_bins)
    tq, ref_bins = tq[in_band], ref_bins[in_band]
    if len(tq) < 8 or len(occupied) == 0:
        return None
    span = settings.peak_check_tempo_span
    tempos = guess.tempo_ratio * np.exp(
        np.arange(-span, span + 1e-9, settings.peak_check_tempo_step)
    )
    reach = int(round(settings.peak_check_offset_span_s * fps))
    offsets = np.arange(-reach, reach + 1)
    best = (-1, 0.0, 0, 0)  # count, tempo, offset, checked
    for tempo in tempos:
        base = np.round(tempo * (tq - guess.query_centre) + guess.ref_centre).astype(np.int64)
        counts, checked = _counts(occupied, base[:, None] + offsets[None, :], ref_bins)
        k = int(np.argmax(counts))
        if counts[k] > best[0]:
            best = (int(counts[k]), float(tempo), int(offsets[k]), int(checked[k]))
    matched, tempo, offset, checked = best
    if checked < 8:
        return None
    base = np.round(tempo * (tq - guess.query_centre) + guess.ref_centre + offset).astype(np.int64)
    lo, hi = settings.peak_check_null_shift_s
    shift_frames = np.round(np.geomspace(lo, hi, settings.peak_check_null_shifts) * fps)
    shift_frames = shift_frames.astype(np.int64)
    shifts = np.concatenate([-shift_frames, shift_frames])
    null_counts, null_checked = _counts(occupied, base[:, None] + shifts[None, :], ref_bins)
    usable = null_checked >= max(8, checked // 4)
    if usable.sum() < 4:
        return None
    rate = null_counts[usable] / null_checked[usable]
    # a chance rate from a few dozen shifts is itself uncertain: take its upper side
    chance_rate = float(np.mean(rate) + 2.0 * np.std(rate) / np.sqrt(usable.sum()))
    chance = max(chance_rate * checked, 0.5)
    n_cells = len(tempos) * len(offsets)
    probability = 1.0
    if _above_ratio(matched, chance, settings) and _above_rate(matched, checked, settings):
        inflated = chance * settings.peak_check_chance_inflation
        probability = min(1.0, float(stats.poisson.sf(matched - 1, inflated)) * n_cells)
    refined = Alignment(tempo, guess.pitch_bins, guess.query_centre, guess.ref_centre + offset)
    hit, _ = _hits(occupied, base[:, None], ref_bins)
    return PeakCheck(refined, matched, checked, chance, probability, tq[hit[:, 0]])


def supports_recording(check: PeakCheck, settings: Settings) -> bool:
    """Whether the coincidences look like this recording on at least one of the two floors.

    Enough when another channel already vouches for the alignment (hashes and chroma agreeing);
    a match on peaks alone must clear both."""
    return _above_ratio(check.matched_peaks, check.chance_peaks, settings) or _above_rate(
        check.matched_peaks, check.checked_peaks, settings
    )


def _above_ratio(matched: int, chance: float, settings: Settings) -> bool:
    return matched >= settings.peak_check_min_ratio * chance


def _above_rate(matched: int, checked: int, settings: Settings) -> bool:
    return matched >= settings.peak_check_min_rate * checked


def _window(tq: np.ndarray, fq: np.ndarray, centre: float, max_peaks: int):
    """At most ``max_peaks`` upload peaks, the ones nearest the centre of the hypothesis."""
    if len(tq) <= max_peaks:
        return tq, fq
    start = int(np.clip(np.searchsorted(tq, centre) - max_peaks // 2, 0, len(tq) - max_peaks))
    return tq[start : start + max_peaks], fq[start : start + max_peaks]


def reference_occupancy(ref_peaks: np.ndarray, n_bins: int, settings: Settings) -> np.ndarray:
    """``(frames, bins)`` booleans: True within the tolerance of some reference peak."""
    if len(ref_peaks) == 0:
        return np.zeros((0, n_bins), dtype=bool)
    frames = ref_peaks["frame"].astype(np.int64)
    bins = np.clip(np.round(ref_peaks["bin"]).astype(np.int64), 0, n_bins - 1)
    grid = np.zeros((int(frames.max()) + 1, n_bins), dtype=bool)
    grid[frames, bins] = True
    dt, df = settings.peak_check_time_tol_frames, settings.peak_check_bin_tol
    return ndimage.binary_dilation(grid, structure=np.ones((2 * dt + 1, 2 * df + 1), dtype=bool))


def _hits(occupied: np.ndarray, frames: np.ndarray, bins: np.ndarray):
    """``frames`` is (peaks x hypotheses): which mapped peaks coincide, which land in the work."""
    inside = (frames >= 0) & (frames < len(occupied))
    return occupied[np.clip(frames, 0, len(occupied) - 1), bins[:, None]] & inside, inside


def _counts(occupied: np.ndarray, frames: np.ndarray, bins: np.ndarray):
    """Per hypothesis (column of ``frames``): coincidences and peaks inside the work."""
    hit, inside = _hits(occupied, frames, bins)
    return hit.sum(axis=0), inside.sum(axis=0)
