"""The searchable indexes: the one module that talks to FAISS, and the on-disk hash layout.

A shard is a hash index and a chroma index built from fingerprints. The hash index holds exact
buckets of triplet keys (``KEY_BITS`` bits) whose int64 ids pack work, anchor time, frequency and
span; the chroma index holds segment vectors in the FAISS index the recipe's factory string names,
ids packing work and segment. :mod:`audiodup.store` keeps the shard files, SQLite and locking; it
builds a shard with :mod:`audiodup.shard_build` in bounded memory (the files :func:`build_shard`
makes whole in RAM), reads one with :func:`read_hash_shard` and :func:`read_index`, and hands
readers a :class:`LoadedIndexes`. :mod:`audiodup.match` sees only the typed look-ups
below (:class:`HashHits`, :class:`ChromaHits`), so another backend needs only the same methods.

**Sorted hash shards** (``h-*.sorted``, written since issue #14) are memory-mapped, so a screening
process holds only the pages its look-ups touch, not the whole index (benchmarks/INDEX_LAYOUT.md
measured it against FAISS in RAM, FAISS on-disk inverted lists and LMDB). One file::

    header (64 bytes)   _SORTED_MAGIC, key bits, entry count, CRC-32 of offsets and of ids,
                        length of the sizes
    sizes               zlib(int64[2**KEY_BITS]) entries per key, zero-padded to 8 bytes; their
                        running sum is the offsets: key k's entries are ids[off[k]:off[k+1]]
    ids                 int64[n], sorted by key, in insertion order within a key

A look-up is two offset reads and a slice per key, and returns the entries in the order FAISS's
``IndexBinaryHash`` returned them (bucket by bucket, insertion order within a bucket), so verdicts
do not move. Opening inflates the sizes into the offsets (checked against their CRC, then
held as uint32: 2 MB in RAM per shard), and the ids are mapped; the ids' CRC costs a full read
and is checked by ``index verify``. The sizes are compressed because a small shard's are
mostly zeros: 4 MB of raw offsets would outweigh a batch of a few works.

**FAISS hash shards** (``h-*.faiss``, catalogs written before) are an ``IndexBinaryHash`` loaded
in RAM, followed by the bucket sizes: ``FAISS index | _SIZES_MAGIC | zlib(int64 sizes)``. FAISS
reads exactly its own bytes and ignores what follows. Files written before the sizes (no trailer)
load with their sizes counted from the index. They still open and answer identically; ``index
rebuild`` (and compaction) rewrite them in the sorted layout.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import struct
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .chroma import N_CHROMA_COEFFS, segment_vectors
from .fingerprint import Fingerprint, fingerprint_hashes
from .hashes import KEY_BITS, keys_to_codes, pack_entry_ids, unpack_entry_ids
from .quads import (
    Quads,
    QuadShard,
    QuadVote,
    best_quad_works_of,
    catalog_quads,
    grouped_quads,
    merged_quad_works,
    shard_budget,
)
from .settings import Settings

CHROMA_DIM = int(np.prod(N_CHROMA_COEFFS))  # of the default recipe; see chroma_dim()
_SEGMENT_BITS = 20
_HASH_BUCKET_BITS = 24
assert KEY_BITS <= _HASH_BUCKET_BITS <= 32
_SIZES_MAGIC = b"\x00audiodup bucket sizes v1\x00"
_SORTED_MAGIC = b"\x00audiodup sorted hashes v1\x00\x00\x00\x00\x00\x00"
# magic, key bits, 0, entry count, CRC-32 of the offsets' bytes, of the ids' bytes, length of
# the compressed bucket sizes
_SORTED_HEADER = struct.Struct("<32sIIQIIQ")
assert len(_SORTED_MAGIC) == 32 and _SORTED_HEADER.size == 64
_CRC_CHUNK_ENTRIES = 1 << 20  # ids checksummed 8 MB at a time, so verify holds little of them
_MERGE_CHUNK_KEYS = 1 << 13  # keys merged at a time: about 1/64 of the entries of the shards


_BLAS_FROM_QUERIES = 4096
_threads: int | None = None  # set_threads' count, applied when FAISS is first imported
_threads_applied = False


def set_threads(n_threads: int) -> None:
    """The number of OpenMP threads FAISS searches with (``Settings.faiss_threads``)."""
    global _threads, _threads_applied
    _threads, _threads_applied = n_threads, False
    if "faiss" in sys.modules:
        _faiss()


def _faiss():
    """The FAISS module, imported on first use (0.1 CPU-s, plus its OpenMP runtime): opening a
    catalog, decoding and fingerprinting do not need it."""
    global _threads_applied
    import faiss

    # a look's few hundred query vectors against a shard's coarse centroids: FAISS's SIMD loop
    # over them costs less than its BLAS product and heaps (0.65 against 1.12 CPU-ms per shard of
    # 2,048 lists, 88 vectors of 48 columns; benchmarks/SCALING.md)
    faiss.cvar.distance_compute_blas_threshold = _BLAS_FROM_QUERIES
    if _threads is not None and not _threads_applied:
        faiss.omp_set_num_threads(_threads)
        _threads_applied = True
    return faiss


# -- ids -----------------------------------------------------------------------------------------
def pack_segment_ids(work_id: int, n_segments: int) -> np.ndarray:
    """Chroma index ids of a work's ``n_segments`` segment vectors."""
    return (np.int64(work_id) << _SEGMENT_BITS) | np.arange(n_segments, dtype=np.int64)


