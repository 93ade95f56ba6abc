"""One shard's index files built from a stream of works in bounded memory.

A shard's hash and four-peak files hold every entry sorted by key and its chroma index every
segment vector. Built whole in RAM, one shard of 10^5 works held 11.9 GB (a re-key, session 14 of
``benchmarks/SCALING.md``). Here each work is hashed, quadded and segmented once, as it is reached.
Its entries are held up to :data:`SPILL_ENTRIES`, then appended to :data:`PARTITIONS` files by
their keys' top bits, in a spill folder inside the catalog's ``shards/`` (removed when the shard is
written). Each file is then written from one partition at a time, in key order, in two passes: the
first for the counts and checksums the header holds, the second for the entries.

The hash and four-peak files are byte for byte those :func:`audiodup.index.build_shard` writes.
So is the chroma index of a shard of up to :data:`CHROMA_TRAINING_VECTORS` vectors; a larger one is
trained on a fixed sample of that many (FAISS's k-means samples at most 256 points per list of
them anyway: all 2^20 for 4,096 lists, 64 a list for the 16,384 of the largest shards).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fingerprint import Fingerprint, fingerprint_hashes
from .hashes import KEY_BITS, pack_entry_ids
from .index import (
    chroma_dim,
    chroma_index_dim,
    new_chroma_index,
    pack_segment_ids,
    padded_columns,
    reference_segments,
    sorted_writer,
    write_index,
)
from .quads import bucket_bits, catalog_quads, mixed_keys, quad_writer, records_of
from .settings import Settings

PARTITION_BITS = 8
PARTITIONS = 1 << PARTITION_BITS
SPILL_ENTRIES = 1 << 21  # keyed entries held before they go to the partition files (~30 MB)
SPILL_ROWS = 1 << 18  # segment vectors held before they go to their file (~44 MB)
CHROMA_TRAINING_VECTORS = 1 << 20
CHROMA_CHUNK = 1 << 17  # segment vectors read back and added at a time (22 MB of float32)
SPILL_PREFIX = ".tmp-spill-"  # the spill folder's name in shards/ (what a crash leaves is swept)

Writer = Callable[[Callable[[bytes], object]], None]


class SpillFolder:
    """A folder made on first use inside ``parent`` and removed, with what it holds, on exit."""

    def __init__(self, parent: Path):
        self.parent = parent
        self._path: Path | None = None
        self._closed = False

    def path(self) -> Path:
        if self._closed:  # a writer called after its build: its spill is gone
            raise RuntimeError("a shard's files are written inside its build, not after it")
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX, dir=self.parent))
        return self._path

    def __enter__(self) -> SpillFolder:
        return self

    def __exit__(self, *exc) -> None:
        self._closed = True
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None


class _Spill:
    """Values and their int64 ids in insertion order, held until more than ``limit`` are, then
    handed to :meth:`_spill` (which writes and empties ``_values`` and ``_ids``)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.n, self.spilled = 0, False
        self._values: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []
        self._held = 0

    def add(self, values: np.ndarray, ids: np.ndarray) -> None:
        if not len(values):
            return
        self._values.append(self._as_stored(values))
        self._ids.append(np.asarray(ids, dtype="<i8"))
        self._held += len(values)
        self.n += len(values)
        if self._held > self.limit:
            self._spill()

    def _take_held(self) -> tuple[np.ndarray, np.ndarray]:
        values = np.concatenate(self._values or [self._empty()])
        ids = np.concatenate(self._ids or [np.zeros(0, "<i8")])
        self._values, self._ids, self._held = [], [], 0
        return values, ids

    def _as_stored(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _empty(self) -> np.ndarray:
        raise NotImplementedError

    def _spill(self) -> None:
        raise NotImplementedError


class KeySpill(_Spill):
    """``(key, id)`` entries in insertion order. Past ``limit`` held, they are appended to
    :data:`PARTITIONS` files by their keys' top bits, each in insertion order."""

    def __init__(self, folder: SpillFolder, name: str, key_bits: int, limit: int | None = None):
        self.folder, self.name, self.key_bits = folder, name, key_bits
        self.dtype = np.dtype("<u4" if key_bits <= 32 else "<u8")
        # a spilled four-peak file has 2 or more bits per partition (see quad_file)
        super().__init__(max(SPILL_ENTRIES if limit is None else limit, 1 << (PARTITION_BITS + 2)))

    def _as_stored(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values).astype(self.dtype, copy=False)

    def _empty(self) -> np.ndarray:
        return np.zeros(0, self.dtype)

    def _spill(self) -> None:
        keys, ids = self._take_held()
        part = (keys >> self.dtype.type(self.key_bits - PARTITION_BITS)).astype(np.intp)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(PARTITIONS + 1))
        keys, ids = keys[order], ids[order]
        folder = self.folder.path()
        for p in np.flatnonzero(np.diff(bounds)):
            lo, hi = bounds[p], bounds[p + 1]
            for kind, values in (("keys", keys), ("ids", ids)):
                with open(folder / f"{self.name}-{p}.{kind}", "ab") as out:
                    out.write(values[lo:hi].tobytes())
        self.spilled = True

    def partitions(self) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """``(p, n_partitions, keys, ids)`` of each partition in key order (partition ``p``
        holds keys from ``p * 2**key_bits / n_partitions``), its entries in insertion order.
        What was never spilled is one partition. May be iterated again."""
        if not self.spilled:
            keys, ids = self._take_held()
            self._values, self._ids = [keys], [ids]  # held again, for the next iteration
            yield 0, 1, keys, ids
            return
        if self._held:
            self._spill()
        folder = self.folder.path()
        for p in range(PARTITIONS):
            keys_path = folder / f"{self.name}-{p}.keys"
            if not keys_path.exists():
                yield p, PARTITIONS, np.zeros(0, self.dtype), np.zeros(0, "<i8")
                continue
            ids = np.fromfile(folder / f"{self.name}-{p}.ids", dtype="<i8")
            yield p, PARTITIONS, np.fromfile(keys_path, dtype=self.dtype), ids


