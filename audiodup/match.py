"""Retrieve, vote, verify: from a query fingerprint to per-work evidence.

1. Look every query hash up in the hash shards (:mod:`audiodup.index`); each hit carries the
   reference anchor's time, frequency and span, so it votes for a tempo ratio (span ratio), a
   pitch shift (anchor frequency difference) and, given those, a time offset.
2. Keep the works with the most votes and find, per work, the tempo ratio and pitch shift that
   explain the most votes (a 2-D Hough histogram), then the straight lines ``t_ref = tempo * t_query
   + offset`` that those votes follow (least squares on inliers). Each line is an aligned section.
3. The chroma channel retrieves works whose key-invariant segment vectors agree at some time scale,
   then aligns the chroma of query and reference over scales, rotations and offsets.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np

from .chroma import segment_vectors
from .fingerprint import Fingerprint
from .hashes import (
    TripletHashes,
    entry_bin,
    entry_frame,
    entry_span,
    entry_work,
    flat_keys,
    pack_entry_ids,
    scrambled_work_ids,
    stable_argsort,
)
from .index import ChromaHits, LoadedIndexes, nearest_over_shards
from .settings import DEFAULT_SETTINGS, Settings

_MAX_LOG_TEMPO = float(np.log(2.1))
_LOG_TEMPO_STEP = 0.03
# pitch shifts are voted for within +-12.5 semitones, in half-semitone histogram cells
_MAX_PITCH_SEMITONES = 12.5
_PITCH_STEP_SEMITONES = 0.5
# the line fit's first slope is also scanned around the tempo cell's median (``_scanned_slope``)
# in steps of 0.3 %: at tempo 1 a 10-min query's hits drift at most 39 frames between steps,
# within the offset window (at tempo 2 twice that; the fit's own regression refines the slope)
_SLOPE_SCAN_STEPS = 20  # each side: +-6 %, two tempo cells
_SLOPE_SCAN_STEP = 0.003
# another slope is fitted when its window holds this many hits more than the median's, and
# 2.5 sqrt(the median's) (chance hits gain about 1.6 sqrt at the 95th percentile at 100-30,000
# hits, at most 2.4)
_SLOPE_SCAN_MIN_GAIN = 4
_SLOPE_SCAN_GAIN_SIGMAS = 2.5
# above this many (hit, slope) offsets the slopes are counted one by one (memory)
_SLOPE_SCAN_ONE_ARRAY = 1 << 20
_OFFSET_CELL_FRAMES = 8.0
_OFFSET_CELLS_SMOOTHED = 5
_MAX_SECTION_GAP_S = 6.0
TEMPO_CELL = 0.05  # log tempo: the coarse cells that rank candidate works
PITCH_CELL_BINS = 1.5
PATTERN_KEY_SCALE = 4096  # a hit's pattern is key * PATTERN_KEY_SCALE + query anchor bin


@dataclass(frozen=True)
class HashVotes:
    """All hash hits of one query, one row per (query hash, reference entry) pair."""

    work: np.ndarray
    query_frame: np.ndarray
    ref_frame: np.ndarray
    query_bin: np.ndarray
    ref_bin: np.ndarray
    query_span: np.ndarray
    ref_span: np.ndarray
    log_tempo: np.ndarray
    pitch_bins: np.ndarray
    # hash key and query anchor bin: one repeated note pattern shares it across all its repeats
    pattern: np.ndarray


@dataclass(frozen=True)
class AlignedLine:
    query_start_frame: float
    query_end_frame: float
    ref_start_frame: float
    ref_end_frame: float
    inliers: int


@dataclass(frozen=True)
class HashEvidence:
    """Geometric verification of one candidate work by peak hashes."""

    work_id: int
    votes: int  # hits for this work before verification
    inliers: int  # distinct hit patterns on all aligned lines
    main_inliers: int  # distinct patterns on the best line: the false-match probability uses it
    tempo_ratio: float
    pitch_shift_semitones: float
    lines: tuple[AlignedLine, ...]
    coverage_s: float
    match_query_frames: np.ndarray  # inlier positions, for pictures
    match_ref_frames: np.ndarray


@dataclass(frozen=True)
class ChromaEvidence:
    work_id: int
    similarity: float  # mean cosine of aligned chroma frames
    tempo_ratio: float
    pitch_shift_semitones: float
    query_start_s: float
    query_end_s: float
    ref_start_s: float
    ref_end_s: float
    # the best similarity in each stretch of ``chance_block_s`` reference seconds (by where the
    # aligned query's centre falls), over the same scales, rotations and offsets: away from the
    # match they sample chance for this very query (:func:`audiodup.verdict.chroma_null_sample`)
    block_maxima: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False)
    best_block: int = -1  # the block that holds ``similarity``
    ref_frames: int = 0  # length of the reference chroma searched


@dataclass(frozen=True)
class HashLookup:
    """The hits of one query's look-up, and what the hit budget left out of it."""

    votes: HashVotes  # the hits looked up
    usable: np.ndarray  # bool per query hash: its key is in the catalog and not a stop word
    # hits looked up / hits of every usable key (1.0: the budget dropped nothing); a work's hit
    # count over it estimates what the whole look-up would have given it
    kept_share: float


def lookup_hashes(
    query: TripletHashes,
    indexes: LoadedIndexes,
    max_bucket_hits: int = 1 << 30,
    max_total_hits: int = 1 << 40,
    bins_per_semitone: int = DEFAULT_SETTINGS.bins_per_semitone,
) -> HashVotes:
    """The hits of :func:`look_up` (its ``votes``)."""
    return look_up(query, indexes, max_bucket_hits, max_total_hits, bins_per_semitone).votes


def look_up(
    query: TripletHashes,
    indexes: LoadedIndexes,
    max_bucket_hits: int = 1 << 30,
    max_total_hits: int = 1 << 40,
    bins_per_semitone: int = DEFAULT_SETTINGS.bins_per_semitone,
) -> HashLookup:
    """Exact-bucket look-ups of the query hashes in every hash shard.

    A key shared by more than ``max_bucket_hits`` catalog entries carries almost no information (a
    stop word) and would flood the vote with hits; such keys, and keys nobody has, are not looked
    up at all. If the rest would still bring more than ``max_total_hits`` hits, the most common
    keys are dropped until they do not: the rarest keys carry the most evidence per hit, and the
    cost of a search stays bounded as the catalog grows (:func:`work_votes` gives the candidate
    works their dropped hits back). Hits implying a pitch shift beyond +-12.5 semitones
    (``bins_per_semitone``: ``settings.bins_per_octave // 12``) are dropped."""
    size = indexes.bucket_sizes[query.keys]
    usable = usable_hashes(query, indexes.bucket_sizes, max_bucket_hits)
    wanted = rarest_within(size, usable, max_total_hits)
    total = int(size[usable].sum())
    kept_share = float(size[wanted].sum()) / total if total else 1.0
    rows = np.nonzero(wanted)[0]
    hits = indexes.lookup_hashes(query.keys[rows])
    if hits is None:
        return HashLookup(_empty_votes(), usable, kept_share)
    votes = _votes(query, rows[hits.query_rows], hits.entry_ids, bins_per_semitone, indexes.is_live)
    return HashLookup(votes, usable, kept_share)