def unpack_segment_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(work_ids, segment_indexes)`` of chroma index ids."""
    ids = np.asarray(ids, dtype=np.int64)
    return ids >> _SEGMENT_BITS, ids & ((1 << _SEGMENT_BITS) - 1)


# -- typed hits ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class HashHits:
    """Exact-bucket hits of some hash keys, shard by shard, each shard's hits key by key:
    ``entry_ids[j]`` (packed as :func:`audiodup.hashes.pack_entry_ids` makes them) is stored
    under key number ``query_rows[j]`` of the look-up."""

    query_rows: np.ndarray  # int64
    entry_ids: np.ndarray  # int64


@dataclass(frozen=True)
class ChromaHits:
    """The ``k`` nearest stored segments of each query vector, per shard side by side
    (``similarities`` and ``work_ids`` have one row per query vector). ``valid`` is False where
    FAISS found no neighbour (label -1) or the work is not live."""

    similarities: np.ndarray  # float32, (n_vectors, n_hits)
    work_ids: np.ndarray  # int64
    segment_indexes: np.ndarray  # int64
    valid: np.ndarray  # bool
    ranks: np.ndarray  # int64: each hit's place in its shard's answer for its vector (0: nearest)


@dataclass(frozen=True, eq=False)  # compared by identity: its arrays may be a file's map
class SortedHashShard:
    """Hash entries sorted by key (the layout of ``h-*.sorted`` files; see the module docstring).

    ``ids`` is a read-only view of the file's memory map when the shard was read from disk
    (``mapped``): the pages a look-up touches are read then, and :meth:`release_pages` hands
    them back, so they stay in the page cache but leave this process's resident memory."""

    offsets: np.ndarray  # uint32 (int64 past 2**32 entries), 2**KEY_BITS + 1
    ids: np.ndarray  # int64, sorted by key, insertion order within a key
    ids_crc: int  # CRC-32 of the ids' little-endian bytes
    mapped: mmap.mmap | None = field(default=None, repr=False)

    @property
    def ntotal(self) -> int:
        return len(self.ids)

    @property
    def bucket_sizes(self) -> np.ndarray:
        """Entries per key, int64."""
        return np.diff(self.offsets).astype(np.int64)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, ids)``: ``ids[j]`` is stored under ``keys[rows[j]]``; key by key in the order
        of ``keys``, each key's entries in insertion order."""
        keys = np.asarray(keys, dtype=np.int64)
        keys = np.where((keys >= 0) & (keys < 1 << KEY_BITS), keys, -1)
        starts = np.where(keys >= 0, self.offsets[keys].astype(np.int64), 0)
        counts = np.where(keys >= 0, self.offsets[keys + 1].astype(np.int64) - starts, 0)
        rows = np.repeat(np.arange(len(keys), dtype=np.int64), counts)
        # position of every hit: its key's start plus its rank among the key's hits
        first_hit = np.cumsum(counts) - counts
        positions = np.arange(len(rows), dtype=np.int64) + np.repeat(starts - first_hit, counts)
        return rows, np.asarray(self.ids[positions], dtype=np.int64)

    def release_pages(self) -> None:
        """Drop the mapped pages look-ups have read from this process's resident memory (they
        stay in the page cache, so the next look-up maps them again without reading the disk).
        Safe while other threads read the shard: a read-only file map faults its pages back."""
        if self.mapped is not None:
            with contextlib.suppress(OSError, ValueError):  # ValueError: the map was closed
                self.mapped.madvise(mmap.MADV_DONTNEED)


def compact_offsets(offsets: np.ndarray) -> np.ndarray:
    """``offsets`` as uint32 when they fit (2 MB per shard instead of 4 MB: a process holds
    every shard's offsets, 168 MB of them at 10^5 works), else int64."""
    offsets = np.asarray(offsets)
    if offsets[-1] < 1 << 32:
        return offsets.astype(np.uint32)
    return offsets.astype(np.int64)


def sorted_hash_shard(keys: np.ndarray, ids: np.ndarray) -> SortedHashShard:
    """The sorted shard of entries ``ids`` under ``keys``, given in insertion order."""
    keys = np.asarray(keys, dtype=np.int64)
    order = np.argsort(keys, kind="stable")  # stable: insertion order within a key
    sorted_ids = np.ascontiguousarray(np.asarray(ids, dtype="<i8")[order])
    offsets = np.concatenate([[0], np.cumsum(count_keys(keys))])
    return SortedHashShard(compact_offsets(offsets), sorted_ids.astype(np.int64), _crc(sorted_ids))


def _crc(ids: np.ndarray) -> int:
    crc = 0
    for start in range(0, len(ids), _CRC_CHUNK_ENTRIES):
        chunk = np.ascontiguousarray(ids[start : start + _CRC_CHUNK_ENTRIES], dtype="<i8")
        crc = zlib.crc32(chunk.view(np.uint8), crc)
    return crc


def write_sorted_hash_shard(shard: SortedHashShard) -> Callable[[Callable[[bytes], object]], None]:
    """A writer of a sorted hash shard into any ``write(bytes)`` callable."""
    return _write_sorted(shard.offsets, shard.ntotal, shard.ids_crc, lambda: [shard.ids])


