"""Peak-triplet hashes invariant to tempo and pitch.

A triplet of peaks (anchor ``a``, then ``b`` and ``c`` later in time) is described by
``(t_b - t_a) / (t_c - t_a)``, unchanged by time-stretching, and by the log-frequency differences
``f_b - f_a`` and ``f_c - f_a``, unchanged by pitch shifting. A resampled copy changes both at once
and keeps the descriptor too. Each hash keeps the anchor's raw time and frequency and the triplet's
time span, so every match also votes for a tempo ratio, a pitch shift and a time offset.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from itertools import product

import numpy as np

from .peaks import PEAK_DTYPE
from .settings import ENTRY_ID_BITS, HASH_KEY_BITS

# Bit layouts are structural (code depends on them), so they live with the recipe's hashed
# material (settings.RECIPE_STRUCTURE) rather than in Settings.
_RATIO_BITS, _DF_BITS = HASH_KEY_BITS
KEY_BITS = _RATIO_BITS + 2 * _DF_BITS

# Packed entry id: work (25 bits) | anchor frame (18) | anchor bin in quarter bins (10) | span (10)
_WORK_BITS, _FRAME_BITS, _QBIN_BITS, _SPAN_BITS = ENTRY_ID_BITS
MAX_WORK_ID = (1 << _WORK_BITS) - 1
MAX_FRAME = (1 << _FRAME_BITS) - 1
MAX_SPAN = (1 << _SPAN_BITS) - 1


@dataclass(frozen=True)
class TripletHashes:
    """Hashes of one recording, parallel arrays of equal length."""

    keys: np.ndarray  # uint32 descriptor keys
    anchor_frame: np.ndarray  # uint32
    anchor_bin: np.ndarray  # float32, log-frequency bins
    span_frames: np.ndarray  # uint32, t_c - t_a

    def __len__(self) -> int:
        return len(self.keys)


def triplet_hashes(
    peaks: np.ndarray,
    fanout: int,
    max_dt_frames: int,
    max_df_bins: int,
    ratio_levels: int,
    df_quant_bins: int,
    multiprobe: bool = False,
) -> TripletHashes:
    """Form triplet hashes from peaks sorted by time.

    Each anchor is paired with the next ``fanout`` peaks within ``max_dt_frames`` and
    ``+-max_df_bins``; every pair of those makes a triplet. Choosing partners by rank in time, not
    by a fixed time window, keeps the choice unchanged when the tempo changes. With
    ``multiprobe`` (query side) a descriptor that falls near a quantisation edge also emits the
    key of the neighbouring cell.
    """
    peaks = np.asarray(peaks, dtype=PEAK_DTYPE)
    n = len(peaks)
    if n < 3 or fanout < 2:
        return _empty()
    t = peaks["frame"].astype(np.int64)
    f = peaks["bin"].astype(np.float64)

    slots = partner_slots(t, f, fanout, max_dt_frames, max_df_bins)
    pairs = [(i, j) for i in range(fanout) for j in range(i + 1, fanout)]
    a = np.repeat(np.arange(n), len(pairs))
    b = slots[:, [p[0] for p in pairs]].ravel()
    c = slots[:, [p[1] for p in pairs]].ravel()
    ok = (b >= 0) & (c >= 0)
    a, b, c = a[ok], b[ok], c[ok]
    span = t[c] - t[a]
    ok = span >= 2
    a, b, c, span = a[ok], b[ok], c[ok], span[ok]
    if len(a) == 0:
        return _empty()

    ratio = (t[b] - t[a]) / span * ratio_levels
    df_levels = 2 * max_df_bins // df_quant_bins + 1
    if ratio_levels > 1 << _RATIO_BITS or df_levels > 1 << _DF_BITS:
        raise ValueError("hash quantisation does not fit the key layout")
    d1 = (f[b] - f[a] + max_df_bins) / df_quant_bins
    d2 = (f[c] - f[a] + max_df_bins) / df_quant_bins
    coords = [(ratio, ratio_levels), (d1 + 0.5, df_levels), (d2 + 0.5, df_levels)]
    keys, owner = _quantise(coords, multiprobe)
    return TripletHashes(
        keys=keys,
        anchor_frame=t[a][owner].astype(np.uint32),
        anchor_bin=f[a][owner].astype(np.float32),
        span_frames=span[owner].astype(np.uint32),
    )


def partner_slots(
    t: np.ndarray, f: np.ndarray, fanout: int, max_dt_frames: int, max_df_bins: float
) -> np.ndarray:
    """``(n, fanout)``: each peak's first ``fanout`` partners later in time within
    ``max_dt_frames`` and ``+-max_df_bins`` (-1: none), chosen by rank in time, not by a fixed
    time window, so that the choice does not change with the tempo."""
    n = len(t)
    window = min(n - 1, 6 * fanout)
    partner = np.arange(n)[:, None] + 1 + np.arange(window)[None, :]
    inside = partner < n
    partner = np.minimum(partner, n - 1)
    dt = t[partner] - t[:, None]
    df = f[partner] - f[:, None]
    valid = inside & (dt > 0) & (dt <= max_dt_frames) & (np.abs(df) <= max_df_bins)
    rank = np.cumsum(valid, axis=1) - 1
    chosen = valid & (rank < fanout)
    slots = np.full((n, fanout), -1, dtype=np.int64)
    rows, cols = np.nonzero(chosen)
    slots[rows, rank[rows, cols]] = partner[rows, cols]
    return slots


def probe_cells(
    value: np.ndarray, levels: int, margin: float = 0.12
) -> tuple[np.ndarray, np.ndarray]:
    """``(cell, neighbour)`` of each coordinate value on ``levels`` levels: the neighbouring
    cell when the value lies within ``margin`` of its cell's edge, else the cell itself."""
    cell = np.clip(np.floor(value), 0, levels - 1).astype(np.int64)
    frac = value - np.floor(value)
    step = np.where(frac < margin, -1, np.where(frac > 1 - margin, 1, 0))
    return cell, np.clip(cell + step, 0, levels - 1)