def rarest_within(sizes: np.ndarray, usable: np.ndarray, budget: int) -> np.ndarray:
    """Which keys a budgeted look-up asks: the ``usable`` ones, the rarest first (``sizes``:
    each key's entries), while their entries fit in ``budget``; all of them when they do."""
    wanted = usable.copy()
    if int(sizes[usable].sum()) > budget:
        by_size = np.sort(sizes[usable])
        within = by_size[np.cumsum(by_size) <= budget]
        wanted &= sizes <= (within[-1] if len(within) else 0)
    return wanted


def usable_hashes(
    query: TripletHashes, bucket_sizes: np.ndarray, max_bucket_hits: int
) -> np.ndarray:
    """Per query hash, whether :func:`look_up` asks for its key: held by the catalog and not a
    stop word (at most ``max_bucket_hits`` entries)."""
    size = bucket_sizes[query.keys]
    return (size > 0) & (size <= max_bucket_hits)


@dataclass(frozen=True)
class QueryKeys:
    """The usable query hashes (see :class:`HashLookup`) sorted by key, for :func:`work_votes`."""

    keys: np.ndarray  # int64, sorted
    rows: np.ndarray  # int64: the query hash of each key
    distinct: np.ndarray  # int64: the distinct keys, sorted
    first: np.ndarray  # int64: where each distinct key starts in ``keys``
    count: np.ndarray  # int64: how many of ``keys`` it is


def query_keys(query: TripletHashes, usable: np.ndarray) -> QueryKeys:
    rows = np.nonzero(usable)[0]
    order = stable_argsort(query.keys[rows])
    keys = query.keys[rows][order].astype(np.int64)
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else keys
    count = np.diff(np.r_[first, len(keys)])
    return QueryKeys(keys, rows[order].astype(np.int64), keys[first], first, count)


def work_votes(
    query: TripletHashes,
    keys: QueryKeys,
    work_id: int,
    reference: TripletHashes,
    bins_per_semitone: int = DEFAULT_SETTINGS.bins_per_semitone,
) -> HashVotes:
    """Every hit of the usable query hashes (``keys``) in one work, from the work's own hashes
    (``reference``: :func:`audiodup.fingerprint.fingerprint_hashes` of its stored fingerprint):
    the hits an unbudgeted look-up would give it, at the cost of that work alone (a few ms
    however large the catalog). The entries are packed as the index packs them, so the votes
    are the ones the index holds (in another order)."""
    ids = pack_entry_ids(work_id, reference)
    ref_keys = reference.keys.astype(np.int64)
    if len(keys.distinct) == 0:
        return _votes(query, keys.rows, ids[:0], bins_per_semitone)
    # each reference key's run of equal query keys, by one search among the distinct keys
    at = np.minimum(np.searchsorted(keys.distinct, ref_keys), len(keys.distinct) - 1)
    known = keys.distinct[at] == ref_keys
    lo = np.where(known, keys.first[at], 0)
    counts = np.where(known, keys.count[at], 0)
    entry = np.repeat(np.arange(len(ids)), counts)
    first = np.cumsum(counts) - counts
    positions = np.arange(len(entry), dtype=np.int64) + np.repeat(lo - first, counts)
    return _votes(query, keys.rows[positions], ids[entry], bins_per_semitone)


def _votes(
    query: TripletHashes,
    q_idx: np.ndarray,
    entry_ids: np.ndarray,
    bins_per_semitone: int,
    is_live: Callable[[np.ndarray], np.ndarray] | None = None,
) -> HashVotes:
    """The votes of the hits ``(query hash q_idx[j], reference entry entry_ids[j])`` of live
    works (``is_live``; by default every work) that imply a tempo ratio and pitch shift within
    the searched range, in the order of the hits. The hits are filtered on the fields they are
    judged by before the other columns are unpacked: a whole look-up at 113 works brings up to
    a million hits, half of them implausible (issue #16)."""
    ids = np.asarray(entry_ids, dtype=np.int64)
    ref_span = entry_span(ids)
    query_span = query.span_frames[q_idx].astype(np.float64)
    log_tempo = np.log(np.maximum(ref_span, 1) / np.maximum(query_span, 1))
    ref_bin = entry_bin(ids)
    pitch_bins = query.anchor_bin[q_idx].astype(np.float64) - ref_bin
    max_pitch_bins = _MAX_PITCH_SEMITONES * bins_per_semitone
    plausible = (np.abs(log_tempo) <= _MAX_LOG_TEMPO) & (np.abs(pitch_bins) <= max_pitch_bins)
    if is_live is not None:
        plausible &= is_live(entry_work(ids))
    sel = np.nonzero(plausible)[0]
    kept, rows = ids[sel], q_idx[sel]
    return HashVotes(
        work=entry_work(kept),
        query_frame=query.anchor_frame[rows].astype(np.float64),
        ref_frame=entry_frame(kept).astype(np.float64),
        query_bin=query.anchor_bin[rows].astype(np.float64),
        ref_bin=ref_bin[sel],
        query_span=query_span[sel],
        ref_span=ref_span[sel].astype(np.float64),
        log_tempo=log_tempo[sel],
        pitch_bins=pitch_bins[sel],
        pattern=query.keys[rows].astype(np.int64) * PATTERN_KEY_SCALE
        + np.round(query.anchor_bin[rows]).astype(np.int64),
    )


def votes_by_work(votes: HashVotes, work_ids: list[int]) -> dict[int, HashVotes]:
    """The votes of each of ``work_ids``, in their order in ``votes``: split in one pass, so
    that verifying a look-up's candidates reads its hits once, not once per candidate."""
    rows = np.nonzero(np.isin(votes.work, work_ids))[0]
    rows = rows[np.argsort(votes.work[rows], kind="stable")]
    works = votes.work[rows]
    starts = np.searchsorted(works, work_ids, side="left")
    ends = np.searchsorted(works, work_ids, side="right")
    columns = {f.name: getattr(votes, f.name) for f in fields(votes)}
    return {
        int(w): HashVotes(**{name: c[rows[a:b]] for name, c in columns.items()})
        for w, a, b in zip(work_ids, starts, ends, strict=True)
    }