def _write_sorted(offsets, n_entries, ids_crc, id_chunks):
    offsets = np.ascontiguousarray(offsets, dtype="<i8")
    sizes = zlib.compress(np.diff(offsets).astype("<i8").tobytes())
    sizes += bytes(-len(sizes) % 8)  # the ids start 8-aligned
    crc = zlib.crc32(offsets.view(np.uint8))
    header = _SORTED_HEADER.pack(_SORTED_MAGIC, KEY_BITS, 0, n_entries, crc, ids_crc, len(sizes))

    def write(sink: Callable[[bytes], object]) -> None:
        sink(header)
        sink(sizes)
        for chunk in id_chunks():
            for start in range(0, len(chunk), _CRC_CHUNK_ENTRIES):
                part = chunk[start : start + _CRC_CHUNK_ENTRIES]
                sink(np.ascontiguousarray(part, dtype="<i8").tobytes())

    return write


def read_sorted_hash_shard(path) -> SortedHashShard:
    """Open a sorted hash shard file, its ids memory-mapped. Raises ``RuntimeError`` (as FAISS
    does for a damaged index) when the file is not one, or its header or offsets are damaged."""
    with open(path, "rb") as handle:
        header = handle.read(_SORTED_HEADER.size)
        if len(header) != _SORTED_HEADER.size:
            raise RuntimeError("the hash shard file is truncated")
        fields = _SORTED_HEADER.unpack(header)
        magic, key_bits, _, n_entries, offsets_crc, ids_crc, sizes_bytes = fields
        if magic != _SORTED_MAGIC:
            raise RuntimeError("not a sorted hash shard file")
        if key_bits != KEY_BITS:
            raise RuntimeError(f"the hash shard has {key_bits}-bit keys, the code {KEY_BITS}")
        ids_at = _SORTED_HEADER.size + sizes_bytes
        size = handle.seek(0, 2)
        if sizes_bytes % 8 or size != ids_at + 8 * n_entries:
            raise RuntimeError(
                f"the hash shard file is damaged: {size} bytes, its header says "
                f"{ids_at + 8 * n_entries}"
            )
        handle.seek(_SORTED_HEADER.size)
        sizes = _inflate_sizes(handle.read(sizes_bytes))
        offsets = np.zeros((1 << KEY_BITS) + 1, dtype="<i8")
        if sizes is not None:
            np.cumsum(sizes, out=offsets[1:])
        if sizes is None or zlib.crc32(offsets.view(np.uint8)) != offsets_crc:
            raise RuntimeError("the hash shard file is damaged: its offsets fail their checksum")
        if offsets[-1] != n_entries or (sizes < 0).any():
            raise RuntimeError("the hash shard file is damaged: its offsets are inconsistent")
        del sizes
        offsets = compact_offsets(offsets)
        if n_entries == 0:
            return SortedHashShard(offsets, np.zeros(0, dtype=np.int64), ids_crc)
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    # a look-up reads a few scattered keys: no read-ahead, no mapping of neighbouring pages
    with contextlib.suppress(AttributeError, OSError):
        mapped.madvise(mmap.MADV_RANDOM)
    # the page cache, not this process, holds what the look-ups read (the map outlives the file)
    ids = np.frombuffer(mapped, dtype="<i8", count=n_entries, offset=ids_at)
    return SortedHashShard(offsets, ids, ids_crc, mapped)


def _inflate_sizes(stored: bytes) -> np.ndarray | None:
    """The bucket sizes of a sorted shard file, None when damaged (never more than they can be:
    a damaged stream must not inflate to any size)."""
    expected = 8 << KEY_BITS
    stream = zlib.decompressobj()
    try:
        raw = stream.decompress(stored, expected + 1)
    except zlib.error:
        return None
    if len(raw) != expected or not stream.eof or stream.unused_data.strip(b"\x00"):
        return None
    return np.frombuffer(raw, dtype="<i8")  # read-only, over ``raw``: no second copy


def sorted_ids_intact(shard: SortedHashShard) -> bool:
    """Whether the shard's ids still have the checksum they were written with (a full read)."""
    return _crc(shard.ids) == shard.ids_crc


def merge_sorted_hash_shards(
    shards: list[SortedHashShard], is_live: Callable[[np.ndarray], np.ndarray]
) -> tuple[Callable[[Callable[[bytes], object]], None], int]:
    """A writer of one sorted shard holding the live entries of ``shards`` (``is_live`` of work
    ids), and its entry count. It holds the same entries in the same order as a shard built from
    the live works in work-id order: within a key, the shards' entries are ordered by work id
    (each shard holds its works' entries in work-id order, and works are in one shard only).
    Two passes over the shards, a slice of keys at a time: memory stays bounded by the slice."""

    def live_slices():
        for lo in range(0, 1 << KEY_BITS, _MERGE_CHUNK_KEYS):
            hi = min(lo + _MERGE_CHUNK_KEYS, 1 << KEY_BITS)
            keys, ids = [], []
            for shard in shards:
                start, end = int(shard.offsets[lo]), int(shard.offsets[hi])
                keys.append(np.repeat(np.arange(lo, hi), np.diff(shard.offsets[lo : hi + 1])))
                ids.append(np.asarray(shard.ids[start:end], dtype=np.int64))
            keys, ids = np.concatenate(keys), np.concatenate(ids)
            works = unpack_entry_ids(ids)[0]
            keep = is_live(works)
            keys, ids, works = keys[keep], ids[keep], works[keep]
            order = np.lexsort((works, keys))  # stable: a work's entries keep their order
            yield lo, hi, keys[order], ids[order]

    return sorted_writer(live_slices)