class RowSpill(_Spill):
    """Rows of float32 vectors and their int64 ids in insertion order; past ``limit`` rows held
    they are appended to two files."""

    def __init__(self, folder: SpillFolder, dim: int, limit: int | None = None):
        self.folder, self.dim = folder, dim
        super().__init__(SPILL_ROWS if limit is None else limit)

    def _as_stored(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype="<f4").reshape(-1, self.dim)

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), "<f4")

    def _spill(self) -> None:
        rows, ids = self._take_held()
        folder = self.folder.path()
        for name, values in (("rows", rows), ("row-ids", ids)):
            with open(folder / name, "ab") as out:
                out.write(values.tobytes())
        self.spilled = True

    def chunks(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(first row, rows, ids)`` in insertion order, :data:`CHROMA_CHUNK` rows at a time."""
        size = CHROMA_CHUNK
        if not self.spilled:
            rows, ids = self._take_held()
            self._values, self._ids = [rows], [ids]  # held again, for the next iteration
            for start in range(0, len(rows), size):
                yield start, rows[start : start + size], ids[start : start + size]
            return
        if self._held:
            self._spill()
        folder = self.folder.path()
        row_bytes = 4 * self.dim
        for start in range(0, self.n, size):
            count = min(size, self.n - start)
            rows = np.fromfile(folder / "rows", "<f4", count * self.dim, offset=start * row_bytes)
            ids = np.fromfile(folder / "row-ids", "<i8", count, offset=start * 8)
            yield start, rows.reshape(count, self.dim), ids

    def sample(self, size: int) -> np.ndarray:
        """Every row when there are at most ``size``, else a fixed random ``size`` of them in
        insertion order."""
        if self.n <= size:
            return np.concatenate([self._empty()] + [rows for _, rows, _ in self.chunks()])
        chosen = np.sort(np.random.default_rng(0).choice(self.n, size, replace=False))
        picked = []
        for start, rows, _ in self.chunks():
            lo, hi = np.searchsorted(chosen, [start, start + len(rows)])
            picked.append(rows[chosen[lo:hi] - start])
        return np.concatenate(picked)


# -- the three files ---------------------------------------------------------------------------
def sorted_hash_file(spill: KeySpill) -> tuple[Writer, int]:
    """A writer of the sorted hash file of ``spill``'s triplet entries, and its entry count."""

    def slices():
        for p, n_parts, keys, ids in spill.partitions():
            width = (1 << KEY_BITS) // n_parts
            order = np.argsort(keys, kind="stable")  # stable: insertion order within a key
            yield p * width, (p + 1) * width, keys[order].astype(np.int64), ids[order]

    writer, n = sorted_writer(slices)
    if n != spill.n:
        raise AssertionError(f"the partitions hold {n} hash entries, not {spill.n}")
    return writer, n


def quad_file(spill: KeySpill) -> tuple[Writer, int]:
    """A writer of the four-peak file of ``spill``'s entries (keyed by their mixed 64-bit keys),
    and its entry count."""
    bits = bucket_bits(spill.n)
    if spill.spilled and bits < PARTITION_BITS:  # cannot happen: see KeySpill's limit
        raise AssertionError("a spilled four-peak file needs a bucket per partition at least")

    def slices():
        for p, n_parts, mixed, ids in spill.partitions():
            width = (1 << bits) // n_parts
            bucket, records = records_of(mixed, ids, bits)
            yield p * width, (p + 1) * width, bucket, records

    return quad_writer(bits, spill.n, slices)


def chroma_index(spill: RowSpill, settings: Settings, has_works: bool):
    """The chroma index of ``spill``'s segment vectors, trained on at most
    :data:`CHROMA_TRAINING_VECTORS` of them (None: no works at all, as the in-memory build)."""
    index = new_chroma_index(spill.sample(CHROMA_TRAINING_VECTORS) if has_works else None, settings)
    for _, rows, ids in spill.chunks():
        index.add_with_ids(padded_columns(rows, index.d), ids)
    return index


@dataclass
class ShardFiles:
    """One shard's files as writers, and what each work put in them. A writer makes its file
    only when called (the spilled entries read back then), so each file's whole parts (the
    hash sizes, the four-peak directory, the chroma codes) are let go before the next's."""

    write_hashes: Writer | None  # None: not hashed (a merge keeps the hash entries it has)
    n_hashes: int
    write_chroma: Writer
    n_segments: int
    write_quads: Writer
    counts: list[tuple[int, int, int]]  # (n_hashes, n_segments, work_id) per work


def build_shard_files(
    entries: Sequence[tuple[int, Fingerprint]],
    settings: Settings,
    folder: SpillFolder,
    *,
    hashes: bool = True,
) -> ShardFiles:
    """Hash, quad and segment each ``(work_id, fingerprint)`` once, as it is reached (a store's
    fingerprints are decoded then and let go), into spills that hold a bounded number of
    entries; ``hashes=False`` leaves the triplet hashes out."""
    triplets = KeySpill(folder, "hashes", KEY_BITS)
    quads = KeySpill(folder, "quads", 64)
    segments = RowSpill(folder, chroma_dim(settings))
    counts = []
    for work_id, fingerprint in entries:
        n_hashes = 0
        if hashes:
            found = fingerprint_hashes(fingerprint, settings)
            n_hashes = len(found)
            if n_hashes:
                triplets.add(found.keys, pack_entry_ids(work_id, found))
        _add_quads(quads, work_id, fingerprint, settings)
        vectors = reference_segments(fingerprint, settings)
        segments.add(vectors, pack_segment_ids(work_id, len(vectors)))
        counts.append((n_hashes, len(vectors), work_id))

    def write_chroma(sink: Callable[[bytes], object]) -> None:
        index = chroma_index(segments, settings, has_works=bool(counts))
        write_index(index, binary=False)(sink)

    return ShardFiles(
        _when_called(lambda: sorted_hash_file(triplets)) if hashes else None,
        triplets.n,
        write_chroma,
        segments.n,
        _when_called(lambda: quad_file(quads)),
        counts,
    )


def _when_called(make: Callable[[], tuple[Writer, int]]) -> Writer:
    def write(sink: Callable[[bytes], object]) -> None:
        make()[0](sink)

    return write


def regeneration_bytes(
    groups: Sequence[tuple[int, int]], chroma_dim: int, *, hashed: bool = True
) -> int:
    """Disk that building one shard per group of ``(n_hashes, n_segments)`` takes at its peak:
    every group's files, and the largest group's spill (a group's spill is removed once its
    shard is written). Four-peak entries are counted as many as triplet entries, as under the
    default ``hash_fanout`` (134.9 M and 135.1 M at 10^5 works); ``hashed=False``: the triplet
    entries are merged from the old shards, not spilled."""
    files = sum(_files_bytes(h, s, chroma_dim) for h, s in groups)
    spill = max((_spill_bytes(h, s, chroma_dim, hashed) for h, s in groups), default=0)
    return files + spill


def _files_bytes(n_hashes: int, n_segments: int, chroma_dim: int) -> int:
    hashes = 8 * n_hashes + min(16 * n_hashes, 8 << KEY_BITS) + 4096  # ids, zlib of the sizes
    quads = 10 * n_hashes + 4 * ((1 << bucket_bits(n_hashes)) + 1) + 4096  # records, directory
    width = chroma_index_dim(chroma_dim)
    # codes and ids, and at most one centroid a vector (4,096 lists at most by default)
    chroma = (width + 8) * n_segments + 4 * width * min(n_segments, 1 << 12) + 4096
    return hashes + quads + chroma


def _spill_bytes(n_hashes: int, n_segments: int, chroma_dim: int, hashed: bool) -> int:
    return (12 * n_hashes if hashed else 0) + 16 * n_hashes + (4 * chroma_dim + 8) * n_segments


def quad_file_of_works(
    entries: Sequence[tuple[int, Fingerprint]], settings: Settings, folder: SpillFolder
) -> Writer:
    """A writer of the four-peak file alone of ``(work_id, fingerprint)`` pairs."""
    quads = KeySpill(folder, "quads", 64)
    for work_id, fingerprint in entries:
        _add_quads(quads, work_id, fingerprint, settings)
    return _when_called(lambda: quad_file(quads))


def _add_quads(spill: KeySpill, work_id: int, fingerprint: Fingerprint, settings: Settings) -> None:
    keys, ids = catalog_quads(work_id, fingerprint, settings)
    spill.add(mixed_keys(keys), ids)
