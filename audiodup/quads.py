"""Four-peak ("quad") keys: a second retrieval channel for sampled look-ups in large catalogs.

A quad is an anchor peak ``a`` with three of its partners ``b, c, d`` (chosen by rank in time,
as triplets choose theirs: :func:`audiodup.hashes.partner_slots`), keyed by two tempo-invariant
time ratios and three pitch-invariant frequency differences. At 10^5 works 135 M entries fall
in 22 M keys (6 per key) where the triplets' 19-bit keys hold 257 each, so a hit budget reaches
most of a query's rare keys. The quads only propose works: each is then verified on all of its
triplet hits like a chroma-voted work (:func:`audiodup.screening.chroma_voted_candidates`).

A shard's quads live in a ``q-*.quads`` file beside its hash file: a header, a directory of
bucket offsets (a bucket is the top bits of a multiplicative hash of the key, about 2 entries
each), then one 10-byte record per entry: a 16-bit check (the hash's next bits: another key
passes it once in 65,536) and the packed entry id (:func:`audiodup.hashes.pack_entry_ids`).
The file is memory-mapped: a look-up reads one directory word per query key (the directory's
pages stay resident) and the records of the buckets it keeps, in chunks whose pages it
releases.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import mmap
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import numpy as np

from .fingerprint import Fingerprint
from .hashes import (
    TripletHashes,
    pack_entry_ids,
    partner_slots,
    probed_keys,
    scrambled_work_ids,
    stable_argsort,
    unpack_entry_ids,
)
from .peaks import PEAK_DTYPE, thin_peaks
from .settings import DEFAULT_SETTINGS, Settings

CATALOG_FANOUT = 3  # one quad per anchor: its first three partners
QUERY_FANOUT = 6  # every three of a query anchor's first six partners: 20 quads
ALL_COORDINATES = (0, 1, 2, 3, 4)  # the two time ratios, the three frequency differences
ENTRIES_PER_BUCKET = 2  # at 10^5 works: 106 of 110 hard copies found, 104 with 4
COUNT_CHUNK = 1 << 24  # bucket counts are added up this many entries at a time
READ_WINDOW = 1 << 20  # a look-up reads the file this many entries at a time (10 MB)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: odd, so a bijection of 64-bit keys
_MAGIC = b"\x00audiodup quad shard v4\x00\x00\x00\x00\x00\x00\x00\x00\x00"
# magic, bucket bits, offset width (4 or 8 bytes), entries, CRC-32 of offsets, of records
_HEADER = struct.Struct("<32sIIQII8x")
# one entry: its check and id together, so a bucket's entries are one page read, not two
RECORD = np.dtype([("check", "<u2"), ("id", "<i8")])  # packed: 10 bytes
assert len(_MAGIC) == 32 and _HEADER.size == 64


@dataclass(frozen=True)
class Quads:
    """Four-peak hashes of one recording, parallel arrays."""

    keys: np.ndarray  # int64
    anchor_frame: np.ndarray  # int64
    anchor_bin: np.ndarray  # float64, log-frequency bins
    span_frames: np.ndarray  # int64: t_d - t_a


def quad_hashes(
    peaks: np.ndarray,
    fanout: int,
    settings: Settings = DEFAULT_SETTINGS,
    probe: Sequence[int] = (),
) -> Quads:
    """Each anchor's quads of three of its first ``fanout`` partners within the triplets' reach,
    keyed by ``(t_b - t_a) / span``, ``(t_c - t_a) / span`` (``settings.ratio_levels`` levels)
    and ``f_b - f_a``, ``f_c - f_a``, ``f_d - f_a`` (whole log bins). Each coordinate in
    ``probe`` (queries) near a level's edge also emits its neighbour's key."""
    peaks = np.asarray(peaks, dtype=PEAK_DTYPE)
    if len(peaks) < 4:
        return _no_quads()
    t = peaks["frame"].astype(np.int64)
    f = peaks["bin"].astype(np.float64)
    max_df = settings.hash_max_df_bins
    max_dt = int(settings.hash_max_dt_s * settings.frames_per_second)
    slots = partner_slots(t, f, fanout, max_dt, max_df)
    combos = list(itertools.combinations(range(fanout), 3))
    a = np.repeat(np.arange(len(peaks)), len(combos))
    b, c, d = (slots[:, [combo[i] for combo in combos]].ravel() for i in range(3))
    ok = (b >= 0) & (c >= 0) & (d >= 0)
    a, b, c, d = a[ok], b[ok], c[ok], d[ok]
    span = t[d] - t[a]
    ok = span >= 3
    a, b, c, d, span = a[ok], b[ok], c[ok], d[ok], span[ok]
    levels, df_levels = settings.ratio_levels, 2 * max_df + 1
    coords = [
        ((t[b] - t[a]) / span * levels, levels),
        ((t[c] - t[a]) / span * levels, levels),
        (f[b] - f[a] + max_df + 0.5, df_levels),
        (f[c] - f[a] + max_df + 0.5, df_levels),
        (f[d] - f[a] + max_df + 0.5, df_levels),
    ]
    keys, owner = probed_keys(coords, probe, _mixed_radix([n for _, n in coords]))
    return Quads(keys, t[a][owner], f[a][owner], span[owner])


def _mixed_radix(levels: list[int]) -> Callable[[list[np.ndarray]], np.ndarray]:
    """The key of cells on ``levels`` levels each: their mixed-radix number."""

    def key(parts: list[np.ndarray]) -> np.ndarray:
        number = np.zeros(len(parts[0]), dtype=np.int64)
        for cell, n_levels in zip(parts, levels, strict=True):
            number = number * n_levels + cell
        return number

    return key


def _no_quads() -> Quads:
    empty = np.zeros(0, dtype=np.int64)
    return Quads(empty, empty, np.zeros(0), empty)


def query_quads(query: Fingerprint, settings: Settings = DEFAULT_SETTINGS) -> Quads:
    """A query's quads at its densest peaks, every coordinate probed."""
    peaks = thin_peaks(query.peaks, max(settings.query_peak_densities), settings.frames_per_second)
    return quad_hashes(peaks, QUERY_FANOUT, settings, ALL_COORDINATES)