def sorted_writer(
    slices: Callable[[], Iterator[tuple[int, int, np.ndarray, np.ndarray]]],
) -> tuple[Callable[[Callable[[bytes], object]], None], int]:
    """A writer of the sorted shard whose entries ``slices()`` yields as ``(lo, hi, keys, ids)``
    (the keys in ``[lo, hi)``, sorted; the slices in key order), and its entry count.
    ``slices`` is called twice: once for the sizes and checksum, once to write."""
    sizes = np.zeros(1 << KEY_BITS, dtype=np.int64)
    crc = 0
    for lo, hi, keys, ids in slices():
        sizes[lo:hi] = np.bincount(keys - lo, minlength=hi - lo)
        crc = zlib.crc32(np.ascontiguousarray(ids, dtype="<i8").view(np.uint8), crc)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    writer = _write_sorted(offsets, int(offsets[-1]), crc, lambda: (s[3] for s in slices()))
    return writer, int(offsets[-1])


def faiss_hash_index(shard: SortedHashShard):
    """The FAISS ``IndexBinaryHash`` of a sorted shard's entries (the layout of ``h-*.faiss``
    files), answering every look-up with the same entries in the same order."""
    index = _faiss().IndexBinaryHash(32, _HASH_BUCKET_BITS)
    if shard.ntotal:
        keys = np.repeat(np.arange(1 << KEY_BITS, dtype=np.uint32), shard.bucket_sizes)
        index.add_with_ids(keys_to_codes(keys), np.asarray(shard.ids, dtype=np.int64))
    return index