def candidate_works(
    votes: HashVotes,
    limit: int,
    frames_per_second: float,
    min_support: int = 1,
    weights: np.ndarray | None = None,
    tempo_grids: tuple[float, ...] = (0.0, 0.5),
) -> list[tuple[int, float]]:
    """``(work_id, support)`` of the works whose hits agree most, best first
    (:func:`candidate_order`).

    Raw hit counts favour long or repetitive works; instead each work is ranked by its largest
    cell of a coarse (tempo ratio, pitch shift, time offset) histogram, which only hits from a
    real alignment fill. A cell's support is its number of hits, or with ``weights`` (one per
    vote, :func:`rarity_weights`) their sum; cells of fewer than ``min_support`` hits do not
    count. The tempo cells are laid once per ``tempo_grids`` offset (in cells), by default twice,
    the second grid half a cell off: a copy's tempo near the edge of a cell (0.93 lies 0.003
    from one) splits its hits between two cells of one grid and falls inside a cell of the other.
    """
    if len(votes.work) == 0:
        return []
    parts = [
        _best_cells(votes, frames_per_second, min_support, weights, shift) for shift in tempo_grids
    ]
    work_of = np.concatenate([w for w, _ in parts])
    support = np.concatenate([s for _, s in parts])
    if len(work_of) == 0:
        return []
    order = np.lexsort((-support, work_of))
    first = order[np.r_[True, work_of[order][1:] != work_of[order][:-1]]]
    best = first[np.lexsort((scrambled_work_ids(work_of[first]), -support[first]))][:limit]
    kind = int if weights is None else float
    return [(int(work_of[i]), kind(support[i])) for i in best]


