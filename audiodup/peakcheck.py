"""Guided peak check: given a hypothesised alignment, do the upload's peaks land on the work's?

Hashes need three peaks to survive together; heavy reverb, 2x stretches and very short excerpts
leave too few intact triplets. A weak hash line or a chroma alignment still says *where* to look:
map upload peaks through ``t_ref = tempo * (t_up - centre) + ref_at_centre`` and
``bin_ref = bin_up - pitch``, and count the ones that fall within a small tolerance of a stored
reference peak. Only the strongest upload peaks are mapped, as many per second as the stored
density allows at the hypothesised tempo (a 0.5x copy holds half a second of the work in each
second). Weak leads can be a few % off in tempo, so the tempo is swept coarsely over +-5 % and
then refined with the offset on a fine grid; chance is measured on the same pair with the offset
moved by seconds, where nothing real lines up. The tail probability of the count is multiplied by
the size of the fine grid over the whole sweep, so the search is paid for. Most leads are chance
(a screening makes a dozen or more checks per look): a check whose coarse sweep finds too few
coincidences to reach the floors below stops there, and counts as tried.

Shifted offsets underestimate chance for music that is merely aligned (same key, chords changing
on the same beats) or re-arranged (a theme re-sequenced at another tempo with the same
instruments). On the benchmark corpus such checks reached 5.8x the shifted-offset rate but at
most 26 % of the upload's peaks, while 97 % of the checks of the source cleared both 3x chance
and 30 % of the peaks (``python -m benchmarks.calibrate --peaks [--seed 1]``). So the count must
clear both floors, ``peak_check_min_ratio`` times chance and ``peak_check_min_rate`` of the peaks
checked (:func:`confirms_recording`), before it counts as evidence of the recording, alone or
combined with hashes or chroma; its tail is taken against an inflated chance rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .match import (
    PITCH_CELL_BINS,
    ChromaEvidence,
    HashEvidence,
    HashVotes,
    cell_tempo,
    coarse_cells,
)
from .peaks import thin_peaks
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
    # False: given up after the coarse sweep (:func:`check_alignment`), its counts and chance
    # those of the peaks that sweep saw: it confirms nothing, its probability 1
    refined: bool = True
    # the onsets of the coinciding peaks' partials (:func:`matched_onsets`): a held tone is one,
    # however long it is held; fewer than peak_check_min_onsets confirm nothing
    matched_onsets: int = 0
    # the first and last upload frames of the peaks the check looked at (its window)
    window_query_frames: tuple[float, float] = (0.0, 0.0)
    # when the coincidences are material many works hold (:func:`shared_material`), how many
    # other works hold them (such a check confirms nothing), else 0; and the first and last
    # upload frames of the coinciding peaks that many hold
    shared_with: int = 0
    shared_query_frames: tuple[float, float] = (0.0, 0.0)
    # the (tempo, offset) cells the check searched, which its probability pays for
    search_cells: int = 1
    # coinciding peaks of a check that stays evidence on material many works hold: its
    # probability counts only the rest (:func:`checks_off_stretches`)
    peaks_on_shared: int = 0

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


def cell_alignment(votes: HashVotes, work_id: int, settings: Settings) -> Alignment | None:
    """The alignment of ``work_id``'s fullest coarse cell of a hash look-up (the cells that rank
    candidates, :func:`audiodup.match.candidate_works`, on both tempo grids): the cell's tempo
    and pitch, centred on the median upload and reference frames of its hits. A copy damaged
    past a verifiable hash line (tempo + pitch + EQ + noise) can still rank first by a dozen
    hits in the right cell; ``None`` when the work has no hit."""
    cell = fullest_cell(votes, work_id, settings)
    return None if cell is None else cell[1]


def fullest_cell(
    votes: HashVotes, work_id: int, settings: Settings
) -> tuple[int, Alignment] | None:
    """``(hits, alignment)`` of ``work_id``'s fullest coarse cell (:func:`cell_alignment`)."""
    mine = np.nonzero(votes.work == work_id)[0]
    if len(mine) == 0:
        return None
    best: tuple[int, float, float, np.ndarray] | None = None
    for shift in (0.0, 0.5):
        cells = np.stack(coarse_cells(votes, settings.frames_per_second, shift, mine))
        keys = _cell_keys(cells)
        unique, counts = np.unique(keys, return_counts=True)
        k = int(np.argmax(counts))
        if best is None or counts[k] > best[0]:
            in_cell = keys == unique[k]
            tempo_bin, pitch_bin, _ = cells[:, int(np.argmax(in_cell))]
            tempo = float(cell_tempo(tempo_bin, shift))
            best = (int(counts[k]), tempo, float(pitch_bin * PITCH_CELL_BINS), in_cell)
    hits, tempo, pitch_bins, in_cell = best
    query_centre = float(np.median(votes.query_frame[mine][in_cell]))
    ref_centre = float(np.median(votes.ref_frame[mine][in_cell]))
    return hits, Alignment(tempo, pitch_bins, query_centre, ref_centre)