def _lookup(shard, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, ids)`` of ``keys`` in a sorted shard or a FAISS ``IndexBinaryHash``."""
    if isinstance(shard, SortedHashShard):
        return shard.lookup(keys)
    lims, _, labels = shard.range_search(keys_to_codes(keys), 1)
    return np.repeat(np.arange(len(keys)), np.diff(lims).astype(np.int64)), labels


@dataclass
class LoadedIndexes:
    """A consistent snapshot of the searchable indexes."""

    hash_shards: list
    chroma_shards: list
    live: np.ndarray  # bool, indexed by work_id
    bucket_sizes: np.ndarray  # entries per hash key over all hash shards
    # per hash shard, whether it holds each key (None: not known, every shard is asked): a key
    # is looked up only in the shards that hold it, a fraction of them in a catalog of many. A
    # sorted shard's own offsets tell it (its entry here is None: no 0.5 MB mask per shard)
    shard_has_key: list[np.ndarray | None] | None = None
    # the four-peak files of the shards that have one (audiodup.quads; a shard written before
    # them has none until 'audiodup index upgrade')
    quad_shards: list[QuadShard] = field(default_factory=list)

    @property
    def n_hash_entries(self) -> int:
        return int(sum(shard.ntotal for shard in self.hash_shards))

    @property
    def n_quad_entries(self) -> int:
        return int(sum(shard.ntotal for shard in self.quad_shards))

    @property
    def n_quad_shards(self) -> int:
        return len(self.quad_shards)

    @property
    def has_chroma(self) -> bool:
        return bool(self.chroma_shards)

    def without(self, work_ids: Sequence[int]) -> LoadedIndexes:
        """These indexes with ``work_ids`` left out, as if removed: a catalog work screened
        against the rest of its catalog (a rescan), which its own line would otherwise decide."""
        gone = [w for w in work_ids if 0 <= w < len(self.live)]
        if not gone:
            return self
        live = self.live.copy()
        live[gone] = False
        return replace(self, live=live)

    def is_live(self, work_ids: np.ndarray) -> np.ndarray:
        """Whether each work id names a work that is in the catalog and not removed."""
        work_ids = np.asarray(work_ids, dtype=np.int64)
        # any id a damaged file holds (index verify names it) is no work, never an index error
        known = (work_ids >= 0) & (work_ids < len(self.live))
        return known & self.live[np.clip(work_ids, 0, len(self.live) - 1)]

    def lookup_hashes(self, keys: np.ndarray) -> HashHits | None:
        """Every stored entry whose key equals one of ``keys`` (None: no keys, or no entries)."""
        keys = np.asarray(keys, dtype=np.uint32)
        rows, ids = [], []
        for i, shard in enumerate(self.hash_shards):
            if shard.ntotal == 0 or len(keys) == 0:
                continue
            # the same hits, in the same order, as asking the shard for every key
            asked = np.arange(len(keys))
            if self.shard_has_key is not None and self.shard_has_key[i] is not None:
                asked = asked[self.shard_has_key[i][keys]]
            found_rows, found_ids = _lookup(shard, keys[asked])
            rows.append(asked[found_rows])
            ids.append(found_ids)
            if isinstance(shard, SortedHashShard):
                # the hits are copied out: the pages read leave this process's memory, which
                # otherwise grows to every shard's file (1.1 GB at 10^5 works)
                shard.release_pages()
        if not ids:
            return None
        return HashHits(np.concatenate(rows).astype(np.int64), np.concatenate(ids))

    def quad_works(self, quads: Quads, settings: Settings, top: int) -> list[QuadVote]:
        """The ``top`` live works ``quads`` point to (:func:`audiodup.quads.best_quad_works`,
        hits weighted by their rarity in the whole catalog), each shard within its share of
        ``settings.quad_budget`` (:func:`audiodup.quads.shard_budget`)."""
        return self.quad_works_of([quads], settings, top)[0]

    def quad_works_of(
        self, looks: Sequence[Quads], settings: Settings, top: int
    ) -> list[list[QuadVote]]:
        """:meth:`quad_works` of each of several looks' quads, each shard's entries read in one
        pass (:func:`audiodup.quads.best_quad_works_of`)."""
        total, n_shards = self.n_quad_entries, self.n_quad_shards
        per_shard = [
            best_quad_works_of(
                shard,
                looks,
                settings,
                shard_budget(settings.quad_budget, shard.ntotal, total, n_shards),
                top,
                self.is_live,
                rarity_total=total,
            )
            for shard in self.quad_shards
        ]
        leads = settings.peak_check_quad_leads
        return [
            merged_quad_works([found[k] for found in per_shard], top, leads)
            for k in range(len(looks))
        ]

    def search_chroma(self, vectors: np.ndarray, k: int) -> ChromaHits | None:
        """The ``k`` nearest segments of each vector in every chroma shard (None: no segments)."""
        sims, labels = [], []
        by_width: dict[int, np.ndarray] = {}  # the vectors padded once per shard width
        for shard in self.chroma_shards:
            if shard.ntotal == 0:
                continue
            if shard.d not in by_width:
                by_width[shard.d] = padded_columns(vectors, shard.d)
            d, i = shard.search(by_width[shard.d], min(k, shard.ntotal))
            sims.append(d)
            labels.append(i)
        if not sims:
            return None
        ranks = np.concatenate([np.broadcast_to(np.arange(d.shape[1]), d.shape) for d in sims], 1)
        sims, labels = np.concatenate(sims, axis=1), np.concatenate(labels, axis=1)
        works, segments = unpack_segment_ids(np.where(labels < 0, 0, labels))
        valid = (labels >= 0) & self.is_live(works)
        return ChromaHits(sims, works, segments, valid, ranks)


def nearest_over_shards(hits: ChromaHits, k: int) -> ChromaHits:
    """Each vector's ``k`` nearest segments over all shards, nearest first (ranks 0..k-1): the
    hits one shard holding every segment gives, whatever the catalog's layout. Each shard
    answers with its own ``k`` nearest, so without the cut a catalog of n shards looks n times
    deeper than one of a single shard, and its chance neighbours crowd out a copy's evidence
    (at 10^4 works, 3 shards: 594 of 616 hard copies found, 599 with the cut, 604 in one
    shard; benchmarks/SCALING.md). A stable sort: equal similarities keep shard order, and one
    shard's answer, nearest first already, is unchanged (and returned as it is: no sort on the
    search path of a catalog in one shard)."""
    n_hits = hits.ranks.shape[1]
    if n_hits <= k and np.array_equal(hits.ranks[0], np.arange(n_hits)):  # one shard's answer
        return hits
    order = np.argsort(-hits.similarities, axis=1, kind="stable")[:, :k]
    taken = [np.take_along_axis(getattr(hits, name), order, axis=1) for name in _HIT_FIELDS]
    ranks = np.broadcast_to(np.arange(order.shape[1], dtype=np.int64), order.shape)
    return ChromaHits(*taken, np.ascontiguousarray(ranks))


_HIT_FIELDS = ("similarities", "work_ids", "segment_indexes", "valid")


def bucket_sizes(hash_shards: list) -> np.ndarray:
    """Entries per hash key, summed over the shards (one exact look-up of every possible key:
    for shards saved without their sizes, and to check saved ones)."""
    sizes = np.zeros(1 << KEY_BITS, dtype=np.int64)
    every_key = keys_to_codes(np.arange(1 << KEY_BITS, dtype=np.uint32))
    for shard in hash_shards:
        if isinstance(shard, SortedHashShard):
            sizes += shard.bucket_sizes
        elif shard.ntotal:
            lims, _, _ = shard.range_search(every_key, 1)
            sizes += np.diff(lims).astype(np.int64)
    return sizes


def count_keys(keys: np.ndarray) -> np.ndarray:
    """Entries per hash key of a shard holding one entry per key in ``keys``."""
    return np.bincount(np.asarray(keys, dtype=np.int64), minlength=1 << KEY_BITS)


# -- building ------------------------------------------------------------------------------------
def reference_segments(fingerprint: Fingerprint, settings: Settings) -> np.ndarray:
    """The chroma segment vectors a catalog stores for ``fingerprint``."""
    vectors, _ = segment_vectors(
        fingerprint.chroma,
        settings.chroma_fps,
        settings.segment_s,
        settings.segment_hop_s,
        settings.segment_steps,
        coeffs=settings.chroma_coeffs,
    )
    return vectors


def chroma_dim(settings: Settings) -> int:
    """Length of a chroma segment vector under ``settings``'s recipe."""
    return int(np.prod(settings.chroma_coeffs))


# FAISS scans 8-bit codes with SIMD only when a vector's length is a multiple of its SIMD width
# (16 floats with AVX-512): a chroma shard stores its vectors with zero columns up to one, which
# leaves every inner product as it is and scans about 2x faster (benchmarks/SCALING.md)
CHROMA_SIMD_WIDTH = 16