def flat_level(max_df_bins: int, df_quant_bins: int) -> int:
    """The key level of no frequency difference, as :func:`triplet_hashes` quantises one."""
    return int(np.floor(max_df_bins / df_quant_bins + 0.5))


def flat_keys(keys: np.ndarray, level: int) -> np.ndarray:
    """Which ``keys`` are flat: both frequency differences at ``level`` (:func:`flat_level`),
    the three peaks at one frequency, as a held tone's triplets are."""
    keys = np.asarray(keys, dtype=np.int64)
    cell = (1 << _DF_BITS) - 1
    return (((keys >> _DF_BITS) & cell) == level) & ((keys & cell) == level)


def _quantise(coords, multiprobe: bool, margin: float = 0.12):
    """Keys from continuous coordinates; with ``multiprobe`` also the near-edge neighbours."""

    def key(parts: list[np.ndarray]) -> np.ndarray:
        return (parts[0] << (2 * _DF_BITS)) | (parts[1] << _DF_BITS) | parts[2]

    probe = range(len(coords)) if multiprobe else ()
    keys, owner = probed_keys(coords, probe, key, margin)
    return keys.astype(np.uint32), owner


def probed_keys(
    coords: list[tuple[np.ndarray, int]],
    probe: Container[int],
    key: Callable[[list[np.ndarray]], np.ndarray],
    margin: float = 0.12,
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``key`` of its coordinates' cells (``coords``: ``(value, levels)`` each), and
    for the coordinates in ``probe`` that lie near a cell's edge the keys with the neighbouring
    cell as well (every combination); with the index of the item each key belongs to."""
    options = [probe_cells(value, levels, margin) for value, levels in coords]
    n = len(options[0][0])
    keys, owner = [], []
    for choice in product((False, True), repeat=len(options)):
        if any(use and i not in probe for i, use in enumerate(choice)):
            continue
        mask = np.ones(n, dtype=bool)
        for use, (cell, neighbour) in zip(choice, options, strict=True):
            if use:
                mask &= neighbour != cell
        rows = np.nonzero(mask)[0]
        parts = [
            (nb if use else cell)[rows] for use, (cell, nb) in zip(choice, options, strict=True)
        ]
        keys.append(key(parts))
        owner.append(rows)
    return np.concatenate(keys), np.concatenate(owner)


def concat_hashes(parts: list[TripletHashes]) -> TripletHashes:
    """Concatenate hash sets, dropping exact repeats (same key, anchor and span)."""
    if not parts:
        return _empty()
    keys = np.concatenate([p.keys for p in parts])
    frame = np.concatenate([p.anchor_frame for p in parts])
    abin = np.concatenate([p.anchor_bin for p in parts])
    span = np.concatenate([p.span_frames for p in parts])
    packed = _packed_rows(keys, frame, abin, span)
    if packed is None:
        rows = np.stack([keys.astype(np.float64), frame, abin, span])
        _, first = np.unique(rows, axis=1, return_index=True)
    else:
        _, first = np.unique(packed, return_index=True)
    first.sort()
    return TripletHashes(keys[first], frame[first], abin[first], span[first])


# one int64 per hash when its fields fit: key | anchor frame | anchor bin in 1/16 | span
_PACK_BIN_STEPS = 16  # stored peak bins are multiples of 1 / PEAK_BIN_STEPS
_PACK_FRAME_BITS, _PACK_BIN_BITS, _PACK_SPAN_BITS = 20, 14, 10
assert KEY_BITS + _PACK_FRAME_BITS + _PACK_BIN_BITS + _PACK_SPAN_BITS <= 63


def _packed_rows(keys, frame, abin, span) -> np.ndarray | None:
    """Each hash as one int64, equal exactly when the hashes are (a sort of one integer column
    is several times cheaper than ``np.unique(axis=1)``); None when a field does not fit."""
    qbin = abin.astype(np.float64) * _PACK_BIN_STEPS
    if len(keys) == 0 or not (
        np.array_equal(qbin, np.round(qbin))
        and qbin.min() >= 0
        and qbin.max() < 1 << _PACK_BIN_BITS
        and int(frame.max()) < 1 << _PACK_FRAME_BITS
        and int(span.max()) < 1 << _PACK_SPAN_BITS
        and int(keys.max()) < 1 << KEY_BITS
    ):
        return None
    return (
        (keys.astype(np.int64) << (_PACK_FRAME_BITS + _PACK_BIN_BITS + _PACK_SPAN_BITS))
        | (frame.astype(np.int64) << (_PACK_BIN_BITS + _PACK_SPAN_BITS))
        | (qbin.astype(np.int64) << _PACK_SPAN_BITS)
        | span.astype(np.int64)
    )


def stable_argsort(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")``. Integers from 0 to 2**31 - 1 (fewer than 2**32
    of them: hash keys, bucket numbers, bucket sizes) are sorted as one int64 key each of value
    and position, which numpy sorts with SIMD: a 4-min look's 180,000 four-peak buckets in 1.8
    instead of 17 CPU-ms (benchmarks/SCALING.md, session 52). Anything else by numpy's own."""
    values = np.asarray(values)
    n = len(values) if values.ndim == 1 else 0
    if n == 0 or values.dtype.kind not in "iu" or n >= 1 << 32:
        return np.argsort(values, kind="stable")
    if int(values.min()) < 0 or int(values.max()) >= 1 << 31:
        return np.argsort(values, kind="stable")
    keys = (values.astype(np.int64) << 32) | np.arange(n, dtype=np.int64)
    keys.sort()
    keys &= 0xFFFFFFFF  # the positions
    return keys


def scrambled_work_ids(work_ids) -> np.ndarray:
    """A fixed bijection of 32-bit work ids (Fibonacci hashing): the order in which candidate
    works of equal support rank. The lowest id first would favour the works added first, the
    same ones on every upload (a large catalog has thousands of works at 2 or 3 chance hits)."""
    return (np.asarray(work_ids, dtype=np.int64) * 0x9E3779B1) & 0xFFFFFFFF


def pack_entry_ids(work_id: int, hashes: TripletHashes) -> np.ndarray:
    """Pack each hash's evidence (work, anchor time/frequency, span) into one int64 FAISS id."""
    if not 0 <= work_id <= MAX_WORK_ID:
        raise ValueError(f"work id {work_id} out of range")
    frame = np.minimum(hashes.anchor_frame.astype(np.int64), MAX_FRAME)
    qbin = np.clip(np.round(hashes.anchor_bin * 4.0), 0, (1 << _QBIN_BITS) - 1).astype(np.int64)
    span = np.minimum(hashes.span_frames.astype(np.int64), MAX_SPAN)
    return (
        (np.int64(work_id) << (_FRAME_BITS + _QBIN_BITS + _SPAN_BITS))
        | (frame << (_QBIN_BITS + _SPAN_BITS))
        | (qbin << _SPAN_BITS)
        | span
    )


def unpack_entry_ids(ids: np.ndarray):
    """Inverse of :func:`pack_entry_ids`: ``(work_id, anchor_frame, anchor_bin, span_frames)``."""
    ids = np.asarray(ids, dtype=np.int64)
    return entry_work(ids), entry_frame(ids), entry_bin(ids), entry_span(ids)


# one field of int64 entry ids each, for a caller that needs some fields of many ids
def entry_work(ids: np.ndarray) -> np.ndarray:
    return ids >> (_FRAME_BITS + _QBIN_BITS + _SPAN_BITS)


def entry_frame(ids: np.ndarray) -> np.ndarray:
    return (ids >> (_QBIN_BITS + _SPAN_BITS)) & MAX_FRAME


def entry_bin(ids: np.ndarray) -> np.ndarray:
    return ((ids >> _SPAN_BITS) & ((1 << _QBIN_BITS) - 1)) / 4.0


def entry_span(ids: np.ndarray) -> np.ndarray:
    return ids & MAX_SPAN


def keys_to_codes(keys: np.ndarray) -> np.ndarray:
    """32-bit binary codes (little-endian bytes) for FAISS binary indexes."""
    return np.ascontiguousarray(np.asarray(keys, dtype="<u4")).view(np.uint8).reshape(-1, 4)


def _empty() -> TripletHashes:
    return TripletHashes(
        keys=np.zeros(0, np.uint32),
        anchor_frame=np.zeros(0, np.uint32),
        anchor_bin=np.zeros(0, np.float32),
        span_frames=np.zeros(0, np.uint32),
    )