def _cell_keys(cells: np.ndarray) -> np.ndarray:
    """One int64 per column of ``cells`` (rows: tempo, pitch and offset bins), ordered as the
    columns sort row by row: ``np.unique`` of the keys groups the cells as ``np.unique(cells,
    axis=1)`` does, 30x faster."""
    shifted = cells - cells.min(axis=1, keepdims=True)
    sizes = shifted.max(axis=1) + 1
    return (shifted[0] * sizes[1] + shifted[1]) * sizes[2] + shifted[2]


def covers(checked: Alignment, lead: Alignment, settings: Settings) -> bool:
    """Whether the check of ``checked`` already sweeps ``lead``: the same pitch (within a
    semitone), a tempo within the swept span, and the same reference offset (within the swept
    offset) at the lead's centre."""
    fps = settings.frames_per_second
    return (
        abs(checked.pitch_bins - lead.pitch_bins) <= settings.bins_per_octave // 12
        and abs(np.log(checked.tempo_ratio / lead.tempo_ratio)) <= settings.peak_check_tempo_span
        and abs(checked.ref_frames(lead.query_centre) - lead.ref_centre)
        <= settings.peak_check_offset_span_s * fps
    )


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
    query_peaks: np.ndarray, reference: ReferencePeaks, guess: Alignment, settings: Settings
) -> PeakCheck | None:
    """Refine ``guess`` and measure its peak coincidences against chance.

    ``reference`` is :func:`reference_peaks` of the work's stored peaks.
    """
    fps = settings.frames_per_second
    tq, ref_bins = checked_peaks(query_peaks, guess, reference.n_bins, settings)
    if len(tq) < 8 or reference.n_frames == 0:
        return None
    reach = int(round(settings.peak_check_offset_span_s * fps))
    offsets = np.arange(-reach, reach + 1)

    def best_of(tempos: np.ndarray, t: np.ndarray, b: np.ndarray) -> tuple[int, float, int, int]:
        """``(count, tempo, offset, checked)`` of the best (tempo, offset) cell."""
        best = (-1, 0.0, 0, 0)
        for tempo in tempos:
            base = np.round(tempo * (t - guess.query_centre) + guess.ref_centre).astype(np.int64)
            counts, checked, _ = coincidences(reference, base, b, offsets, settings)
            k = int(np.argmax(counts))
            if counts[k] > best[0]:
                best = (int(counts[k]), float(tempo), int(offsets[k]), int(checked[k]))
        return best

    span, coarse, fine = (
        settings.peak_check_tempo_span,
        settings.peak_check_coarse_tempo_step,
        settings.peak_check_tempo_step,
    )
    # the coarse sweep looks at the peaks nearest the centre: cheaper, and a tempo a little off
    # drifts less over a shorter stretch
    coarse_tempos = guess.tempo_ratio * np.exp(np.arange(-span, span + 1e-9, coarse))
    central = _window(tq, ref_bins, guess.query_centre, settings.peak_check_coarse_peaks)
    coarse_best = best_of(coarse_tempos, *central)
    # a lead whose coarse sweep lands too few peaks stops there: its chance is measured on the
    # peaks that sweep saw, and it is no evidence
    refined = coarse_best[0] >= settings.peak_check_coarse_min_rate * coarse_best[3]
    if refined:
        around = np.exp(np.arange(-coarse, coarse + 1e-9, fine))
        best = max(
            best_of(guess.tempo_ratio * around, tq, ref_bins),
            best_of(coarse_best[1] * around, tq, ref_bins),
        )
    else:
        best, (tq, ref_bins) = coarse_best, central
    matched, tempo, offset, checked = best
    if checked < 8:
        return None
    base = np.round(tempo * (tq - guess.query_centre) + guess.ref_centre + offset).astype(np.int64)
    lo, hi = settings.peak_check_null_shift_s
    shift_frames = np.round(np.geomspace(lo, hi, settings.peak_check_null_shifts) * fps)
    shifts = np.unique(np.concatenate([-shift_frames, shift_frames]).astype(np.int64))
    null_counts, null_checked, _ = coincidences(reference, base, ref_bins, shifts, settings)
    usable = null_checked >= max(8, checked // 4)
    if usable.sum() < 4:
        return None
    rate = null_counts[usable] / null_checked[usable]
    # a chance rate from a few dozen shifts is itself uncertain: take its upper side
    chance_rate = float(np.mean(rate) + 2.0 * np.std(rate) / np.sqrt(usable.sum()))
    chance = max(chance_rate * checked, 0.5)
    _, _, hit = coincidences(reference, base, ref_bins, np.zeros(1, dtype=np.int64), settings)
    onsets = matched_onsets(tq, ref_bins, hit, tempo, settings)
    n_cells = int(round(2 * span / fine + 1)) * len(offsets)  # the fine grid over the whole span
    probability = 1.0
    if (
        refined
        and _clears_floors(matched, checked, chance, settings)
        and onsets >= settings.peak_check_min_onsets
    ):
        probability = coincidence_probability(matched, chance, n_cells, settings)
    aligned = Alignment(tempo, guess.pitch_bins, guess.query_centre, guess.ref_centre + offset)
    return PeakCheck(
        aligned,
        matched,
        checked,
        chance,
        probability,
        tq[hit],
        refined,
        onsets,
        (float(tq.min()), float(tq.max())),
        search_cells=n_cells,
    )


def checked_peaks(
    query_peaks: np.ndarray, guess: Alignment, n_bins: int, settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """The upload peaks a check of ``guess`` looks at: thinned to the stored density at its
    tempo, the ``peak_check_max_peaks`` nearest its centre, those whose bin moved by its pitch
    lies in the work's ``n_bins``; their frames (float) and those reference bins."""
    density = settings.peaks_per_second * guess.tempo_ratio * settings.peak_check_density_factor
    if density < max(settings.query_peak_densities):
        query_peaks = thin_peaks(query_peaks, density, settings.frames_per_second)
    tq = query_peaks["frame"].astype(np.float64)
    fq = query_peaks["bin"].astype(np.float64)
    tq, fq = _window(tq, fq, guess.query_centre, settings.peak_check_max_peaks)
    ref_bins = np.round(fq - guess.pitch_bins).astype(np.int64)
    in_band = (ref_bins >= 0) & (ref_bins < n_bins)
    return tq[in_band], ref_bins[in_band]


def coincidence_probability(matched: int, chance: float, cells: int, settings: Settings) -> float:
    """P(chance gives ``matched`` or more coincidences where ``chance`` are expected, inflated
    by ``peak_check_chance_inflation``) in one of the ``cells`` searched."""
    from scipy import special  # stats.poisson.sf(k, mu) is special.pdtrc(k, mu) for k >= 0

    inflated = chance * settings.peak_check_chance_inflation
    return min(1.0, float(special.pdtrc(matched - 1, inflated)) * cells)


# a peak within this long of the one before it in the same semitone (in the work's time: a
# copy at 2x tempo holds its notes half as long in the upload) continues its partial
# (:func:`sustained_partials`). A lone steady tone's peaks lie up to ~0.55 s apart
SUSTAIN_GAP_S = 0.6


def sustained_partials(
    frames: np.ndarray, bins: np.ndarray, tempo_ratio: float, settings: Settings
) -> np.ndarray:
    """The partial of each upload peak (ids 0..n-1, in any order): peaks of one semitone each
    within :data:`SUSTAIN_GAP_S` of the work's time (``tempo_ratio`` work seconds an upload
    second) of the one before are one held partial. A held note's peaks say nothing its first
    peak did not: counted as peaks, a steady tone aligned with any note a work holds (a test
    tone, a drone, the held note at a track's end) coincided dozens of times where shifted
    offsets found nothing, and looked like a recording."""
    n = len(frames)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    semitone = np.round(np.asarray(bins, dtype=np.float64) / settings.bins_per_semitone)
    order = np.lexsort((frames, semitone))
    gap = SUSTAIN_GAP_S * settings.frames_per_second / tempo_ratio
    t, st = np.asarray(frames, dtype=np.float64)[order], semitone[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = (st[1:] != st[:-1]) | (np.diff(t) > gap)
    partial = np.empty(n, dtype=np.int64)
    partial[order] = np.cumsum(starts) - 1
    return partial


# partials that start within this long of each other (in the work's time) start at one onset
ONSET_GAP_S = 0.1


def matched_onsets(
    frames: np.ndarray, bins: np.ndarray, hit: np.ndarray, tempo_ratio: float, settings: Settings
) -> int:
    """How many distinct onsets the coinciding peaks (``hit``) come from: the starts of their
    partials (:func:`sustained_partials`), those within :data:`ONSET_GAP_S` of the work's time
    of each other taken as one. A held tone is one onset however many of its peaks coincide;
    music changes notes. A held chord or drone whose harmonics get a peak only now and then
    breaks into several (a review's power chord of 12 harmonics: 9)."""
    partial = sustained_partials(frames, bins, tempo_ratio, settings)
    if not hit.any():
        return 0
    starts = np.full(int(partial.max()) + 1, np.inf)
    np.minimum.at(starts, partial, np.asarray(frames, dtype=np.float64))
    begun = np.sort(starts[np.unique(partial[hit])])
    gap = ONSET_GAP_S * settings.frames_per_second / tempo_ratio
    return int(1 + np.count_nonzero(np.diff(begun) > gap))


def confirms_recording(check: PeakCheck, settings: Settings) -> bool:
    """Whether the coincidences look like this recording rather than related music, a held
    tone or chord (fewer than ``peak_check_min_onsets`` onsets: :func:`matched_onsets`), or
    material many works hold (:func:`shared_material`)."""
    return (
        _above_chance(check, settings)
        and _clears_floors(check.matched_peaks, check.checked_peaks, check.chance_peaks, settings)
        and check.shared_with == 0
    )


def _above_chance(check: PeakCheck, settings: Settings) -> bool:
    """Whether the check's coincidences exceed chance as recorded music does (refined, the
    chance floor, enough onsets), whatever share of the upload's peaks they are."""
    return (
        check.refined
        and check.matched_peaks >= settings.peak_check_min_ratio * check.chance_peaks
        and check.matched_onsets >= settings.peak_check_min_onsets
    )


def _holds_material(check: PeakCheck, settings: Settings) -> bool:
    """Whether the check holds material of its work (:func:`_above_chance`), at least as
    `suspect` for the cells it searched: chance checks of a large catalog's works (6-12 peaks
    on a 5-s upload, 3x their chance) held its seconds as shared material without that."""
    peaks, chance, cells = check.matched_peaks, check.chance_peaks, check.search_cells
    return (
        _above_chance(check, settings)
        and coincidence_probability(peaks, chance, cells, settings) <= settings.suspect_max_fmp
    )


# whether two catalog works are copies of one recording (audiodup.screening.one_recording)
Related = Callable[[int, int], bool]


def shared_material(
    checks: dict[int, PeakCheck],
    lines: dict[int, tuple[float, float]],
    settings: Settings,
    related: Related | None = None,
) -> dict[int, PeakCheck]:
    """The checks of one look (one per work), those on material many works hold marked:
    probability 1, ``shared_with`` how many other works hold it, ``shared_query_frames`` the
    stretch of the upload it is on.

    A stock loop or sample is one recording spliced into many works: an upload of other music
    that holds it lines up with every work that does, each check as far above chance as a
    copy's over those seconds. Which seconds those are, the checks say together: a check that
    holds material itself, and whose coinciding peaks ``shared_material_works`` other works also
    hold, each at least half of them, spans a stretch of them (the peaks that many hold) when
    that is no longer than ``shared_material_max_span`` of its window; which checks hold too
    little off the stretches, :func:`checks_off_stretches` says. Another work holds a peak
    when its own check exceeds chance (:func:`_holds_material`) on it (within
    ``peak_check_time_tol_frames``), or its hash line holding material spans it (``lines``: the
    upload frames each spans, :func:`audiodup.screening.material_lines`). A copy of one of
    those works lines up with it beyond the stretch; a copy of a recording several works hold,
    over the whole window, and makes no stretch. With ``related``, works that are copies of one
    recording hold material once (:func:`held_stretch`)."""
    tol, enough = settings.peak_check_time_tol_frames, settings.shared_material_works
    holding = {
        w: np.unique(c.matched_query_frames)
        for w, c in checks.items()
        if _holds_material(c, settings)
    }
    stretches = []
    for work_id, check in checks.items():
        frames = check.matched_query_frames
        if check.probability == 1.0 or work_id not in holding or len(frames) == 0:
            continue
        held = {}
        for other in sorted((holding.keys() | lines.keys()) - {work_id}):
            by = np.zeros(len(frames), dtype=bool)
            if other in holding and len(holding[other]):
                by |= _near(frames, holding[other], tol)
            if other in lines:
                start, end = lines[other]
                by |= (frames >= start - tol) & (frames <= end + tol)
            held[other] = by
        start, end = check.window_query_frames
        stretch = held_stretch(frames, held, enough, work_id, related)
        if stretch and stretch[1] - stretch[0] <= settings.shared_material_max_span * (end - start):
            stretches.append(stretch)
    return checks_off_stretches(checks, stretches, settings, tol)


def held_stretch(
    frames: np.ndarray,
    held: dict[int, np.ndarray],
    enough: int,
    work_id: int,
    related: Related | None = None,
) -> tuple[float, float, int] | None:
    """``(start, end, works)``: the first and last of ``frames`` (of ``work_id``) that
    ``enough`` other works hold (``held``: which of the frames each other work holds), when at
    least ``enough`` of them hold half of the frames or more, and how many do; else ``None``.
    With ``related``, the works are counted per recording (:func:`by_recording`): the catalog
    holding one recording several times (uploads it recorded) makes it no shared material."""
    stretch = _held_stretch(frames, list(held.values()), enough)
    if stretch is None or related is None:
        return stretch
    return _held_stretch(frames, by_recording(work_id, held, related), enough)


def by_recording(work_id: int, held: dict[int, np.ndarray], related: Related) -> list[np.ndarray]:
    """What the other works hold, merged per recording (each work joins the first earlier one
    it is ``related`` to), without what the copies of ``work_id``'s own recording hold."""
    firsts, merged = [work_id], [np.zeros(0, dtype=bool)]
    for other, mask in sorted(held.items()):
        family = next((i for i, first in enumerate(firsts) if related(first, other)), None)
        if family is None:
            firsts.append(other)
            merged.append(mask.copy())
        elif family > 0:
            merged[family] |= mask
    return merged[1:]


def _held_stretch(
    frames: np.ndarray, held: Sequence[np.ndarray], enough: int
) -> tuple[float, float, int] | None:
    held = np.array(held, dtype=bool).reshape(-1, len(frames))
    works = int(np.count_nonzero(held.sum(axis=1) >= 0.5 * len(frames)))
    common = frames[held.sum(axis=0) >= enough]
    if works < enough or len(common) == 0:
        return None
    return float(common.min()), float(common.max()), works


def checks_off_stretches(
    checks: dict[int, PeakCheck],
    stretches: Sequence[tuple[float, float, int]],
    settings: Settings,
    tol: float = 0.0,
) -> dict[int, PeakCheck]:
    """``checks`` with every one whose coinciding peaks off the ``stretches`` of material many
    works hold (``(start, end, works)`` upload frames, :func:`on_stretches`) are fewer than
    ``duplicate_min_peaks`` or than ``peak_check_min_ratio`` times the chance of that part of
    its window made no evidence: what it holds of its own could not make a duplicate. A check
    with more is scored on them alone, against the chance of that part of its window, never
    more certain than it was."""
    marked = dict(checks)
    for work_id, check in checks.items():
        if check.shared_with:
            continue
        frames = check.matched_query_frames
        on = on_stretches(frames, stretches, tol)
        if on is None:
            continue
        own = len(frames) - len(on[0])
        start, end = check.window_query_frames
        covered = covered_frames(stretches, start, end)
        chance = check.chance_peaks * max(0.0, 1.0 - covered / max(end - start, 1.0))
        inside, works = on
        if own < max(settings.duplicate_min_peaks, settings.peak_check_min_ratio * chance):
            span = (float(inside.min()), float(inside.max()))
            marked[work_id] = replace(
                check, probability=1.0, shared_with=works, shared_query_frames=span
            )
        elif check.probability < 1.0:
            alone = coincidence_probability(own, max(chance, 0.5), check.search_cells, settings)
            probability = max(check.probability, alone)
            on_shared = max(check.peaks_on_shared, len(inside))
            marked[work_id] = replace(check, probability=probability, peaks_on_shared=on_shared)
    return marked


def covered_frames(
    stretches: Sequence[tuple[float, float, int]], start: float, end: float
) -> float:
    """How many frames of ``start``-``end`` the ``stretches`` cover (overlaps counted once)."""
    covered, reached = 0.0, start
    for s, e, _ in sorted(stretches):
        s, e = max(s, reached), min(e, end)
        if e > s:
            covered += e - s
            reached = e
    return covered


def on_stretches(
    frames: np.ndarray, stretches: Sequence[tuple[float, float, int]], tol: float = 0.0
) -> tuple[np.ndarray, int] | None:
    """``(frames on the stretches, most works holding one of them)``: the ``frames`` within
    ``tol`` of some ``(start, end, works)`` stretch of material many works hold; ``None`` when
    none is."""
    inside = np.zeros(len(frames), dtype=bool)
    works = 0
    for start, end, n in stretches:
        here = (frames >= start - tol) & (frames <= end + tol)
        if here.any():
            inside |= here
            works = max(works, n)
    return (frames[inside], works) if inside.any() else None


def _near(frames: np.ndarray, sorted_frames: np.ndarray, tol: int) -> np.ndarray:
    """Which ``frames`` lie within ``tol`` of one of the (sorted, non-empty) ``sorted_frames``."""
    first = np.minimum(np.searchsorted(sorted_frames, frames - tol), len(sorted_frames) - 1)
    return np.abs(sorted_frames[first] - frames) <= tol


def _clears_floors(matched: int, checked: int, chance: float, settings: Settings) -> bool:
    return (
        matched >= settings.peak_check_min_ratio * chance
        and matched >= settings.peak_check_min_rate * checked
    )


def _window(tq: np.ndarray, fq: np.ndarray, centre: float, max_peaks: int):
    """At most ``max_peaks`` upload peaks, the ones nearest the centre of the hypothesis."""
    if len(tq) <= max_peaks:
        return tq, fq
    start = int(np.clip(np.searchsorted(tq, centre) - max_peaks // 2, 0, len(tq) - max_peaks))
    return tq[start : start + max_peaks], fq[start : start + max_peaks]


@dataclass(frozen=True)
class ReferencePeaks:
    """A work's stored peaks keyed for range look-ups: ``bin * n_frames + frame``, sorted."""

    keys: np.ndarray
    n_frames: int
    n_bins: int


def reference_peaks(peaks: np.ndarray, n_bins: int) -> ReferencePeaks:
    if len(peaks) == 0:
        return ReferencePeaks(np.zeros(0, dtype=np.int64), 0, n_bins)
    frames = peaks["frame"].astype(np.int64)
    bins = np.clip(np.round(peaks["bin"]).astype(np.int64), 0, n_bins - 1)
    n_frames = int(frames.max()) + 1
    return ReferencePeaks(np.unique(bins * n_frames + frames), n_frames, n_bins)


def coincidences(
    reference: ReferencePeaks,
    frames: np.ndarray,
    bins: np.ndarray,
    offsets: np.ndarray,
    settings: Settings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upload peaks at reference ``frames`` and ``bins`` (mapped), moved by each of the sorted
    ``offsets``: per offset, how many land within the tolerance of a reference peak and how many
    land inside the work; and which peaks coincide at the first offset.

    Sparse: only the reference peaks near each upload peak are visited, so the cost grows with
    the peaks, not with peaks x offsets."""
    n, length = len(frames), reference.n_frames
    dt, df = settings.peak_check_time_tol_frames, settings.peak_check_bin_tol
    order = np.sort(frames)
    checked = np.searchsorted(order, length - offsets) - np.searchsorted(order, -offsets)
    # the reference peaks in the bins within df of each peak, over the frames any offset reaches
    shifted_bins = (bins[None, :] + np.arange(-df, df + 1)[:, None]).ravel()
    peak = np.tile(np.arange(n), 2 * df + 1)
    lo_f = np.minimum(np.maximum(frames[peak] + offsets[0] - dt, 0), length)
    hi_f = np.minimum(np.maximum(frames[peak] + offsets[-1] + dt + 1, 0), length)
    valid = (shifted_bins >= 0) & (shifted_bins < reference.n_bins) & (lo_f < hi_f)
    row = shifted_bins * length
    start = np.searchsorted(reference.keys, row + lo_f)
    stop = np.where(valid, np.searchsorted(reference.keys, row + hi_f), start)
    count = stop - start
    first = np.repeat(start - np.cumsum(count) + count, count)
    peak_of_all = np.repeat(peak, count)
    ref_frames = reference.keys[first + np.arange(len(first))] - np.repeat(row, count)
    centre_all = ref_frames - frames[peak_of_all]
    # a peak coincides at offset o when some reference peak lies within dt frames of it
    spread = np.arange(-dt, dt + 1)
    moved = (centre_all[:, None] + spread[None, :]).ravel()
    owner = np.repeat(peak_of_all, len(spread))
    if offsets[-1] - offsets[0] == len(offsets) - 1:  # consecutive: each offset's column at once
        column = moved - offsets[0]
        known = (column >= 0) & (column < len(offsets))
    else:
        column = np.searchsorted(offsets, moved)
        known = column < len(offsets)
        known[known] = offsets[column[known]] == moved[known]
    inside = (frames[owner] + moved >= 0) & (frames[owner] + moved < length)
    keep = known & inside
    coincide = np.zeros((n, len(offsets)), dtype=bool)  # each peak counts once per offset
    coincide[owner[keep], column[keep]] = True
    return coincide.sum(axis=0), checked, coincide[:, 0].copy()