# -- the shard file ------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuadShard:
    """Quad entries grouped by bucket (the layout of ``q-*.quads`` files): ``offsets[b]`` to
    ``offsets[b + 1]`` are bucket ``b``'s rows of ``records`` (:data:`RECORD`); read-only
    views of the file's memory map when read from disk (``mapped``)."""

    bits: int
    offsets: np.ndarray  # uint32 or uint64, 2**bits + 1
    records: np.ndarray  # RECORD
    mapped: mmap.mmap | None = field(default=None, repr=False)
    offsets_at: int = 0  # where ``offsets`` and ``records`` start in ``mapped``
    records_at: int = 0

    @property
    def ntotal(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> np.ndarray:
        return self.records["id"]

    @property
    def checks(self) -> np.ndarray:
        return self.records["check"]

    def release_pages(self) -> None:
        """Drop the pages look-ups have read from this process's resident memory."""
        self._release(0, None)

    def buckets(self, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(first row, rows)`` of each of ``buckets``. The directory's pages stay resident
        (4 bytes a bucket, about 2 an entry: 270 MB at 10^5 works): a look-up reads one word
        in most of its 64 KB blocks, and releasing them to fault them in again on the next
        look-up cost about 45 of its ~175 CPU-ms at 10^5 works (benchmarks/SCALING.md,
        session 19)."""
        # clipped: a damaged directory (checked only by verify) reads wrong rows, never
        # outside the file
        lo = np.clip(self.offsets[buckets].astype(np.int64), 0, self.ntotal)
        hi = np.clip(self.offsets[buckets + 1].astype(np.int64), lo, self.ntotal)
        return lo, hi - lo

    def entries(self, rows: np.ndarray, checks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(passed, ids)``: which of the entries ``rows`` carry ``checks``, and the ids of
        those that do (:meth:`entries_of`). ``rows``: a look-up's, bucket by bucket in file
        order (a bucket asked twice, twice)."""
        return self.entries_of([(rows, checks)])[0]

    def entries_of(
        self, asked: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`entries` of each ``(rows, checks)`` of several look-ups, read in one pass over
        the file: the looks of one upload touch most of the same pages, which one pass faults
        in once instead of once per look. Any order of rows gives the same result; a
        look-up's file order reads each window once.

        The file is read :data:`READ_WINDOW` entries at a time, each window's pages released
        once every look-up has copied out its rows there, so the reads hold a few MB of the
        file at a time. The checks are read first, then the ids of the entries that pass: each
        field copied alone, not as whole 10-byte records (at 10^5 works 81 -> 64 ms a look-up,
        90 % passing)."""
        passed = [np.zeros(len(rows), dtype=bool) for rows, _ in asked]
        ids: list[list[np.ndarray]] = [[np.zeros(0, np.int64)] for _ in asked]
        # a bucket two quads fall in is read twice, its rows again: the furthest row asked so
        # far only grows, and places each row in a window
        reach = [np.maximum.accumulate(rows) if len(rows) else rows for rows, _ in asked]
        if all(len(r) == 0 for r in reach):
            return [(ok, found[0]) for ok, found in zip(passed, ids, strict=True)]
        stored_checks, stored_ids = self.checks, self.ids
        first = min(int(r[0]) for r in reach if len(r))
        last = max(int(r[-1]) for r in reach if len(r))
        for start in range(first - first % READ_WINDOW, last + 1, READ_WINDOW):
            end, lowest = start + READ_WINDOW, start
            for k, (rows, checks) in enumerate(asked):
                lo, hi = np.searchsorted(reach[k], [start, end])
                if lo == hi:
                    continue
                part = rows[lo:hi]
                ok = stored_checks[part] == checks[lo:hi]
                passed[k][lo:hi] = ok
                ids[k].append(stored_ids[part[ok]].astype(np.int64))
                lowest = min(lowest, int(part.min()))
            self._release(self._byte_of(lowest), self._byte_of(end))
        return [(ok, np.concatenate(found)) for ok, found in zip(passed, ids, strict=True)]

    def _byte_of(self, row: int) -> int:
        """Where entry ``row`` starts in ``mapped``."""
        return self.records_at + RECORD.itemsize * row

    def _release(self, start: int, end: int | None) -> None:
        if self.mapped is None:
            return
        start -= start % mmap.PAGESIZE
        length = (len(self.mapped) if end is None else min(end, len(self.mapped))) - start
        with contextlib.suppress(OSError, ValueError):
            self.mapped.madvise(mmap.MADV_DONTNEED, start, length)


def bucket_bits(n_entries: int) -> int:
    """Directory size for ``n_entries``: about :data:`ENTRIES_PER_BUCKET` a bucket (fewer
    keys share a bucket, so the budget's rarest-first choice sees their sizes more exactly)."""
    return int(min(max(round(math.log2(max(n_entries, 1) / ENTRIES_PER_BUCKET)), 4), 31))


def mixed_keys(keys: np.ndarray) -> np.ndarray:
    """Quad keys scrambled into uint64: a bucket is the top bits, the check the next 16."""
    return np.asarray(keys, dtype=np.int64).view(np.uint64) * _MIX


def _bucket_and_check(keys: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    return _split_mixed(mixed_keys(keys), bits)


def _split_mixed(mixed: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    mixed = np.asarray(mixed, dtype=np.uint64)
    bucket = (mixed >> np.uint64(64 - bits)).astype(np.int64)
    check = ((mixed >> np.uint64(48 - bits)) & np.uint64(0xFFFF)).astype(np.uint16)
    return bucket, check


def records_of(mixed: np.ndarray, ids: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(buckets, records)`` of entries under ``mixed`` keys, ordered by bucket, each bucket's
    in the order given."""
    bucket, check = _split_mixed(mixed, bits)
    order = np.argsort(bucket, kind="stable")
    records = np.empty(len(order), dtype=RECORD)
    records["id"] = np.asarray(ids, dtype=np.int64)[order]
    records["check"] = check[order]
    return bucket[order], records


def catalog_quads(
    work_id: int, fingerprint: Fingerprint, settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """A stored work's quad keys and packed entry ids."""
    quads = quad_hashes(fingerprint.peaks, CATALOG_FANOUT, settings)
    return quads.keys, pack_entry_ids(work_id, _as_triplets(quads))


def quad_shard(entries: Sequence[tuple[int, Fingerprint]], settings: Settings) -> QuadShard:
    """The catalog quads of ``(work_id, fingerprint)`` pairs, grouped by bucket."""
    return grouped_quads([catalog_quads(w, fp, settings) for w, fp in entries])


def grouped_quads(parts: list[tuple[np.ndarray, np.ndarray] | None]) -> QuadShard:
    """Entries ``(keys, ids)`` of several works grouped by bucket, each bucket's in the order
    given. ``parts`` is consumed (emptied as it is placed: the entries are held about once)."""
    n = sum(len(part[0]) for part in parts if part is not None)
    bits = bucket_bits(n)
    counts = np.zeros(1 << bits, dtype=np.int64)
    hashed: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    pending: list[np.ndarray] = []
    n_pending = 0
    for i, part in enumerate(parts):
        parts[i] = None
        if part is None or not len(part[0]):
            continue
        bucket, check = _bucket_and_check(part[0], bits)
        hashed.append((bucket.astype(np.uint32), check, part[1]))
        pending.append(hashed[-1][0])
        n_pending += len(bucket)
        if n_pending > COUNT_CHUNK:
            counts += np.bincount(np.concatenate(pending), minlength=1 << bits)
            pending, n_pending = [], 0
    counts += np.bincount(np.concatenate([np.zeros(0, np.uint32), *pending]), minlength=1 << bits)
    offsets = np.zeros((1 << bits) + 1, dtype=np.uint32 if n < 1 << 32 else np.uint64)
    np.cumsum(counts, out=offsets[1:])
    cursor = offsets[:-1].astype(np.int64)
    del counts
    records = np.empty(n, dtype=RECORD)
    for i, (bucket, check, part_ids) in enumerate(hashed):
        hashed[i] = None  # type: ignore[call-overload]
        order = np.argsort(bucket, kind="stable")
        bucket = bucket[order]
        first = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        run = np.diff(np.r_[first, len(bucket)])
        place = cursor[bucket] + np.arange(len(bucket)) - np.repeat(first, run)
        records["id"][place] = np.asarray(part_ids, dtype=np.int64)[order]
        records["check"][place] = check[order]
        cursor[bucket[first]] += run
    return QuadShard(bits, offsets, records)


def _as_triplets(quads: Quads) -> TripletHashes:
    """The fields :func:`pack_entry_ids` packs (key aside), in its argument's type."""
    return TripletHashes(
        keys=np.zeros(len(quads.keys), np.uint32),
        anchor_frame=quads.anchor_frame.astype(np.uint32),
        anchor_bin=quads.anchor_bin.astype(np.float32),
        span_frames=quads.span_frames.astype(np.uint32),
    )


def write_quad_shard(shard: QuadShard) -> Callable[[Callable[[bytes], object]], None]:
    """A writer of a quad shard into any ``write(bytes)`` callable."""
    records = np.ascontiguousarray(shard.records, dtype=RECORD)
    return _quad_file(
        shard.bits, shard.offsets, len(records), zlib.crc32(records), lambda: [records]
    )


def quad_writer(
    bits: int, n: int, slices: Callable[[], Iterator[tuple[int, int, np.ndarray, np.ndarray]]]
) -> tuple[Callable[[Callable[[bytes], object]], None], int]:
    """A writer of the quad file of ``2**bits`` buckets whose ``n`` entries ``slices()`` yields
    as ``(lo, hi, buckets, records)`` (:func:`records_of` of the buckets in ``[lo, hi)``; the
    slices in bucket order), and its entry count. ``slices`` is called twice: once for the
    directory and checksum, once to write; only the directory is held whole (4 bytes a bucket)."""
    offsets = np.zeros((1 << bits) + 1, dtype=np.uint32 if n < 1 << 32 else np.uint64)
    crc, placed = 0, 0
    for lo, hi, buckets, records in slices():
        counts = np.bincount(buckets - lo, minlength=hi - lo)
        offsets[lo + 1 : hi + 1] = placed + np.cumsum(counts)
        placed += len(records)
        crc = zlib.crc32(np.ascontiguousarray(records, dtype=RECORD), crc)
    if placed != n:
        raise AssertionError(f"the slices hold {placed} quad entries, not {n}")
    return _quad_file(bits, offsets, n, crc, lambda: (s[3] for s in slices())), n


def _quad_file(bits, offsets, n, records_crc, record_chunks):
    width = offsets.dtype.itemsize
    offsets = np.ascontiguousarray(offsets, dtype=f"<u{width}")
    header = _HEADER.pack(_MAGIC, bits, width, n, zlib.crc32(offsets), records_crc)

    def write(sink: Callable[[bytes], object]) -> None:
        sink(header)
        sink(offsets.tobytes())
        sink(bytes(_padding(offsets.nbytes)))
        for records in record_chunks():
            sink(np.ascontiguousarray(records, dtype=RECORD).tobytes())

    return write


def _padding(n_bytes: int) -> int:
    return -n_bytes % 8


def read_quad_shard(path, *, check: bool = False) -> QuadShard:
    """Open a quad shard file, memory-mapped. Raises ``RuntimeError`` when it is not one, is
    truncated, its directory does not fit its entries, or (``check``: reads it whole) it fails
    its checksums."""
    with open(path, "rb") as handle:
        header = handle.read(_HEADER.size)
        if len(header) != _HEADER.size:
            raise RuntimeError("the quad shard file is truncated")
        magic, bits, width, n, offsets_crc, records_crc = _HEADER.unpack(header)
        if magic != _MAGIC:
            raise RuntimeError("not a quad shard file")
        if not 4 <= bits <= 31 or width not in (4, 8):
            raise RuntimeError("the quad shard file is damaged: its header is not one")
        n_offsets = (1 << bits) + 1
        offsets_bytes = n_offsets * width
        start = _HEADER.size + offsets_bytes + _padding(offsets_bytes)
        expected = start + RECORD.itemsize * n
        size = handle.seek(0, 2)
        if size != expected:
            raise RuntimeError(
                f"the quad shard file is damaged: {size} bytes, its header says {expected}"
            )
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    with contextlib.suppress(AttributeError, OSError):
        mapped.madvise(mmap.MADV_RANDOM)
    offsets = np.frombuffer(mapped, dtype=f"<u{width}", count=n_offsets, offset=_HEADER.size)
    records = np.frombuffer(mapped, dtype=RECORD, count=n, offset=start)
    # the directory's two ends are read always (a look-up trusts them to bound its reads)
    if int(offsets[0]) != 0 or int(offsets[-1]) != n:
        raise RuntimeError("the quad shard file is damaged: its directory does not fit it")
    if check and (
        zlib.crc32(offsets) != offsets_crc
        or zlib.crc32(records) != records_crc
        or np.any(np.diff(offsets.astype(np.int64)) < 0)
    ):
        raise RuntimeError("the quad shard file is damaged: it fails its checksums")
    return QuadShard(bits, offsets, records, mapped, _HEADER.size, start)


def quad_file_of(hash_file: str) -> str:
    """The name of the four-peak file of the shard whose hash file is ``hash_file``
    (``h-<token>.<ext>`` -> ``q-<token>.quads``; "" for a name of another form)."""
    if not isinstance(hash_file, str) or not hash_file.startswith("h-") or len(hash_file) < 15:
        return ""
    return f"q-{hash_file[2:14]}.quads"


# -- the look-up ---------------------------------------------------------------------------------
def shard_budget(budget: int, shard_entries: int, total_entries: int, n_shards: int = 0) -> int:
    """A shard's share of a look-up's hit budget: by its share of the catalog's quads, and at
    least an equal split over the catalog's ``n_shards`` four-peak shards. A shard computes it
    alone, so a catalog split over machines proposes the works one process does.

    The floor is for a catalog that grows: its newest works sit in small shards beside a large
    compacted one, and a share by entries gave a shard of 24 works 72 entries of 300,000, so
    copies of recent works were found less (the held-out corpus's 47 works in 5 small shards of
    a 10^5 catalog: 482 of their 517 hard copies found, 494 with them compacted into the large
    shard, 499 with this floor; benchmarks/SCALING.md, session 35). The reads stay within twice
    the budget (a small shard holds few entries to read), and shards of equal size (Dask's
    groups) keep their share."""
    if total_entries <= 0:
        return 0
    share = budget * shard_entries // total_entries
    floor = budget // n_shards if n_shards > 0 else 0  # 0: the number of shards is unknown
    return max(1, int(max(share, floor)))


class QuadLead(NamedTuple):
    """Where a voted work's fullest four-peak cell puts the upload: the medians of its hits'
    tempo ratio and pitch shift (semitones) and of their anchors in upload and work frames."""

    tempo_ratio: float
    pitch_semitones: float
    query_frame: float
    ref_frame: float


class QuadVote(NamedTuple):
    """A work proposed by the four-peak look-up: the most of its hits that lie on one line
    (:func:`line_hits`), the weight of the hits in its fullest cell (:func:`quad_cells`) and,
    for a shard's first ``settings.peak_check_quad_leads`` votes, that cell's lead."""

    work_id: int
    line_hits: int
    support: float
    lead: QuadLead | None = None


def best_quad_works(
    shard: QuadShard,
    quads: Quads,
    settings: Settings,
    budget: int,
    top: int,
    is_live: Callable[[np.ndarray], np.ndarray] | None = None,
    rarity_total: int | None = None,
) -> list[QuadVote]:
    """The ``top`` works of ``shard`` the query's quad hits point to, best first: the works
    with the most hits on one line (:func:`line_hits`), then those whose fullest cell of (tempo
    ratio, pitch shift, time offset) holds the most hits, ties in the order of
    :func:`audiodup.hashes.scrambled_work_ids`; the rarest buckets first (ties in the order of
    the buckets) while their entries fit in ``budget``.

    With ``rarity_total`` (the catalog's four-peak entries) a hit weighs ``log(rarity_total /
    entries in its bucket)``, as :func:`audiodup.match.rarity_weights` weighs a sampled
    look-up's triplet hits: a hit from a crowded bucket is more often chance. The weights stay
    within about a fifth of each other (a bucket holds about 2 entries, and the budget drops
    the crowded ones first), so a cell of more hits mostly still ranks first, and among the many
    cells of 2 or 3 hits a large catalog has, those of rarer buckets do (at 10^5
    works 573 -> 577 of 616 hard copies, none lost, 0 of 50 negatives flagged: SCALING.md,
    session 13). Without it the support is the count of hits.

    At 10^5 works a look-up gives most works 1-3 hits and many chance works 2-3 in one coarse
    cell, as many as a hard copy keeps: two hits of a copy also lie on one line, the slope
    between them the tempo their spans give, which two chance hits in a cell rarely do
    (:func:`line_hits`).

    The cells are laid on ``settings.quad_cell_grids`` grids, each a fraction of a cell further
    along tempo, pitch and offset (:func:`quad_cells`), and a work ranks by its best cell on
    any of them: a copy at the edge of a cell on one grid (tempo 0.93 with -1.5 semitones) is
    inside a cell on another. The other grids count only the hits of works that could still
    reach the ``top``: the result is that of counting every hit on every grid."""
    return best_quad_works_of(shard, [quads], settings, budget, top, is_live, rarity_total)[0]


def best_quad_works_of(
    shard: QuadShard,
    looks: Sequence[Quads],
    settings: Settings,
    budget: int,
    top: int,
    is_live: Callable[[np.ndarray], np.ndarray] | None = None,
    rarity_total: int | None = None,
) -> list[list[QuadVote]]:
    """:func:`best_quad_works` of each of several looks' quads, their entries read in one pass
    (:func:`quad_hits_of`)."""
    if top <= 0:
        return [[] for _ in looks]
    found = quad_hits_of(shard, looks, settings, budget, is_live, rarity_total)
    return [voted_works(hits, settings, top) for hits in found]


def voted_works(hits: QuadHits, settings: Settings, top: int) -> list[QuadVote]:
    """The ``top`` works of a look-up's ``hits``, best first (:func:`best_quad_works`)."""
    line = line_hits(hits, settings.frames_per_second)
    lined = line >= 2
    first = best_lined_works(hits.rows(lined), line[lined], top, settings)
    rest = best_cell_grid_works(hits.rows(~lined), top - len(first), settings)
    votes = first + [QuadVote(w, 1, s) for w, s in rest]
    n_leads = settings.peak_check_quad_leads
    led = [v._replace(lead=cell_lead(hits, v.work_id, settings)) for v in votes[:n_leads]]
    return led + votes[n_leads:]


def cell_lead(hits: QuadHits, work_id: int, settings: Settings) -> QuadLead | None:
    """The lead of ``work_id``'s fullest cell on any of the ``settings.quad_cell_grids`` grids
    (the first grid's, then the lowest cell's, among equals). The medians of its hits do not
    depend on the order they came in."""
    mine = hits.rows(hits.work == work_id)
    if len(mine.work) == 0:
        return None
    best: tuple[float, np.ndarray] | None = None
    grids = max(settings.quad_cell_grids, 1)
    for k in range(grids):
        cells = quad_cells(mine.work, mine.log_tempo, mine.pitch, mine.offset_s, k / grids)
        unique, support = cell_support(cells, mine.weights)
        top = int(np.argmax(support))
        if best is None or support[top] > best[0]:
            best = (float(support[top]), cells == unique[top])
    in_cell = best[1]
    return QuadLead(
        float(np.exp(np.median(mine.log_tempo[in_cell]))),
        float(np.median(mine.pitch[in_cell])),
        float(np.median(mine.query_frame[in_cell])),
        float(np.median(mine.ref_frame[in_cell])),
    )


@dataclass(frozen=True)
class QuadHits:
    """The quad hits of one look-up, one row per (query quad, stored entry) pair: the work, the
    query's and the work's anchor frames, the log tempo ratio and pitch shift (semitones) the
    pair's spans and anchors give, the time offset (s) and the hit's weight."""

    work: np.ndarray
    query_frame: np.ndarray
    ref_frame: np.ndarray
    log_tempo: np.ndarray
    pitch: np.ndarray
    offset_s: np.ndarray
    weights: np.ndarray

    def rows(self, rows: np.ndarray) -> QuadHits:
        return QuadHits(*(getattr(self, f.name)[rows] for f in fields(self)))


def quad_hits(
    shard: QuadShard,
    quads: Quads,
    settings: Settings,
    budget: int = 1 << 62,
    is_live: Callable[[np.ndarray], np.ndarray] | None = None,
    rarity_total: int | None = None,
) -> QuadHits:
    """The hits of ``quads`` in ``shard`` of live works (``is_live``) within the searched tempo
    and pitch range, the rarest buckets first while their entries fit in ``budget``, weighted
    as :func:`best_quad_works` says."""
    return next(quad_hits_of(shard, [quads], settings, budget, is_live, rarity_total))


def quad_hits_of(
    shard: QuadShard,
    looks: Sequence[Quads],
    settings: Settings,
    budget: int = 1 << 62,
    is_live: Callable[[np.ndarray], np.ndarray] | None = None,
    rarity_total: int | None = None,
) -> Iterator[QuadHits]:
    """:func:`quad_hits` of each of several looks' quads, their entries read in one pass
    (:meth:`QuadShard.entries_of`): each look's hits are those it gives alone, made as they
    are asked for (one look's hits in memory at a time)."""
    asked = [_asked_rows(shard, quads, budget) for quads in looks]
    read = shard.entries_of([(a.entry, a.check) for a in asked if a is not None])
    read.reverse()
    for k, quads in enumerate(looks):
        rows, asked[k] = asked[k], None
        if rows is None:
            yield _no_quad_hits()
        else:
            yield _hits_of(quads, rows, *read.pop(), settings, is_live, rarity_total)


@dataclass(frozen=True)
class _AskedRows:
    """The entries a look-up reads: each one's row, the check it must carry, its query quad
    and how many entries its bucket holds."""

    entry: np.ndarray
    check: np.ndarray
    quad: np.ndarray
    crowd: np.ndarray


def _asked_rows(shard: QuadShard, quads: Quads, budget: int) -> _AskedRows | None:
    """The rows of the buckets ``quads`` fall in, the rarest buckets first while their entries
    fit in ``budget``, in file order (None: nothing to read)."""
    if shard.ntotal == 0 or len(quads.keys) == 0:
        return None
    bucket, check = _bucket_and_check(quads.keys, shard.bits)
    by_bucket = stable_argsort(bucket)  # the file is then read in order
    bucket, check = bucket[by_bucket], check[by_bucket]
    lo, count = shard.buckets(bucket)
    if count.sum() > budget:  # the rarest keys carry the most evidence per hit
        rarest = stable_argsort(count)
        beyond = rarest[np.cumsum(count[rarest]) > budget]
        count[beyond] = 0  # never more than the budget, whatever the directory says
    total = int(count.sum())
    if total == 0:
        return None
    q = np.repeat(np.arange(len(count)), count)
    crowd = np.repeat(count, count)  # entries in each hit's bucket
    entry = np.repeat(lo - (np.cumsum(count) - count), count) + np.arange(total)
    # each look of an upload keeps these until one pass has read them all: the quad a row
    # answers as 4 bytes, not 8
    return _AskedRows(entry, check[q], by_bucket[q].astype(np.int32), crowd)


def _no_quad_hits() -> QuadHits:
    return QuadHits(
        *(np.zeros(0, dtype=np.int64) for _ in range(3)), *(np.zeros(0) for _ in range(4))
    )


def _hits_of(
    quads: Quads,
    asked: _AskedRows,
    passed: np.ndarray,
    ids: np.ndarray,
    settings: Settings,
    is_live: Callable[[np.ndarray], np.ndarray] | None,
    rarity_total: int | None,
) -> QuadHits:
    """The hits of the ``asked`` entries whose check ``passed`` (their ``ids``)."""
    q, crowd = asked.quad[passed], asked.crowd[passed]
    work, frame, anchor_bin, span = unpack_entry_ids(ids)
    log_tempo = np.log(np.maximum(span, 1) / np.maximum(quads.span_frames[q], 1))
    pitch = (quads.anchor_bin[q] - anchor_bin) / settings.bins_per_semitone
    keep = (np.abs(log_tempo) <= np.log(2.1)) & (np.abs(pitch) <= 12.5) & (work >= 0)
    if is_live is not None:
        keep &= is_live(work)
    q, work, frame, crowd = q[keep], work[keep], frame[keep], crowd[keep]
    log_tempo, pitch = log_tempo[keep], pitch[keep]
    query_frame = quads.anchor_frame[q]
    offset_s = (frame - query_frame * np.exp(log_tempo)) / settings.frames_per_second
    weights = np.ones(len(work))
    if rarity_total is not None:
        weights = np.log(max(rarity_total, 1) / np.maximum(crowd, 1))
    return QuadHits(work, query_frame, frame, log_tempo, pitch, offset_s, weights)


# two hits of a copy lie on one line: the slope between their anchors is the tempo ratio their
# spans give. A span of 3-170 frames gives it within a few %, so the slope is compared with the
# mean of the two hits' ratios; anchors less than LINE_MIN_GAP_S apart give too coarse a
# slope. Of the 32 hard copies lost at 10^5 works (session 24) 23 had their work among
# the first 8 on some look with these, 14 with a gap of 20 frames and 0.03 from each hit's
# ratio, 8 by the cells alone (benchmarks/SCALING.md, session 25)
LINE_MAX_LOG_SLOPE_ERROR = 0.04
LINE_MAX_PITCH_ERROR = 0.5  # semitones
LINE_MIN_GAP_S = 1.0
LINE_MAX_HITS = 48  # the neighbours in pitch order a hit is compared with: a bound on the pairs


def line_hits(hits: QuadHits, frames_per_second: float) -> np.ndarray:
    """For each hit, 1 + the most hits of its work that lie on one line with one of them (two
    hits lie on one line when their pitch shifts agree, :data:`LINE_MAX_PITCH_ERROR`, and the
    slope between their anchors is the mean of the tempo ratios they give,
    :data:`LINE_MAX_LOG_SLOPE_ERROR`, and their anchors at least :data:`LINE_MIN_GAP_S` apart);
    each hit is compared with the next :data:`LINE_MAX_HITS` of its work in pitch order."""
    n = len(hits.work)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # by work, then pitch (in 1/1024 semitones, |pitch| <= 12.5): the hits a hit may agree
    # with follow it, until the pitch differs too much (at 10^5 works a look-up's 150,000 hits
    # have a few such neighbours each); then by anchors, so that the neighbours compared do not
    # depend on the order the hits came in (a catalog in one shard or in several)
    rank = np.round((hits.pitch + 16.0) * 1024).astype(np.int64)
    anchors = hits.query_frame.astype(np.int64) << 20 | hits.ref_frame.astype(np.int64)
    order = np.lexsort((anchors, hits.work.astype(np.int64) << 16 | rank))
    work, pitch, rank = hits.work[order], hits.pitch[order], rank[order]
    qf = hits.query_frame[order].astype(np.float64)
    rf = hits.ref_frame[order].astype(np.float64)
    lt = hits.log_tempo[order]
    min_gap = round(LINE_MIN_GAP_S * frames_per_second)
    agree = np.zeros(n, dtype=np.int64)
    i = np.arange(n - 1)
    for step in range(1, min(LINE_MAX_HITS, n - 1) + 1):
        i = i[i + step < n]
        j = i + step
        near = (work[j] == work[i]) & (rank[j] - rank[i] <= LINE_MAX_PITCH_ERROR * 1024 + 1)
        i, j = i[near], j[near]
        if len(i) == 0:
            break
        dq, dr = qf[j] - qf[i], rf[j] - rf[i]
        ok = (np.abs(dq) >= min_gap) & (dr * dq > 0)
        ok &= np.abs(pitch[j] - pitch[i]) <= LINE_MAX_PITCH_ERROR
        slope = np.log(np.where(ok, dr / np.where(ok, dq, 1.0), 1.0))
        ok &= np.abs(slope - (lt[i] + lt[j]) / 2) <= LINE_MAX_LOG_SLOPE_ERROR
        np.add.at(agree, i[ok], 1)
        np.add.at(agree, j[ok], 1)
    start = np.r_[0, np.nonzero(np.diff(work))[0] + 1]
    line = np.empty(n, dtype=np.int64)
    line[order] = np.repeat(np.maximum.reduceat(agree, start) + 1, np.diff(np.r_[start, n]))
    return line


def best_lined_works(
    hits: QuadHits, line: np.ndarray, top: int, settings: Settings
) -> list[QuadVote]:
    """The ``top`` works of the most ``line`` hits, then the best cell on any grid, then in the
    order of :func:`scrambled_work_ids` (:func:`merged_quad_works`' order)."""
    if len(hits.work) == 0 or top <= 0:
        return []
    works, at = np.unique(hits.work, return_index=True)
    line_of = dict(zip(works.tolist(), line[at].tolist(), strict=True))
    cells, support = grid_cells(hits, range(max(settings.quad_cell_grids, 1)), settings)
    best = best_cell_works(cells, support, len(works))  # each work's best cell
    return merged_quad_works([[QuadVote(w, line_of[w], s) for w, s in best]], top)


def best_cell_grid_works(hits: QuadHits, top: int, settings: Settings) -> list[tuple[int, float]]:
    """``(work_id, support)`` of the ``top`` works whose best cell on any of the
    ``settings.quad_cell_grids`` grids holds the most weight; the other grids count only the
    hits of works that could still reach the ``top``."""
    if len(hits.work) == 0 or top <= 0:
        return []
    grids = max(settings.quad_cell_grids, 1)
    cells, support = grid_cells(hits, range(1), settings)
    first = best_cell_works(cells, support, top)
    if grids == 1:
        return first
    rows = np.ones(len(hits.work), dtype=bool)
    if len(first) == top:
        # a work's cell on any grid holds at most its hits: a work whose hits weigh less than
        # the first grid's top-th support ranks below it on every grid (at 10^5 works most of
        # the hits, 2-3 per work, are left out of the other grids' cells)
        rows = np.bincount(hits.work, weights=hits.weights)[hits.work] >= first[-1][1] * (1 - 1e-9)
    other_cells, other_support = grid_cells(hits.rows(rows), range(1, grids), settings)
    cells = np.concatenate([cells, other_cells])
    return best_cell_works(cells, np.concatenate([support, other_support]), top)


def grid_cells(hits: QuadHits, grids: range, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """The cells (:func:`quad_cells`) of ``hits`` on each grid ``k`` of ``grids``, moved by
    ``k / settings.quad_cell_grids`` cells, and the weight of the hits in each."""
    parts = [
        cell_support(
            quad_cells(
                hits.work,
                hits.log_tempo,
                hits.pitch,
                hits.offset_s,
                k / max(settings.quad_cell_grids, 1),
            ),
            hits.weights,
        )
        for k in grids
    ]
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0))
    cells = np.concatenate([empty[0], *(c for c, _ in parts)])
    return cells, np.concatenate([empty[1], *(s for _, s in parts)])


def cell_support(cell: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct cells and the weight of the hits in each."""
    unique, inverse = np.unique(cell, return_inverse=True)
    return unique, np.bincount(inverse, weights=weights, minlength=len(unique))


def quad_cells(
    work: np.ndarray, log_tempo: np.ndarray, pitch: np.ndarray, offset_s: np.ndarray, shift: float
) -> np.ndarray:
    """One int64 per hit: its cell of (work, tempo, pitch, offset), ordered so, on the grid
    moved by ``shift`` cells along all three: tempo in steps of 0.05 in log (|.| <= 15), pitch
    in semitones (|.| <= 13), offset in 2-s steps (|.| < 2^19). A copy whose tempo or pitch
    shift lies near the edge of a cell (tempo 0.93 is 0.45 cells from one, a pitch of -1.5
    semitones on one) splits its hits between cells of one grid, and falls inside a cell of
    another."""
    cell = work.astype(np.int64) << 6 | np.round(log_tempo / 0.05 + shift).astype(np.int64) + 32
    cell = cell << 6 | np.round(pitch + shift).astype(np.int64) + 32
    return cell << 20 | np.round(offset_s / 2 + shift).astype(np.int64) + (1 << 19)


def best_cell_works(cells: np.ndarray, support: np.ndarray, top: int) -> list[tuple[int, float]]:
    """``(work_id, support)`` of the ``top`` works whose best cell (the work in a cell's top
    bits) has the most support, ties in the order of :func:`scrambled_work_ids`. Only the cells
    at or above the ``4 * top``-th largest support are sorted when they span ``top`` works:
    every other cell ranks below all of them, so the answer is that of sorting them all (at
    10^5 works a look-up has about 128,000 cells: 19 -> 2 CPU-ms)."""
    few = 4 * top
    if len(cells) > few:
        nth = np.partition(support, len(support) - few)[len(support) - few]
        chosen = support >= nth
        if len(np.unique(cells[chosen] >> 32)) >= top:
            cells, support = cells[chosen], support[chosen]
    ranked: dict[int, float] = {}
    for row in np.lexsort((scrambled_work_ids(cells >> 32), -support)):
        ranked.setdefault(int(cells[row] >> 32), float(support[row]))
        if len(ranked) == top:
            break
    return list(ranked.items())


def merged_quad_works(
    found: Sequence[Sequence[QuadVote]], top: int, leads: int = 0
) -> list[QuadVote]:
    """The ``top`` best of several shards' :func:`best_quad_works` (each work lives in one
    shard), in the order one look-up over all of them ranks them; the first ``leads`` keep
    their lead (each is among its shard's first), the others have none, as in one shard."""
    items = [QuadVote(*item) for part in found for item in part]
    ranked = sorted(
        items, key=lambda v: (-v.line_hits, -v.support, int(scrambled_work_ids(v.work_id)))
    )[:top]
    return ranked[:leads] + [v._replace(lead=None) for v in ranked[leads:]]