def _best_cells(
    votes: HashVotes,
    frames_per_second: float,
    min_support: int,
    weights: np.ndarray | None,
    shift: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(work ids, support)``: each work's best cell on the tempo grid moved by ``shift``
    cells (a work may appear once per cell; :func:`candidate_works` keeps its best)."""
    lt_bin, pb_bin, off_bin = coarse_cells(votes, frames_per_second, shift)
    off_bin -= off_bin.min()
    n_off = int(off_bin.max()) + 1
    key = ((votes.work * 64 + lt_bin + 32) * 64 + pb_bin + 32) * n_off + off_bin
    if weights is None:
        cells, counts = np.unique(key, return_counts=True)
        support = counts
    else:
        cells, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        support = np.bincount(inverse, weights=weights)
    eligible = counts >= min_support
    return cells[eligible] // (64 * 64 * n_off), support[eligible]


def coarse_cells(
    votes: HashVotes, frames_per_second: float, shift: float = 0.0, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each vote's coarse cell ``(tempo, pitch, offset)`` as int64 bins: ``TEMPO_CELL`` of log
    tempo on the grid moved by ``shift`` cells, ``PITCH_CELL_BINS`` of pitch, one second of
    reference offset at the cell's tempo (:func:`cell_tempo`). ``rows``: those votes only."""
    pick = slice(None) if rows is None else rows
    lt_bin = np.round(votes.log_tempo[pick] / TEMPO_CELL + shift).astype(np.int64)
    pb_bin = np.round(votes.pitch_bins[pick] / PITCH_CELL_BINS).astype(np.int64)
    offset = votes.ref_frame[pick] - cell_tempo(lt_bin, shift) * votes.query_frame[pick]
    return lt_bin, pb_bin, np.floor(offset / frames_per_second).astype(np.int64)


def cell_tempo(lt_bin, shift: float = 0.0):
    """The tempo ratio at the centre of tempo cell(s) ``lt_bin`` of the grid moved by ``shift``."""
    return np.exp((lt_bin - shift) * TEMPO_CELL)


def rarity_weights(votes: HashVotes, bucket_sizes: np.ndarray) -> np.ndarray:
    """Per vote, how rare its key is in the catalog: ``log(entries / entries under the key)``.
    A hit under a rare key is less often chance, so among a sampled look-up's thin supports
    (a few hits per cell) rare-key cells rank first: a copy's work then reaches the candidates
    more often (measured in docs/scaling.md)."""
    keys = votes.pattern // PATTERN_KEY_SCALE
    total = max(int(bucket_sizes.sum()), 1)
    return np.log(total / np.maximum(bucket_sizes[keys], 1))


def candidate_order(work_id: int, support: float) -> tuple[float, int]:
    """Sort key of a candidate work: most support first, then a fixed scramble of the work id
    (:func:`audiodup.hashes.scrambled_work_ids`), which draws among equal supports without
    favouring any work."""
    return -support, int(scrambled_work_ids(np.int64(work_id)))


def verify_hashes(
    votes: HashVotes,
    work_id: int,
    frames_per_second: float,
    bins_per_semitone: int,
    max_lines: int = 4,
    flat_level: int | None = None,
) -> HashEvidence | None:
    """Find the tempo ratio, pitch shift and aligned lines that explain the most hits. With
    ``flat_level`` (:func:`audiodup.hashes.flat_level`), the hits of flat triplets
    count once per anchor bin (:func:`held_tone_patterns`)."""
    from scipy import ndimage  # here, not at start-up (issue #16)

    mask = votes.work == work_id
    if mask.sum() < 3:
        return None
    tq, tr = votes.query_frame[mask], votes.ref_frame[mask]
    lt, pb = votes.log_tempo[mask], votes.pitch_bins[mask]
    sq = votes.query_span[mask]
    pattern = held_tone_patterns(votes.pattern[mask], flat_level)
    # no pair repeats: the multi-probe keys of one triplet land in different buckets, and
    # concat_hashes drops triplets found at two peak densities
    n_votes = len(tq)

    lt_edges = np.arange(-_MAX_LOG_TEMPO, _MAX_LOG_TEMPO + _LOG_TEMPO_STEP, _LOG_TEMPO_STEP)
    max_bins = _MAX_PITCH_SEMITONES * bins_per_semitone
    step_bins = _PITCH_STEP_SEMITONES * bins_per_semitone
    pb_edges = np.arange(-max_bins, max_bins + step_bins, step_bins)
    hist, _, _ = np.histogram2d(lt, pb, bins=(lt_edges, pb_edges))
    hist = ndimage.uniform_filter(hist, size=3, mode="constant")
    # the strongest histogram cell is not always the true transform: try the best few
    best = None
    for i, j in _histogram_peaks(hist, n_peaks=3):
        lt0 = (lt_edges[i] + lt_edges[i + 1]) / 2
        pb0 = (pb_edges[j] + pb_edges[j + 1]) / 2
        near = (np.abs(lt - lt0) < 2 * _LOG_TEMPO_STEP) & (np.abs(pb - pb0) < 2 * step_bins)
        if near.sum() < 3:
            continue
        lines = _fit_lines(tq[near], tr[near], float(np.exp(np.median(lt[near]))), max_lines)
        if lines and (best is None or lines[0][0].sum() > best[1][0][0].sum()):
            best = (near, lines)
    if best is None:
        return None
    near, lines = best
    tq, tr, pb, sq, pattern = tq[near], tr[near], pb[near], sq[near], pattern[near]
    pitch = float(np.median(pb))
    all_in = np.zeros(len(tq), dtype=bool)
    aligned = []
    max_gap = _MAX_SECTION_GAP_S * frames_per_second
    for inliers, slope_fit, intercept in lines:
        all_in |= inliers
        # a line can hold several sections (a cut) and stray hits far from the rest
        for run in _runs(np.nonzero(inliers)[0], tq, max_gap):
            q0, q1 = tq[run].min(), (tq[run] + sq[run]).max()
            aligned.append(
                AlignedLine(
                    q0,
                    q1,
                    slope_fit * q0 + intercept,
                    slope_fit * q1 + intercept,
                    _distinct(pattern[run]),
                )
            )
    if not aligned:
        return None
    main_run = max(range(len(aligned)), key=lambda k: aligned[k].inliers)
    aligned.insert(0, aligned.pop(main_run))
    pitch_in = pb[all_in]
    lo, hi = np.percentile(pitch_in, [25, 75])
    central = pitch_in[(pitch_in >= lo) & (pitch_in <= hi)]
    pitch = float(central.mean()) if len(central) else pitch
    intervals = sorted((a.query_start_frame, a.query_end_frame) for a in aligned)
    covered, cur_start, cur_end = 0.0, None, None
    for start, end in intervals:
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                covered += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    covered += (cur_end - cur_start) if cur_end is not None else 0.0
    return HashEvidence(
        work_id=work_id,
        votes=n_votes,
        inliers=_distinct(pattern[all_in]),
        main_inliers=_distinct(pattern[lines[0][0]]),
        tempo_ratio=float(lines[0][1]),
        pitch_shift_semitones=pitch / bins_per_semitone,
        lines=tuple(aligned),
        coverage_s=covered / frames_per_second,
        match_query_frames=tq[all_in],
        match_ref_frames=tr[all_in],
    )


def held_tone_patterns(patterns: np.ndarray, flat_level: int | None) -> np.ndarray:
    """``patterns`` with those of flat triplets (their three peaks in one frequency cell, key
    levels ``flat_level``) made one per query anchor bin, whatever their timing. A held tone's
    peaks form nothing but flat triplets, whose time ratios vary with where the peak picker
    happened to land: counted as distinct patterns, a steady sine aligned with a tone a work
    holds made a dozen independent-looking hits."""
    if flat_level is None or len(patterns) == 0:
        return patterns
    flat = flat_keys(patterns // PATTERN_KEY_SCALE, flat_level)
    return np.where(flat, -1 - patterns % PATTERN_KEY_SCALE, patterns)


def _distinct(patterns: np.ndarray) -> int:
    """Independent evidence in a set of hits: a note pattern repeated in both works (a drum
    figure, an ostinato) lines up once per repeat but is one coincidence, not many."""
    return len(np.unique(patterns))


def _histogram_peaks(hist: np.ndarray, n_peaks: int) -> list[tuple[int, int]]:
    """Cells of the ``n_peaks`` highest local maxima, at least 3 cells apart."""
    peaks: list[tuple[int, int]] = []
    for flat in np.argsort(hist, axis=None)[::-1]:
        i, j = np.unravel_index(flat, hist.shape)
        if hist[i, j] <= 0 or len(peaks) == n_peaks:
            break
        if all(max(abs(i - a), abs(j - b)) >= 3 for a, b in peaks):
            peaks.append((int(i), int(j)))
    return peaks


def _fit_lines(tq: np.ndarray, tr: np.ndarray, tempo: float, max_lines: int) -> list:
    """Up to ``max_lines`` lines of one slope family: the best first, then weaker parallel or
    shifted ones (loops, cuts) that hold a fair share of its hits."""
    lines, used = [], np.zeros(len(tq), dtype=bool)
    slope = tempo
    for _ in range(max_lines):
        line = _first_line_fit(tq, tr, tempo) if not lines else _fit_line(tq, tr, ~used, slope)
        if line is None:
            break
        inliers, slope_fit, intercept = line
        if lines and inliers.sum() < max(6, 0.25 * lines[0][0].sum()):
            break
        if not lines:
            slope = slope_fit
        lines.append((inliers, slope_fit, intercept))
        used |= inliers
        if (~used).sum() < 4:
            break
    return lines


def _first_line_fit(tq: np.ndarray, tr: np.ndarray, tempo: float):
    """The line fitted from ``tempo`` or, when :func:`_scanned_slope` finds a better slope, from
    that one, whichever holds more hits (on a tie, from ``tempo``)."""
    every = np.ones(len(tq), dtype=bool)
    line = _fit_line(tq, tr, every, tempo)
    scanned = _scanned_slope(tq, tr, tempo)
    if scanned is None:
        return line
    other = _fit_line(tq, tr, every, scanned)
    if other is not None and (line is None or other[0].sum() > line[0].sum()):
        return other
    return line


@functools.cache
def _slope_factors() -> np.ndarray:
    """The scanned slopes over the median's, the median's (exactly 1) first, then nearest
    first: ``argmax`` keeps the first of a tie. Read-only: it is shared."""
    steps = np.arange(-_SLOPE_SCAN_STEPS, _SLOPE_SCAN_STEPS + 1)
    factors = np.exp(_SLOPE_SCAN_STEP * steps[np.argsort(np.abs(steps), kind="stable")])
    factors.setflags(write=False)
    return factors


def _scanned_slope(tq: np.ndarray, tr: np.ndarray, tempo: float) -> float | None:
    """The slope within 6 % of ``tempo`` along which most hits share an offset (within the line
    fit's offset window), or None when it gathers no clearly more hits than ``tempo`` does.

    ``tempo`` is the median of a tempo cell's hits, which chance hits of the neighbouring cells
    pull a few % off; over a long copy that drifts its hits apart, so the line fit would hold a
    short stretch of them."""
    if len(tq) < 3:
        return None
    slopes = tempo * _slope_factors()
    counts = _most_in_window(tq, tr, slopes, _OFFSET_CELL_FRAMES * _OFFSET_CELLS_SMOOTHED)
    best = int(np.argmax(counts))
    gain = counts[best] - counts[0]
    if gain < max(_SLOPE_SCAN_MIN_GAIN, _SLOPE_SCAN_GAIN_SIGMAS * np.sqrt(counts[0])):
        return None
    return float(slopes[best])


def _most_in_window(
    tq: np.ndarray, tr: np.ndarray, slopes: np.ndarray, window: float
) -> np.ndarray:
    """Per slope, the most hits whose offsets ``tr - slope * tq`` lie within ``window``."""
    if len(tq) * len(slopes) > _SLOPE_SCAN_ONE_ARRAY:
        counts = np.empty(len(slopes), dtype=np.int64)
        for k, slope in enumerate(slopes):
            offsets = np.sort(tr - slope * tq)
            counts[k] = (np.searchsorted(offsets, offsets + window) - np.arange(len(tq))).max()
        return counts
    offsets = np.sort(tr[None, :] - slopes[:, None] * tq[None, :], axis=1)
    # one sorted run: each slope's offsets from 0, lifted past the previous slope's
    offsets -= offsets[:, :1]
    offsets += (np.arange(len(slopes)) * (offsets[:, -1].max() + 2 * window))[:, None]
    flat = offsets.ravel()
    within = np.searchsorted(flat, flat + window) - np.arange(len(flat))
    return within.reshape(len(slopes), -1).max(axis=1)


def _runs(idx: np.ndarray, tq: np.ndarray, max_gap: float, min_size: int = 3) -> list:
    """Split hits (indices) into runs along query time with gaps below ``max_gap`` frames;
    runs of fewer than ``min_size`` hits are strays, kept only when nothing else is."""
    idx = idx[np.argsort(tq[idx], kind="stable")]
    gaps = np.diff(tq[idx])
    if len(gaps):  # sparse matches (heavy alterations) have wider gaps between true hits
        max_gap = max(max_gap, 4.0 * float(np.median(gaps)))
    breaks = np.nonzero(gaps > max_gap)[0] + 1
    runs = np.split(idx, breaks)
    kept = [r for r in runs if len(r) >= min_size]
    return kept or [max(runs, key=len)]


def _fit_line(tq, tr, available, slope, coarse_tol=24.0, fine_tol=4.0):
    """Most supported line ``tr = a * tq + b`` with ``a`` near ``slope``; inliers by residual."""
    idx = np.nonzero(available)[0]
    if len(idx) < 3:
        return None
    offsets = tr[idx] - slope * tq[idx]
    cells = np.round(offsets / _OFFSET_CELL_FRAMES).astype(np.int64)
    base = cells.min()
    counts = np.convolve(np.bincount(cells - base), np.ones(_OFFSET_CELLS_SMOOTHED), mode="same")
    best = base + int(np.argmax(counts))
    cand = idx[np.abs(offsets - best * _OFFSET_CELL_FRAMES) <= coarse_tol]
    if len(cand) < 3:
        return None
    a, b = slope, float(np.median(tr[cand] - slope * tq[cand]))
    for tol in (coarse_tol / 2, fine_tol, fine_tol):
        resid = tr[idx] - (a * tq[idx] + b)
        cand = idx[np.abs(resid) <= tol]
        if len(cand) < 3:
            return None
        if np.ptp(tq[cand]) > 20:  # enough spread to trust a fitted slope
            a_fit, b_fit = np.polyfit(tq[cand], tr[cand], 1)
            if abs(np.log(max(a_fit, 1e-6) / slope)) < 0.1:
                a, b = float(a_fit), float(b_fit)
        else:
            b = float(np.median(tr[cand] - a * tq[cand]))
    inliers = np.zeros(len(tq), dtype=bool)
    inliers[cand] = True
    return inliers, a, b


_NEAREST_SEGMENTS = 8  # per query vector, for the chroma candidates and votes


@dataclass(frozen=True)
class LineHits:
    """Every hit of a vote search (the ``chroma_vote_neighbours`` nearest segments per vector)
    with where it puts the query in the work: ``offset_bins``, the work's time at the
    query's start in steps of the catalog's segment hop."""

    rows: np.ndarray  # int64
    work_ids: np.ndarray  # int64
    similarities: np.ndarray  # float32
    scales: np.ndarray  # float64
    offset_bins: np.ndarray  # int64


@dataclass(frozen=True)
class ChromaSearch:
    """The nearest catalog segments of the query's segment vectors, hit by hit in search order
    (row by row, each row's hits nearest first, over all shards: :func:`nearest_over_shards`)."""

    rows: np.ndarray  # int64: the query vector of each hit
    work_ids: np.ndarray  # int64
    similarities: np.ndarray  # float32
    scales: np.ndarray  # float64: the query vector's time scale
    # per hit, whether its vector is one of the search's own (None: all are); the others were
    # added between them for the votes only (``vote_density``)
    own: np.ndarray | None = None
    line_hits: LineHits | None = None  # of a vote search (``vote_density`` > 1)


def search_chroma_segments(
    query: Fingerprint,
    indexes: LoadedIndexes,
    settings: Settings,
    time_scale: float = 1.0,
    vote_density: int = 1,
) -> ChromaSearch | None:
    """The chroma index's nearest segments of the query's segment vectors at every scale of
    the tempo grid (None: no chroma index, or a query too short for a segment); of a query that
    is the upload seen ``time_scale`` times slower, at the scales of :func:`view_scales`.

    With ``vote_density`` n > 1 the vectors are n times as dense (the hop divided by n), for
    :func:`chroma_voted_works`; the hits of every n-th vector, the search's own, are marked
    (``own``) and are the hits a search of density 1 gives. Such a search also keeps each
    vector's ``chroma_vote_neighbours`` nearest segments (``line_hits``), for the votes
    only: the other hits are the nearest 8, as without it (but for segments of equal similarity
    at the 8th place, which FAISS orders otherwise in a deeper search: the same audio stored
    twice)."""
    if not indexes.has_chroma:
        return None
    vectors, scale_of, own_of, start_of = [], [], [], []
    duration_s = len(query.chroma) / settings.chroma_fps
    for scale in view_scales(settings, time_scale):
        length_s = settings.segment_s * scale
        hop_s = max(settings.query_segment_hop_s, (duration_s - length_s) / 3)
        v, starts_s = segment_vectors(
            query.chroma,
            settings.chroma_fps,
            settings.segment_s,
            hop_s / vote_density,
            settings.segment_steps,
            time_scale=scale,
            coeffs=settings.chroma_coeffs,
        )
        vectors.append(v)
        scale_of.append(np.full(len(v), scale))
        own_of.append(np.arange(len(v)) % vote_density == 0)
        start_of.append(starts_s)
    if not vectors or sum(len(v) for v in vectors) == 0:
        return None
    vectors = np.concatenate(vectors)
    scale_of = np.concatenate(scale_of)
    votes = vote_density > 1
    k = max(settings.chroma_vote_neighbours, _NEAREST_SEGMENTS) if votes else _NEAREST_SEGMENTS
    hits = indexes.search_chroma(vectors, k=k)
    if hits is None:
        return None
    hits = nearest_over_shards(hits, k)
    rows, cols = np.nonzero(hits.valid & (hits.ranks < _NEAREST_SEGMENTS))
    return ChromaSearch(
        rows.astype(np.int64),
        hits.work_ids[rows, cols],
        hits.similarities[rows, cols],
        scale_of[rows],
        np.concatenate(own_of)[rows] if votes else None,
        _line_hits(hits, scale_of, np.concatenate(start_of), settings) if votes else None,
    )


def _line_hits(
    hits: ChromaHits, scale_of: np.ndarray, start_of: np.ndarray, settings: Settings
) -> LineHits:
    """Every valid hit with the work's time at the query's start: a vector at ``start`` s of the
    query, at time scale ``s``, that finds segment ``j`` puts it at ``j * hop - start / s``."""
    rows, cols = np.nonzero(hits.valid)
    offsets_s = (
        hits.segment_indexes[rows, cols] * settings.segment_hop_s - start_of[rows] / scale_of[rows]
    )
    return LineHits(
        rows.astype(np.int64),
        hits.work_ids[rows, cols],
        hits.similarities[rows, cols],
        scale_of[rows],
        np.floor(offsets_s / settings.segment_hop_s).astype(np.int64),
    )


def chroma_candidates(
    query: Fingerprint, indexes: LoadedIndexes, settings: Settings
) -> list[tuple[int, float, float]]:
    """``(work_id, support, time_scale)`` of works whose chroma segments match at some scale."""
    return ranked_chroma_works(search_chroma_segments(query, indexes, settings), settings)


def ranked_chroma_works(
    search: ChromaSearch | None, settings: Settings, n_works: int | None = None
) -> list[tuple[int, float, float]]:
    """:func:`chroma_candidates` of a search already made (none without one), the first
    ``n_works`` (default ``settings.chroma_candidates``)."""
    if search is None:
        return []
    own = slice(None) if search.own is None else search.own
    sims, scales = search.similarities[own], search.scales[own]
    n_works = settings.chroma_candidates if n_works is None else n_works
    return best_chroma_works(search.work_ids[own], sims, scales, n_works)


def chroma_voted_works(search: ChromaSearch | None, n_works: int) -> list[int]:
    """The works of :func:`chroma_voted_scales`, in its order."""
    return [work_id for work_id, _ in chroma_voted_scales(search, n_works)]


def chroma_voted_scales(search: ChromaSearch | None, n_works: int) -> list[tuple[int, float]]:
    """``(work_id, time_scale)`` of the ``n_works`` works that the most query segment vectors of
    one time scale find, then by best similarity, then in order of appearance; of a denser search
    (``search.own``), those of its own vectors' hits, then the ``n_works`` most voted by all its
    vectors that they lack, then the ``n_works`` most voted at one offset among its deeper hits
    (``search.line_hits``, :func:`_most_voted_in_line`) that they lack.

    In a large catalog every query vector finds some segment about as similar as a copy's
    (0.985-0.99 at 10^4 works), so a work's best similarity ranks a copy's work by chance. A
    copy's work is found by many of the query's vectors, and at the scale of the copy's tempo; a
    chance neighbour by a vector or two, at any scale. (The 160 scaling queries at 10^4 works: a
    hard copy's work among the first 8 on its best look for 92 of 110 by votes at one scale, 83
    by votes at any scale, 62 by best similarity; ``benchmarks/SCALING.md``.) The denser votes
    find more copies' works at 10^5 works, and lose some of the sparser's (benchmarks/SCALING.md):
    both are kept. At 10^5 works a hard copy's work is often not among a vector's 8 nearest
    segments but among its 64, where only a line in time tells it from chance (the true work
    among the voted for 51 of the 110 hard copies, 67 with the deeper votes). A work's scale is
    that of the vote that ranked it (the scale of its fullest cell)."""
    if search is None or len(search.work_ids) == 0 or n_works <= 0:
        return []
    every = _most_voted(search.work_ids, search.rows, search.scales, search.similarities, n_works)
    if search.own is None:
        return every
    own = search.own
    sims = search.similarities[own]
    first = _most_voted(search.work_ids[own], search.rows[own], search.scales[own], sims, n_works)
    have = {w for w, _ in first}
    voted = first + [(w, scale) for w, scale in every if w not in have]
    if search.line_hits is None:
        return voted
    have = {w for w, _ in voted}
    line = _most_voted_in_line(search.line_hits, n_works)
    return voted + [(w, scale) for w, scale in line if w not in have]


def _most_voted_in_line(hits: LineHits, n: int) -> list[tuple[int, float]]:
    """The ``n`` works that the most query vectors of one time scale find at one offset (two
    adjacent offset bins together: a segment hop of slack each way), then by best similarity,
    then in order of appearance. Of the deep votes of :func:`chroma_voted_works`: at 64 hits per
    vector a popular work gathers votes from many vectors, but at scattered offsets."""
    return _most_voted(
        hits.work_ids, hits.rows, hits.scales, hits.similarities, n, hits.offset_bins
    )


def _most_voted(
    work_ids: np.ndarray,
    rows: np.ndarray,
    scales: np.ndarray,
    similarities: np.ndarray,
    n: int,
    offset_bins: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """:func:`chroma_voted_scales` of the hits given: votes per (work, scale), or with
    ``offset_bins`` per (work, scale, offset), each hit then in its own bin and the next one;
    each work with the scale of its fullest cell (of equals, the one with the most similar hit,
    then the smallest scale and offset)."""
    if len(work_ids) == 0:
        return []
    works, first_seen, work_of = np.unique(work_ids, return_index=True, return_inverse=True)
    scale_values, scale_of = np.unique(scales, return_inverse=True)
    cells_per_work = int(scale_of.max()) + 1
    cell = work_of.astype(np.int64) * cells_per_work + scale_of
    n_offsets = 1
    cell_similarities = similarities.astype(np.float64)
    if offset_bins is not None:
        bins = offset_bins - offset_bins.min()
        n_offsets = int(bins.max()) + 2  # the next bin of the last never reaches the next scale
        cells_per_work *= n_offsets
        cell = np.concatenate([cell * n_offsets + bins, cell * n_offsets + bins + 1])
        rows = np.tile(rows, 2)
        cell_similarities = np.tile(cell_similarities, 2)
    n_rows = int(rows.max()) + 1
    # one vote per (cell, query vector): a vector's several hits in a cell count once
    cells, votes = np.unique(np.unique(cell * n_rows + rows) // n_rows, return_counts=True)
    most = np.zeros(len(works), dtype=np.int64)
    np.maximum.at(most, cells // cells_per_work, votes)
    # each work's fullest cell, of equals the one with the most similar hit, then the lowest
    cell_best = np.full(len(cells), -np.inf)
    np.maximum.at(cell_best, np.searchsorted(cells, cell), cell_similarities)
    by_votes = np.lexsort((cells, -cell_best, -votes, cells // cells_per_work))
    fullest = cells[by_votes[np.r_[True, np.diff(cells[by_votes] // cells_per_work) != 0]]]
    fullest_scale = scale_values[(fullest % cells_per_work) // n_offsets]
    best = np.full(len(works), -np.inf)
    np.maximum.at(best, work_of, similarities.astype(np.float64))
    ranked = np.lexsort((first_seen, -best, -most))[:n]
    return [(int(works[i]), float(fullest_scale[i])) for i in ranked]


def best_chroma_works(
    work_ids: np.ndarray, similarities: np.ndarray, scales: np.ndarray, n_works: int
) -> list[tuple[int, float, float]]:
    """``(work_id, support, time_scale)`` of the ``n_works`` works with the highest support (a
    work's best similarity, at least 0) among hits in search order; ``time_scale`` is that of
    the work's first hit at its best similarity, and equal supports keep the order in which
    their works first appear. (Numpy for what was a Python loop over every hit: 0.1-0.2 CPU-s
    per look at 10^5 works, whose 84 shards give 88 x 672 hits.)"""
    if len(work_ids) == 0:
        return []
    order = np.arange(len(work_ids))
    sims = similarities.astype(np.float64)
    works, first_seen = np.unique(work_ids, return_index=True)
    # per work (ascending id), its highest similarity first, the earliest such hit first
    by_work = np.lexsort((order, -sims, work_ids))
    best = by_work[np.searchsorted(work_ids[by_work], works)]
    support = np.maximum(sims[best], 0.0)
    ranked = np.lexsort((first_seen, -support))[:n_works]
    return [(int(works[i]), float(support[i]), float(scales[best[i]])) for i in ranked]


def align_chroma(
    query: Fingerprint,
    reference: Fingerprint,
    work_id: int,
    settings: Settings,
    scales: np.ndarray | None = None,
    query_spectra: dict[tuple[int, int], np.ndarray] | None = None,
) -> ChromaEvidence | None:
    """Best mean cosine between query chroma and reference chroma over time scales, the 12
    rotations and all offsets. ``scale`` maps query seconds to reference seconds (= tempo ratio).

    Also the best similarity per ``settings.chance_block_s`` of reference start positions over
    the same search (``block_maxima``), the chance sample of
    :func:`audiodup.verdict.chroma_null_sample`.

    ``query_spectra`` keeps the stretched query's spectrum per (frames, FFT size) between calls
    with the same ``query`` (works aligned over the same scales share them; the same values).
    """
    fps = settings.chroma_fps
    q, r = query.chroma, reference.chroma
    if len(q) < 4 or len(r) < 4:
        return None
    if scales is None:
        scales = 1.0 / _scale_grid(settings)
    block_frames = max(int(round(settings.chance_block_s * fps)), 1)
    n_blocks = (len(r) - 1) // block_frames + 1
    blocks = np.full(n_blocks, -np.inf)
    best = None
    reference_spectra: dict[int, np.ndarray] = {}  # per FFT size (two or three)
    for tempo in scales:
        n = int(round(len(q) * tempo))
        if n < 4 or n > len(r) * 1.5 + 4:
            continue
        size = _fft_size(n + len(r) - 1)
        q_spec = None if query_spectra is None else query_spectra.get((n, size))
        if q_spec is None:
            q_spec = _query_spectrum(stretched_chroma(q, n), size)
            if query_spectra is not None:
                query_spectra[n, size] = q_spec
        scores = _scores_from_spectrum(q_spec, n, r, reference_spectra)
        per_offset = _best_rotation(scores)
        _block_maxima(per_offset, n, len(r), block_frames, blocks)
        rot, off = _first_argmax(scores, per_offset)
        overlap = _overlap(n, len(r), off)
        value = scores[rot, off] / max(overlap, 1)
        if overlap < min(n, len(r)) * 0.8:
            continue
        if best is None or value > best[0]:
            best = (value, tempo, rot, off, n)
    if best is None:
        return None
    value, tempo, rot, off, n = best
    shift = off - (n - 1)  # reference frame where the query starts
    pitch = ((rot + 6) % 12 - 6) + query.tuning_semitones - reference.tuning_semitones
    q_start = max(0, -shift) / tempo / fps
    q_end = min(n, len(r) - shift) / tempo / fps
    return ChromaEvidence(
        work_id=work_id,
        similarity=float(value),
        tempo_ratio=float(tempo),
        pitch_shift_semitones=float(pitch),
        query_start_s=float(q_start),
        query_end_s=float(q_end),
        ref_start_s=float(max(shift, 0) / fps),
        ref_end_s=float(min(shift + n, len(r)) / fps),
        block_maxima=blocks[np.isfinite(blocks)].astype(np.float32),
        best_block=int(np.isfinite(blocks)[: _block_of(shift, n, len(r), block_frames)].sum()),
        ref_frames=len(r),
    )


def _block_of(shift, n: int, n_ref: int, block_frames: int):
    """The block of reference start positions an alignment falls in: where the centre of the
    aligned query lands, clipped to the reference."""
    centre = np.clip(shift + n // 2, 0, n_ref - 1)
    return centre // block_frames


def _block_maxima(
    per_offset: np.ndarray, n: int, n_ref: int, block_frames: int, blocks: np.ndarray
) -> None:
    """Raise ``blocks`` to the best mean cosine over rotations of the offsets in each block
    (``per_offset``: :func:`_best_rotation` of the scores), counting only offsets with the
    overlap :func:`align_chroma` accepts."""
    shift = np.arange(len(per_offset)) - (n - 1)
    overlap = np.minimum(n, n_ref - shift) - np.maximum(0, -shift)
    usable = np.nonzero(overlap >= min(n, n_ref) * 0.8)[0]
    if len(usable) == 0:
        return
    values = per_offset[usable] / overlap[usable]
    # the blocks rise with the shift: each block's offsets are one run, maximised at once
    block = _block_of(shift[usable], n, n_ref, block_frames)
    starts = np.r_[0, np.nonzero(np.diff(block))[0] + 1]
    np.maximum.at(blocks, block[starts], np.maximum.reduceat(values, starts))


def _best_rotation(scores: np.ndarray) -> np.ndarray:
    """``scores.max(axis=0)``, row by row: the scores are a transposed view, and numpy's
    reduction over its 12 strided rows took 5-6x as long (the same values)."""
    best = scores[0].copy()
    for row in scores[1:]:
        np.maximum(best, row, out=best)
    return best


def _first_argmax(scores: np.ndarray, per_offset: np.ndarray) -> tuple[int, int]:
    """``(rotation, offset)`` of ``np.argmax(scores)`` (the first maximum in row order), found
    from the few offsets whose ``per_offset`` maximum is the top one instead of copying the
    transposed scores to search them all."""
    top = per_offset.max()
    if np.isnan(top):  # numpy's argmax stops at the first NaN
        rotation, offset = np.unravel_index(np.argmax(scores), scores.shape)
        return int(rotation), int(offset)
    offsets = np.flatnonzero(per_offset == top)
    rows, columns = np.nonzero(scores[:, offsets] == top)  # in row order, then column order
    return int(rows[0]), int(offsets[columns[0]])


def _rotation_offset_scores(
    qs: np.ndarray, r: np.ndarray, reference_spectra: dict[int, np.ndarray] | None = None
) -> np.ndarray:
    """Sum over frames of <rotated query frame, reference frame> for every rotation and offset.

    Returns shape ``(12, len(qs) + len(r) - 1)``; offset index ``k`` places query frame 0 at
    reference frame ``k - (len(qs) - 1)``. Rotation ``rot`` means query pitch class ``c + rot``
    matches reference class ``c``. ``reference_spectra`` keeps the reference's spectrum
    (:func:`class_spectrum`) per FFT size between calls with the same ``r`` (the same values,
    computed once).
    """
    q_spec = _query_spectrum(qs, _fft_size(len(qs) + len(r) - 1))
    return _scores_from_spectrum(q_spec, len(qs), r, reference_spectra)


def stretched_chroma(chroma: np.ndarray, n_frames: int) -> np.ndarray:
    """``chroma`` linearly interpolated onto ``n_frames`` frames spanning the same time: the
    query on the reference time base at tempo ratio ``n_frames / len(chroma)``."""
    pos = np.linspace(0, len(chroma) - 1, n_frames)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(chroma) - 1)
    w = (pos - lo)[:, None]
    return chroma[lo] * (1 - w) + chroma[hi] * w


def _fft_size(n_full: int) -> int:
    return 1 << int(np.ceil(np.log2(n_full)))


def _query_spectrum(qs: np.ndarray, size: int) -> np.ndarray:
    """``(f, 12)``: the spectrum over time and pitch class of the time-reversed query chroma
    (a correlation by FFT, linear in time, circular over the 12 classes)."""
    return np.fft.fft(np.fft.rfft(qs[::-1], n=size, axis=0).astype(np.complex128), axis=1)


def _scores_from_spectrum(
    q_spec: np.ndarray,
    n_query: int,
    r: np.ndarray,
    reference_spectra: dict[int, np.ndarray] | None = None,
) -> np.ndarray:
    """:func:`_rotation_offset_scores` from the query's spectrum (:func:`_query_spectrum`) of
    ``n_query`` frames."""
    n_full = n_query + len(r) - 1
    size = 2 * (len(q_spec) - 1)
    reference = None if reference_spectra is None else reference_spectra.get(size)
    if reference is None:
        reference = class_spectrum(np.fft.rfft(r, n=size, axis=0))
        if reference_spectra is not None:
            reference_spectra[size] = reference
    cross = np.fft.ifft(q_spec * reference, axis=1)  # (f, rotation)
    return np.fft.irfft(cross, n=size, axis=0)[:n_full].T


def class_spectrum(spectrum: np.ndarray) -> np.ndarray:
    """``(f, 12)``: a ``(f, 12)`` time spectrum transformed over the pitch classes, as
    complex128, so that its product with :func:`_query_spectrum` inverted over the classes sums
    ``query[f, c] * spectrum[f, (c - rot) % 12]`` over ``c`` for every rotation ``rot``.

    The 12 rotations by a 12-point transform instead of the 144 products of each frequency:
    that step 3.5x faster (issue #16, ``benchmarks/CPU.md``); the scores equal the products'
    sums to rounding (6e-16 of their scale measured, ``tests/test_match.py``)."""
    return np.fft.ifft(spectrum.astype(np.complex128), axis=1, norm="forward")


def _overlap(n_query: int, n_ref: int, offset_index: int) -> int:
    shift = offset_index - (n_query - 1)
    return max(0, min(n_query, n_ref - shift) - max(0, -shift))


def _scale_grid(settings: Settings) -> np.ndarray:
    """Query window scales (1 / tempo ratio) on a geometric grid."""
    lo, hi = 1.0 / settings.tempo_ratio_max, 1.0 / settings.tempo_ratio_min
    n = int(np.ceil(np.log(hi / lo) / np.log(settings.chroma_scale_step))) + 1
    return np.geomspace(lo, hi, n)


def view_scales(settings: Settings, time_scale: float = 1.0) -> np.ndarray:
    """The scales of the tempo grid at which the upload seen ``time_scale`` times slower can
    meet a copy within the searched tempo range (``tempo_ratio_min`` to ``tempo_ratio_max`` of
    the upload as it is, one grid step of margin): a segment at scale ``s`` of that view matches
    at the upload's tempo ratio ``time_scale / s``. The upload as it is: the whole grid; seen 2x
    slower or faster (the further looks), half of it: the other half would search tempos no
    look is meant to cover (issue #16)."""
    grid = _scale_grid(settings)
    tempo = time_scale / grid
    step = settings.chroma_scale_step
    keep = (tempo >= settings.tempo_ratio_min / step) & (tempo <= settings.tempo_ratio_max * step)
    return grid[keep]


def _empty_votes() -> HashVotes:
    z = np.zeros(0)
    return HashVotes(z.astype(np.int64), z, z, z, z, z, z, z, z, z.astype(np.int64))