def chroma_index_dim(dim: int) -> int:
    """Columns a chroma shard stores for vectors of length ``dim``."""
    return -(-dim // CHROMA_SIMD_WIDTH) * CHROMA_SIMD_WIDTH


def padded_columns(vectors: np.ndarray, dim: int) -> np.ndarray:
    """``vectors`` (float32 rows) with zero columns appended up to ``dim``."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape[1] == dim:
        return vectors
    padded = np.zeros((len(vectors), dim), dtype=np.float32)
    padded[:, : vectors.shape[1]] = vectors
    return padded


@dataclass
class BuiltShard:
    """The indexes of one shard and what each work put in them."""

    hash_index: SortedHashShard
    chroma_index: object
    quad_index: QuadShard
    counts: list[tuple[int, int, int]]  # (n_hashes, n_segments, work_id) per work
    n_hashes: int
    n_segments: int
    bucket_sizes: np.ndarray  # int64 entries per hash key, counted from the hashes added


def build_shard(entries: Sequence[tuple[int, Fingerprint]], settings: Settings) -> BuiltShard:
    """Hash and segment each ``(work_id, fingerprint)`` and index them, each fingerprint reached
    once (a store's entries are decoded as they are reached, and let go once hashed and
    segmented)."""
    keys, ids = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    quads: list[tuple[np.ndarray, np.ndarray] | None] = []
    n_hashes, segments = [], []
    for work_id, fingerprint in entries:
        hashes = fingerprint_hashes(fingerprint, settings)
        if len(hashes):
            keys.append(hashes.keys.astype(np.int64))
            ids.append(pack_entry_ids(work_id, hashes))
        n_hashes.append(len(hashes))
        segments.append((work_id, reference_segments(fingerprint, settings)))
        quads.append(catalog_quads(work_id, fingerprint, settings))
    chroma_index, n_segments = chroma_index_of(segments, settings)
    counts = [(h, n, w) for h, n, (w, _) in zip(n_hashes, n_segments, segments, strict=True)]
    hash_index = sorted_hash_shard(np.concatenate(keys), np.concatenate(ids))
    return BuiltShard(
        hash_index,
        chroma_index,
        grouped_quads(quads),
        counts,
        sum(n_hashes),
        sum(n_segments),
        hash_index.bucket_sizes,
    )


def build_chroma(
    entries: Sequence[tuple[int, Fingerprint]], settings: Settings
) -> tuple[object, list]:
    """The chroma index of each ``(work_id, fingerprint)``'s segment vectors, and the number of
    segments of each."""
    segments = [(w, reference_segments(fingerprint, settings)) for w, fingerprint in entries]
    return chroma_index_of(segments, settings)


def chroma_index_of(
    segments: list[tuple[int, np.ndarray]], settings: Settings
) -> tuple[object, list]:
    """The chroma index of each ``(work_id, segment vectors)``, and the number of segments of
    each."""
    vectors = [v for _, v in segments]
    vector_ids = [pack_segment_ids(work_id, len(v)) for work_id, v in segments]
    chroma_index = new_chroma_index(np.concatenate(vectors) if vectors else None, settings)
    all_vectors = np.concatenate(vectors).astype(np.float32)
    if len(all_vectors):
        all_vectors = padded_columns(all_vectors, chroma_index.d)
        chroma_index.add_with_ids(all_vectors, np.concatenate(vector_ids))
    return chroma_index, [len(v) for v in vectors]


def new_chroma_index(training: np.ndarray | None, settings: Settings, *, pad: bool = True):
    """An empty chroma index of the recipe's factory string, trained on ``training``; its
    vectors padded to :func:`chroma_index_dim` columns (``pad=False``: the recipe's length, as
    catalogs before the padding stored them)."""
    n_vectors = 0 if training is None else len(training)
    lists = ivf_lists(n_vectors, settings.chroma_vectors_per_list)
    lists = min(max(lists, settings.chroma_min_lists), settings.chroma_max_lists)
    factory = settings.chroma_index_factory.format(nlist=lists)
    dim = chroma_index_dim(chroma_dim(settings)) if pad else chroma_dim(settings)
    if training is not None:
        training = padded_columns(np.asarray(training).reshape(-1, chroma_dim(settings)), dim)
    faiss = _faiss()
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        vectors = np.asarray(training, dtype=np.float32).reshape(-1, dim)
        if len(vectors) < _min_training_vectors(index):
            # too few vectors to train this index type well: 8-bit scalar quantisation needs
            # only each dimension's range (exact float storage when there is nothing at all)
            small = "SQ8" if len(vectors) else "Flat"
            index = faiss.index_factory(dim, small, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            index.train(vectors)
    return with_ids(index)


def padded_chroma_index(index):
    """``index`` with its vectors padded to :func:`chroma_index_dim` columns, keeping its
    inverted lists, coarse centroids, ids and codes (a zero byte per added column, which
    decodes to 0 as the column's trained range is empty). Its similarities equal the older
    ones to float rounding (the SIMD scan sums in another order; about 1e-6), so a search finds
    the same segments but for ties at that level. For the 8-bit scalar-quantised shards the
    store writes (with inverted lists, or exhaustive in an id map); None when there is nothing
    to pad or another index type."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap2):
        flat = faiss.downcast_index(index.index)
        inner = _padded_scalar_quantizer(flat)
        if inner is None:
            return None
        padded = faiss.IndexIDMap2(inner)  # wraps an empty index: the codes go in after
        inner.this.disown()
        padded.own_fields = True
        codes = _padded_codes(faiss.vector_to_array(flat.codes), flat.d, inner.d)
        faiss.copy_array_to_vector(codes.ravel(), inner.codes)
        faiss.copy_array_to_vector(faiss.vector_to_array(index.id_map), padded.id_map)
        inner.ntotal = padded.ntotal = index.ntotal
        padded.construct_rev_map()
        return padded
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return _padded_ivf(index)
    return None


def _padded_sq_fields(sq_index) -> tuple[int, np.ndarray] | None:
    """The padded width and trained ranges of an 8-bit scalar quantiser (None: not one, or
    already padded)."""
    faiss = _faiss()
    dim = chroma_index_dim(sq_index.d)
    if sq_index.sq.qtype != faiss.ScalarQuantizer.QT_8bit or dim == sq_index.d:
        return None
    trained = faiss.vector_to_array(sq_index.sq.trained).reshape(2, sq_index.d)  # min, range
    return dim, padded_columns(trained, dim).ravel()


def _padded_codes(codes: np.ndarray, old_dim: int, dim: int) -> np.ndarray:
    rows = codes.reshape(-1, old_dim)
    wide = np.zeros((len(rows), dim), dtype=np.uint8)
    wide[:, :old_dim] = rows
    return wide


def _padded_scalar_quantizer(flat):
    """An empty, trained scalar quantiser of ``flat``'s ranges, padded (None: not one)."""
    faiss = _faiss()
    fields = None if not isinstance(flat, faiss.IndexScalarQuantizer) else _padded_sq_fields(flat)
    if fields is None:
        return None
    dim, trained = fields
    padded = faiss.IndexScalarQuantizer(dim, flat.sq.qtype, flat.metric_type)
    faiss.copy_array_to_vector(trained, padded.sq.trained)
    padded.is_trained = True
    return padded


def _padded_ivf(ivf):
    faiss = _faiss()
    fields = _padded_sq_fields(ivf)
    if fields is None:
        return None
    dim, trained = fields
    centroids = faiss.downcast_index(ivf.quantizer).reconstruct_n(0, ivf.nlist)
    quantizer = (
        faiss.IndexFlatIP(dim)
        if ivf.metric_type == faiss.METRIC_INNER_PRODUCT
        else faiss.IndexFlatL2(dim)
    )
    quantizer.add(padded_columns(centroids, dim))
    padded = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, ivf.nlist, ivf.sq.qtype, ivf.metric_type, ivf.by_residual
    )
    quantizer.this.disown()
    padded.own_fields = True
    faiss.copy_array_to_vector(trained, padded.sq.trained)
    padded.is_trained = True
    lists = ivf.invlists
    for number in range(ivf.nlist):
        size = lists.list_size(number)
        if size == 0:
            continue
        codes = faiss.rev_swig_ptr(lists.get_codes(number), size * ivf.code_size)
        ids = faiss.rev_swig_ptr(lists.get_ids(number), size).copy()
        wide = _padded_codes(codes, ivf.d, dim)
        padded.invlists.add_entries(number, size, faiss.swig_ptr(ids), faiss.swig_ptr(wide))
    padded.ntotal = ivf.ntotal
    padded.nprobe = ivf.nprobe
    return padded


def with_ids(index):
    """``index`` able to store the caller's ids: IVF indexes take ids themselves, others are
    wrapped in an id map."""
    try:
        _faiss().extract_index_ivf(index)
    except RuntimeError:
        return _faiss().IndexIDMap2(index)
    return index


def ivf_lists(n_vectors: int, per_list: int) -> int:
    """The power of two of inverted lists that keeps about ``per_list`` vectors in each: search
    cost per probed list stays flat as the shard grows."""
    return 1 << max(int(np.log2(max(n_vectors // per_list, 1))), 0)


def _min_training_vectors(index) -> int:
    """FAISS wants about 39 training vectors per IVF list; other trained indexes need a few."""
    try:
        return 39 * _faiss().extract_index_ivf(index).nlist
    except RuntimeError:
        return 256


def set_nprobe(index, nprobe: int, share: float = 0.0) -> None:
    """Inverted lists probed per chroma search: ``nprobe``, or ``share`` of the index's lists
    when that is more (no effect on an index without lists)."""
    with contextlib.suppress(RuntimeError):  # not an IVF index
        ivf = _faiss().extract_index_ivf(index)
        ivf.nprobe = probed_lists(ivf.nlist, nprobe, share)


def set_probes(index, settings: Settings) -> None:
    """:func:`set_nprobe` as ``settings`` set it (``chroma_nprobe``, ``chroma_probed_share``)."""
    set_nprobe(index, settings.chroma_nprobe, settings.chroma_probed_share)


def probed_lists(nlist: int, nprobe: int, share: float = 0.0) -> int:
    """Lists probed in an index of ``nlist``: ``nprobe``, or ``share`` of them when more."""
    return max(nprobe, math.ceil(share * nlist))


# -- files ---------------------------------------------------------------------------------------
def write_index(index, *, binary: bool) -> Callable[[Callable[[bytes], object]], None]:
    """A writer of ``index`` into any ``write(bytes)`` callable (a Python file's ``write``)."""

    def write(sink: Callable[[bytes], object]) -> None:
        faiss = _faiss()
        out = faiss.PyCallbackIOWriter(sink)
        if binary:
            faiss.write_index_binary(index, out)
        else:
            faiss.write_index(index, out)

    return write


def read_index(path, *, binary: bool):
    """Read an index file through a Python file, as the store writes them: FAISS opens only paths
    it can encode as UTF-8, and a catalog folder may have any name its file system takes."""
    with open(path, "rb") as handle:
        faiss = _faiss()
        reader = faiss.PyCallbackIOReader(handle.read)
        return faiss.read_index_binary(reader) if binary else faiss.read_index(reader)


def read_chroma_index(path):
    """Open a chroma shard memory-mapped (the vectors stay in the page cache, the process holds
    what its searches touch; benchmarks/INDEX_LAYOUT.md), through a Python file only when FAISS
    cannot open the path (a name that is not UTF-8).

    FAISS maps the file's codes in place (``IO_FLAG_MMAP_IFC``; FAISS 1.15.1 here), so the index
    keeps its in-RAM list type and searches as fast as one read into RAM, with the same hits;
    ``IO_FLAG_MMAP`` (the fallback for a FAISS without it) swaps in on-disk lists: 0.68 against
    0.51 CPU-s per look at 10^5 works (benchmarks/SCALING.md, 2026-11-30)."""
    name = os.fsdecode(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return read_index(path, binary=False)
    faiss = _faiss()
    in_place = getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP)
    return faiss.read_index(name, in_place | faiss.IO_FLAG_READ_ONLY)


@dataclass(frozen=True)
class HashShard:
    """A hash index read from its file (a :class:`SortedHashShard` or a FAISS index) with the
    bucket sizes saved after a FAISS index (``None``: a FAISS file written before sizes were
    saved, or a sorted shard, whose offsets hold them)."""

    index: object
    saved_sizes: np.ndarray | None

    @property
    def bucket_sizes(self) -> np.ndarray | None:
        """Entries per key, made from a sorted shard's offsets when asked (a catalog keeps its
        shards open: 4 MB per shard held twice would be 336 MB at 10^5 works)."""
        if isinstance(self.index, SortedHashShard):
            return self.index.bucket_sizes
        return self.saved_sizes


def write_hash_shard(index, sizes: np.ndarray) -> Callable[[Callable[[bytes], object]], None]:
    """A writer of a hash index followed by its bucket ``sizes`` (see the module docstring)."""
    payload = zlib.compress(np.asarray(sizes, dtype="<i8").tobytes())

    def write(sink: Callable[[bytes], object]) -> None:
        write_index(index, binary=True)(sink)
        sink(_SIZES_MAGIC)
        sink(payload)

    return write


def read_hash_shard(path) -> HashShard:
    """Open a hash shard file of either layout (told apart by its first bytes) with its bucket
    sizes: a sorted one memory-mapped, a FAISS one read into RAM with the sizes saved after its
    index. Raises ``RuntimeError`` (as FAISS does for a damaged index) when the file is damaged,
    or the saved sizes are, or do not count the index's entries."""
    with open(path, "rb") as handle:
        if handle.read(len(_SORTED_MAGIC)) == _SORTED_MAGIC:
            return HashShard(read_sorted_hash_shard(path), None)
        handle.seek(0)
        faiss = _faiss()
        index = faiss.read_index_binary(faiss.PyCallbackIOReader(handle.read))
        trailer = handle.read()  # FAISS stopped at the end of its own bytes
    if not trailer:
        return HashShard(index, None)
    sizes = _saved_sizes(trailer)
    if sizes is None or sizes.sum() != index.ntotal:
        raise RuntimeError("the bucket sizes saved after a hash index are damaged")
    return HashShard(index, sizes)


def _saved_sizes(trailer: bytes) -> np.ndarray | None:
    """The sizes a trailer holds, None when it is not one (zlib checks the payload)."""
    if not trailer.startswith(_SIZES_MAGIC):
        return None
    expected = 8 << KEY_BITS
    stream = zlib.decompressobj()
    try:
        # a damaged file must not inflate to any size: one byte over the expected is enough
        raw = stream.decompress(trailer[len(_SIZES_MAGIC) :], expected + 1)
    except zlib.error:
        return None
    if len(raw) != expected or not stream.eof or stream.unused_data:
        return None
    sizes = np.frombuffer(raw, dtype="<i8").astype(np.int64)
    return sizes if (sizes >= 0).all() else None


def load_indexes(
    hash_shards: list[HashShard],
    chroma_shards: list,
    live: np.ndarray,
    nprobe: int,
    quad_shards: Sequence[QuadShard] = (),
    probed_share: float = 0.0,
) -> LoadedIndexes:
    """A snapshot of loaded shards, their bucket sizes summed from the saved ones (counted from
    the index here only for a shard saved without them); each chroma shard probes ``nprobe``
    lists, or ``probed_share`` of its lists when more."""
    for index in chroma_shards:
        set_nprobe(index, nprobe, probed_share)
    sizes = np.zeros(1 << KEY_BITS, dtype=np.int64)
    has_key = []
    for shard in hash_shards:
        if isinstance(shard.index, SortedHashShard):
            sizes += shard.index.bucket_sizes
            has_key.append(None)
            continue
        saved = shard.bucket_sizes
        shard_sizes = bucket_sizes([shard.index]) if saved is None else saved
        sizes += shard_sizes
        has_key.append(shard_sizes > 0)
    return LoadedIndexes(
        [s.index for s in hash_shards], chroma_shards, live, sizes, has_key, list(quad_shards)
    )
