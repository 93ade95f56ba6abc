"""The searchable indexes: the one module that talks to FAISS.

A shard is a pair of FAISS indexes built from fingerprints: a hash index (``IndexBinaryHash``,
exact buckets of 32-bit triplet keys whose ids pack work, anchor time, frequency and span) and a
chroma index (segment vectors, chosen by the recipe's FAISS factory string, ids packing work and
segment). :mod:`audiodup.store` keeps the shard files, SQLite and locking; it calls
:func:`build_shard` to make a shard, :func:`write_hash_shard` / :func:`read_hash_shard` and
:func:`write_index` / :func:`read_index` to move one to and from disk, and hands readers a
:class:`LoadedIndexes`. :mod:`audiodup.match` sees only the typed look-ups below
(:class:`HashHits`, :class:`ChromaHits`), so another backend (memory-mapped files, LMDB, shards on
workers) needs only to provide the same methods.

A hash shard's bucket sizes (entries per key, which the look-up reads before every search) are
counted from the hashes when the shard is built and saved in its hash file, after the index:
``FAISS index | _SIZES_MAGIC | zlib(int64 sizes)``. FAISS reads exactly its own bytes and ignores
what follows, so the file stays a plain FAISS file for any reader, and the sizes are put in place
by the same atomic rename as the index they count. Files written before this (no trailer) load
with their sizes counted from the index, as then.
"""

from __future__ import annotations

import contextlib
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .chroma import N_CHROMA_COEFFS, segment_vectors
from .fingerprint import Fingerprint, fingerprint_hashes
from .hashes import KEY_BITS, keys_to_codes, pack_entry_ids
from .settings import Settings

CHROMA_DIM = int(np.prod(N_CHROMA_COEFFS))  # of the default recipe; see chroma_dim()
_SEGMENT_BITS = 20
_HASH_BUCKET_BITS = 24
assert KEY_BITS <= _HASH_BUCKET_BITS <= 32
_SIZES_MAGIC = b"\x00audiodup bucket sizes v1\x00"


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


@dataclass
class LoadedIndexes:
    """A consistent snapshot of the searchable indexes."""

    hash_shards: list
    chroma_shards: list
    live: np.ndarray  # bool, indexed by work_id
    bucket_sizes: np.ndarray  # entries per hash key over all hash shards
    # per hash shard, whether it holds each key (None: not known, every shard is asked): a key
    # is looked up only in the shards that hold it, a fraction of them in a catalog of many
    shard_has_key: list[np.ndarray] | None = None

    @property
    def n_hash_entries(self) -> int:
        return int(sum(shard.ntotal for shard in self.hash_shards))

    @property
    def has_chroma(self) -> bool:
        return bool(self.chroma_shards)

    def is_live(self, work_ids: np.ndarray) -> np.ndarray:
        """Whether each work id names a work that is in the catalog and not removed."""
        work_ids = np.asarray(work_ids, dtype=np.int64)
        return (work_ids < len(self.live)) & self.live[np.minimum(work_ids, len(self.live) - 1)]

    def lookup_hashes(self, keys: np.ndarray) -> HashHits | None:
        """Every stored entry whose key equals one of ``keys`` (None: no keys, or no entries)."""
        keys = np.asarray(keys, dtype=np.uint32)
        rows, ids = [], []
        for i, shard in enumerate(self.hash_shards):
            if shard.ntotal == 0 or len(keys) == 0:
                continue
            # the same hits, in the same order, as asking the shard for every key
            asked = np.arange(len(keys))
            if self.shard_has_key is not None:
                asked = asked[self.shard_has_key[i][keys]]
            lims, _, labels = shard.range_search(keys_to_codes(keys[asked]), 1)
            rows.append(np.repeat(asked, np.diff(lims).astype(np.int64)))
            ids.append(labels)
        if not ids:
            return None
        return HashHits(np.concatenate(rows).astype(np.int64), np.concatenate(ids))

    def search_chroma(self, vectors: np.ndarray, k: int) -> ChromaHits | None:
        """The ``k`` nearest segments of each vector in every chroma shard (None: no segments)."""
        sims, labels = [], []
        for shard in self.chroma_shards:
            if shard.ntotal == 0:
                continue
            d, i = shard.search(vectors, min(k, shard.ntotal))
            sims.append(d)
            labels.append(i)
        if not sims:
            return None
        sims, labels = np.concatenate(sims, axis=1), np.concatenate(labels, axis=1)
        works, segments = unpack_segment_ids(np.where(labels < 0, 0, labels))
        valid = (labels >= 0) & self.is_live(works)
        return ChromaHits(sims, works, segments, valid)


def bucket_sizes(hash_shards: list) -> np.ndarray:
    """Entries per hash key, summed over the shards (one exact look-up of every possible key:
    for shards saved without their sizes, and to check saved ones)."""
    sizes = np.zeros(1 << KEY_BITS, dtype=np.int64)
    every_key = keys_to_codes(np.arange(1 << KEY_BITS, dtype=np.uint32))
    for shard in hash_shards:
        if shard.ntotal:
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


@dataclass
class BuiltShard:
    """The two FAISS indexes of one shard and what each work put in them."""

    hash_index: object
    chroma_index: object
    counts: list[tuple[int, int, int]]  # (n_hashes, n_segments, work_id) per work
    n_hashes: int
    n_segments: int
    bucket_sizes: np.ndarray  # int64 entries per hash key, counted from the hashes added


def build_shard(entries: list[tuple[int, Fingerprint]], settings: Settings) -> BuiltShard:
    """Hash and segment each ``(work_id, fingerprint)`` and index them."""
    hash_index = _faiss().IndexBinaryHash(32, _HASH_BUCKET_BITS)
    vectors, vector_ids, counts, n_hashes = [], [], [], 0
    sizes = count_keys(np.zeros(0, dtype=np.int64))
    for work_id, fingerprint in entries:
        hashes = fingerprint_hashes(fingerprint, settings)
        if len(hashes):
            hash_index.add_with_ids(keys_to_codes(hashes.keys), pack_entry_ids(work_id, hashes))
            n_hashes += len(hashes)
            sizes += count_keys(hashes.keys)
        segments = reference_segments(fingerprint, settings)
        vectors.append(segments)
        vector_ids.append(pack_segment_ids(work_id, len(segments)))
        counts.append((len(hashes), len(segments), work_id))
    chroma_index = new_chroma_index(np.concatenate(vectors) if vectors else None, settings)
    all_vectors = np.concatenate(vectors).astype(np.float32)
    if len(all_vectors):
        chroma_index.add_with_ids(all_vectors, np.concatenate(vector_ids))
    return BuiltShard(hash_index, chroma_index, counts, n_hashes, len(all_vectors), sizes)


def new_chroma_index(training: np.ndarray | None, settings: Settings):
    """An empty chroma index of the recipe's factory string, trained on ``training``."""
    n_vectors = 0 if training is None else len(training)
    lists = ivf_lists(n_vectors, settings.chroma_vectors_per_list)
    factory = settings.chroma_index_factory.format(nlist=max(lists, settings.chroma_min_lists))
    dim = chroma_dim(settings)
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


def set_nprobe(index, nprobe: int) -> None:
    """Inverted lists probed per chroma search (no effect on an index without lists)."""
    with contextlib.suppress(RuntimeError):  # not an IVF index
        _faiss().extract_index_ivf(index).nprobe = nprobe


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


@dataclass(frozen=True)
class HashShard:
    """A hash index read from its file with the bucket sizes saved in it (``None``: a file
    written before sizes were saved)."""

    index: object
    bucket_sizes: np.ndarray | None


def write_hash_shard(index, sizes: np.ndarray) -> Callable[[Callable[[bytes], object]], None]:
    """A writer of a hash index followed by its bucket ``sizes`` (see the module docstring)."""
    payload = zlib.compress(np.asarray(sizes, dtype="<i8").tobytes())

    def write(sink: Callable[[bytes], object]) -> None:
        write_index(index, binary=True)(sink)
        sink(_SIZES_MAGIC)
        sink(payload)

    return write


def read_hash_shard(path) -> HashShard:
    """Read a hash shard file and the bucket sizes saved after its index. Raises
    ``RuntimeError`` (as FAISS does for a damaged index) when the saved sizes are damaged or do
    not count the index's entries."""
    with open(path, "rb") as handle:
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
    hash_shards: list[HashShard], chroma_shards: list, live: np.ndarray, nprobe: int
) -> LoadedIndexes:
    """A snapshot of loaded shards, their bucket sizes summed from the saved ones (counted from
    the index here only for a shard saved without them)."""
    for index in chroma_shards:
        set_nprobe(index, nprobe)
    sizes = np.zeros(1 << KEY_BITS, dtype=np.int64)
    has_key = []
    for shard in hash_shards:
        saved = shard.bucket_sizes
        shard_sizes = bucket_sizes([shard.index]) if saved is None else saved
        sizes += shard_sizes
        has_key.append(shard_sizes > 0)
    return LoadedIndexes([s.index for s in hash_shards], chroma_shards, live, sizes, has_key)
