"""Catalog storage: SQLite metadata and fingerprints, FAISS index shards on disk.

Layout of a catalog directory::

    catalog.sqlite        works, fingerprints (the source of truth), shard list, recipe
    shards/h-*.faiss      peak-triplet hashes, faiss.IndexBinaryHash, ids pack the evidence
    shards/c-*.faiss      chroma segment vectors, index chosen by a FAISS factory string
    catalog.lock          single-writer lock

Every batch of new works becomes a new immutable pair of shard files, written under a temporary
name, fsynced and renamed *before* the SQLite transaction that references them commits. A crash
at any moment leaves either the old or the new catalog; unreferenced files are swept by the next
writer. Removal is a tombstone; compaction and ``rebuild`` regenerate shards from the stored
fingerprints.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
from filelock import FileLock, Timeout

from .chroma import N_CHROMA_COEFFS, segment_vectors
from .errors import CatalogError, RecipeMismatchError
from .fingerprint import Fingerprint, fingerprint_hashes
from .hashes import KEY_BITS, keys_to_codes, pack_entry_ids
from .results import WorkInfo
from .settings import Settings

SCHEMA_VERSION = "1"
CHROMA_DIM = int(np.prod(N_CHROMA_COEFFS))
_SEGMENT_BITS = 20
_HASH_BUCKET_BITS = 24
_LOCK_TIMEOUT_S = 600.0
_BUSY_TIMEOUT_S = 60.0
_FOLD_LOG_WAIT_MS = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shards (
    shard_id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash_file TEXT NOT NULL, chroma_file TEXT NOT NULL,
    n_hashes INTEGER NOT NULL, n_segments INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS works (
    work_id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL, title TEXT, artist TEXT, duration_s REAL NOT NULL,
    sha256 TEXT NOT NULL, recipe TEXT NOT NULL, added_at TEXT NOT NULL,
    file_size INTEGER, file_mtime REAL, metadata TEXT NOT NULL DEFAULT '{}',
    removed INTEGER NOT NULL DEFAULT 0, shard_id INTEGER,
    n_hashes INTEGER NOT NULL, n_segments INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS works_live_sha ON works(sha256) WHERE removed = 0;
CREATE INDEX IF NOT EXISTS works_path ON works(path);
CREATE TABLE IF NOT EXISTS fingerprints (work_id INTEGER PRIMARY KEY, blob BLOB NOT NULL);
"""


@dataclass(frozen=True)
class NewWork:
    """A fingerprinted file waiting to be committed."""

    path: str
    sha256: str
    duration_s: float
    fingerprint: Fingerprint
    title: str | None = None
    artist: str | None = None
    file_size: int | None = None
    file_mtime: float | None = None
    metadata: dict = field(default_factory=dict)


@dataclass
class LoadedIndexes:
    """A consistent snapshot of the searchable indexes."""

    hash_shards: list
    chroma_shards: list
    live: np.ndarray  # bool, indexed by work_id
    bucket_sizes: np.ndarray  # entries per hash key over all hash shards


def bucket_sizes(hash_shards: list) -> np.ndarray:
    """Entries per hash key, summed over the shards (one exact look-up of every possible key)."""
    sizes = np.zeros(1 << KEY_BITS, dtype=np.int64)
    every_key = keys_to_codes(np.arange(1 << KEY_BITS, dtype=np.uint32))
    for shard in hash_shards:
        if shard.ntotal:
            lims, _, _ = shard.range_search(every_key, 1)
            sizes += np.diff(lims).astype(np.int64)
    return sizes


def pack_segment_ids(work_id: int, n_segments: int) -> np.ndarray:
    return (np.int64(work_id) << _SEGMENT_BITS) | np.arange(n_segments, dtype=np.int64)


def unpack_segment_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64)
    return ids >> _SEGMENT_BITS, ids & ((1 << _SEGMENT_BITS) - 1)


def reference_segments(fingerprint: Fingerprint, settings: Settings) -> np.ndarray:
    vectors, _ = segment_vectors(
        fingerprint.chroma,
        settings.chroma_fps,
        settings.segment_s,
        settings.segment_hop_s,
        settings.segment_steps,
    )
    return vectors


class CatalogStore:
    """SQLite + FAISS shards behind a narrow interface. Not shared between processes."""

    def __init__(self, root: Path, settings: Settings, *, create: bool = True):
        self.root = Path(root)
        self.settings = settings
        db_path = self.root / "catalog.sqlite"
        if not db_path.exists():
            if not create:
                raise CatalogError(f"no catalog at {self.root} (run 'audiodup index add' first)")
            try:
                (self.root / "shards").mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CatalogError(
                    f"cannot create catalog at {self.root}: {exc.strerror}"
                ) from None
        self._lock = FileLock(str(self.root / "catalog.lock"), timeout=_LOCK_TIMEOUT_S)
        try:
            self.db = sqlite3.connect(str(db_path), timeout=_BUSY_TIMEOUT_S, isolation_level=None)
            self._use_write_ahead_log()
            self.db.execute("PRAGMA synchronous=FULL")
            with self.write_lock():
                self.db.executescript(_SCHEMA)
                self._check_recipe()
                self._sweep_orphans()
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"catalog database at {db_path} is damaged: {exc}") from None

    def _use_write_ahead_log(self) -> None:
        """Switch the journal to write-ahead logging. SQLite answers "locked" at once, without
        waiting, while another connection holds the journal (a writer folding its log, or a
        process racing to create the catalog), so this waits as a busy connection would."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # -- locking and transactions -------------------------------------------------------------
    @contextmanager
    def write_lock(self) -> Iterator[None]:
        try:
            with self._lock:
                yield
        except Timeout:
            raise CatalogError(f"catalog {self.root} is locked by another writer") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _check_recipe(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'recipe'").fetchone()
        if row is None:
            with self._transaction() as db:
                db.execute("INSERT INTO meta VALUES ('recipe', ?)", (self.settings.recipe,))
                db.execute("INSERT INTO meta VALUES ('settings', ?)", (self.settings.to_json(),))
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != self.settings.recipe:
            raise RecipeMismatchError(
                f"catalog {self.root} was built with fingerprint recipe {row[0]!r}, this audiodup "
                f"uses {self.settings.recipe!r}; rebuild it with the files (index add) into a new "
                "catalog"
            )

    def close(self) -> None:
        # fold the write-ahead log back into the database file (skipped while others read)
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.db.close()

    # -- queries -------------------------------------------------------------------------------
    def find_live_sha(self, sha256: str) -> int | None:
        row = self.db.execute(
            "SELECT work_id FROM works WHERE sha256 = ? AND removed = 0", (sha256,)
        ).fetchone()
        return None if row is None else int(row[0])

    def find_unchanged_file(self, path: str, size: int, mtime: float) -> int | None:
        row = self.db.execute(
            "SELECT work_id FROM works WHERE path = ? AND file_size = ? AND file_mtime = ? "
            "AND removed = 0",
            (path, size, mtime),
        ).fetchone()
        return None if row is None else int(row[0])

    def works(self) -> list[WorkInfo]:
        rows = self.db.execute(
            "SELECT work_id, path, title, artist, duration_s, sha256, added_at, metadata "
            "FROM works WHERE removed = 0 ORDER BY work_id"
        ).fetchall()
        return [_work_info(r) for r in rows]

    def work(self, work_id: int) -> WorkInfo | None:
        row = self.db.execute(
            "SELECT work_id, path, title, artist, duration_s, sha256, added_at, metadata "
            "FROM works WHERE work_id = ? AND removed = 0",
            (work_id,),
        ).fetchone()
        return None if row is None else _work_info(row)

    def fingerprint(self, work_id: int) -> Fingerprint:
        row = self.db.execute(
            "SELECT blob FROM fingerprints WHERE work_id = ?", (work_id,)
        ).fetchone()
        if row is None:
            raise CatalogError(f"work {work_id} has no stored fingerprint")
        return Fingerprint.from_bytes(row[0])

    def load_indexes(self, attempts: int = 5) -> LoadedIndexes:
        """Read every shard listed in one SQLite snapshot (retrying if a compaction raced us)."""
        for attempt in range(attempts):
            self.db.execute("BEGIN")
            try:
                shards = self.db.execute(
                    "SELECT hash_file, chroma_file FROM shards ORDER BY shard_id"
                ).fetchall()
                live_ids = [
                    r[0] for r in self.db.execute("SELECT work_id FROM works WHERE removed = 0")
                ]
                max_id = self.db.execute("SELECT MAX(work_id) FROM works").fetchone()[0] or 0
            finally:
                self.db.execute("COMMIT")
            try:
                hash_shards = [
                    faiss.read_index_binary(str(self.root / "shards" / h)) for h, _ in shards
                ]
                chroma_shards = [faiss.read_index(str(self.root / "shards" / c)) for _, c in shards]
                for index in chroma_shards:
                    _set_nprobe(index, self.settings.chroma_nprobe)
            except RuntimeError as exc:
                if attempt + 1 < attempts and "No such file" in str(exc):
                    time.sleep(0.2)
                    continue
                raise CatalogError(
                    f"catalog index files are damaged or missing ({str(exc).splitlines()[0]}); "
                    "run 'audiodup index rebuild'"
                ) from None
            live = np.zeros(max_id + 1, dtype=bool)
            live[np.asarray(live_ids, dtype=np.int64)] = True
            return LoadedIndexes(hash_shards, chroma_shards, live, bucket_sizes(hash_shards))
        raise CatalogError("catalog kept changing while loading; try again")

    # -- writes --------------------------------------------------------------------------------
    def commit_batch(self, items: list[NewWork]) -> list[tuple[int, bool]]:
        """Store new works atomically. Returns ``(work_id, added)`` per item; ``added`` is False
        when identical audio was already present."""
        out: list[tuple[int, bool]] = []
        with self.write_lock():
            fresh: list[tuple[int, NewWork]] = []
            self.db.execute("BEGIN IMMEDIATE")
            try:
                seen: dict[str, int] = {}
                for item in items:
                    existing = self.find_live_sha(item.sha256) or seen.get(item.sha256)
                    if existing is not None:
                        out.append((existing, False))
                        continue
                    work_id = self._insert_work(item)
                    seen[item.sha256] = work_id
                    fresh.append((work_id, item))
                    out.append((work_id, True))
                if fresh:
                    self._write_shard([(w, it.fingerprint) for w, it in fresh])
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            if fresh:
                self._maybe_compact()
                self._fold_log()
        return out

    def _insert_work(self, item: NewWork) -> int:
        """Insert the work's row and fingerprint; ``_write_shard`` fills in its index counts."""
        cursor = self.db.execute(
            "INSERT INTO works (path, title, artist, duration_s, sha256, recipe, added_at, "
            "file_size, file_mtime, metadata, n_hashes, n_segments) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item.path,
                item.title,
                item.artist,
                item.duration_s,
                item.sha256,
                self.settings.recipe,
                _now(),
                item.file_size,
                item.file_mtime,
                json.dumps(item.metadata),
                0,
                0,
            ),
        )
        work_id = int(cursor.lastrowid)
        self.db.execute(
            "INSERT INTO fingerprints VALUES (?, ?)", (work_id, item.fingerprint.to_bytes())
        )
        return work_id

    def _write_shard(self, entries: list[tuple[int, Fingerprint]]) -> int:
        """Build both index files for ``entries``, put them in place, record the shard and point
        its works at it with their entry counts (inside the caller's transaction)."""
        hash_index = faiss.IndexBinaryHash(32, _HASH_BUCKET_BITS)
        vectors, vector_ids, counts, n_hashes = [], [], [], 0
        for work_id, fingerprint in entries:
            hashes = fingerprint_hashes(fingerprint, self.settings)
            if len(hashes):
                hash_index.add_with_ids(keys_to_codes(hashes.keys), pack_entry_ids(work_id, hashes))
                n_hashes += len(hashes)
            segments = reference_segments(fingerprint, self.settings)
            vectors.append(segments)
            vector_ids.append(pack_segment_ids(work_id, len(segments)))
            counts.append((len(hashes), len(segments), work_id))
        chroma_index = self._chroma_index(np.concatenate(vectors) if vectors else None)
        all_vectors = np.concatenate(vectors).astype(np.float32)
        if len(all_vectors):
            chroma_index.add_with_ids(all_vectors, np.concatenate(vector_ids))
        token = uuid.uuid4().hex[:12]
        hash_file, chroma_file = f"h-{token}.faiss", f"c-{token}.faiss"
        self._put_file(hash_file, lambda p: faiss.write_index_binary(hash_index, p))
        self._put_file(chroma_file, lambda p: faiss.write_index(chroma_index, p))
        cursor = self.db.execute(
            "INSERT INTO shards (hash_file, chroma_file, n_hashes, n_segments, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (hash_file, chroma_file, n_hashes, len(all_vectors), _now()),
        )
        shard_id = int(cursor.lastrowid)
        self.db.executemany(
            "UPDATE works SET n_hashes = ?, n_segments = ?, shard_id = ? WHERE work_id = ?",
            [(h, n, shard_id, w) for h, n, w in counts],
        )
        return shard_id

    def _chroma_index(self, training: np.ndarray | None):
        settings = self.settings
        n_vectors = 0 if training is None else len(training)
        lists = ivf_lists(n_vectors, settings.chroma_vectors_per_list)
        factory = settings.chroma_index_factory.format(nlist=max(lists, settings.chroma_min_lists))
        index = faiss.index_factory(CHROMA_DIM, factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            vectors = np.asarray(training, dtype=np.float32).reshape(-1, CHROMA_DIM)
            if len(vectors) < _min_training_vectors(index):
                # too few vectors to train this index type well: 8-bit scalar quantisation needs
                # only each dimension's range (exact float storage when there is nothing at all)
                small = "SQ8" if len(vectors) else "Flat"
                index = faiss.index_factory(CHROMA_DIM, small, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                index.train(vectors)
        try:
            faiss.extract_index_ivf(index)  # IVF indexes take ids themselves
        except RuntimeError:
            index = faiss.IndexIDMap2(index)
        return index

    def _put_file(self, name: str, write) -> None:
        final = self.root / "shards" / name
        tmp = final.with_name(f".tmp-{name}")
        write(str(tmp))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)

    def _maybe_compact(self) -> None:
        count = self.db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
        if count > self.settings.max_shards:
            self.compact(keep_largest=True)

    def compact(self, keep_largest: bool = False) -> None:
        """Merge shards into one, dropping removed works. Caller holds the write lock."""
        shards = self.db.execute(
            "SELECT shard_id, n_hashes FROM shards ORDER BY n_hashes DESC"
        ).fetchall()
        merge = [s for s, _ in (shards[1:] if keep_largest else shards)]
        if keep_largest and len(merge) < 2:
            return
        self._regenerate(merge)

    def _regenerate(self, shard_ids: list[int] | None) -> None:
        """Replace the given shards (None: all) by one shard built from stored fingerprints."""
        where = (
            ""
            if shard_ids is None
            else (f"AND shard_id IN ({','.join(str(int(s)) for s in shard_ids)})")
        )
        ids = [
            r[0]
            for r in self.db.execute(
                f"SELECT work_id FROM works WHERE removed = 0 {where} ORDER BY work_id"
            )
        ]
        old = self.db.execute(
            "SELECT shard_id, hash_file, chroma_file FROM shards"
            + (
                ""
                if shard_ids is None
                else f" WHERE shard_id IN ({','.join(str(int(s)) for s in shard_ids)})"
            )
        ).fetchall()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if ids:
                self._write_shard([(w, self.fingerprint(w)) for w in ids])
            for shard_id, _, _ in old:
                self.db.execute("DELETE FROM shards WHERE shard_id = ?", (shard_id,))
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        for _, hash_file, chroma_file in old:
            for name in (hash_file, chroma_file):
                (self.root / "shards" / name).unlink(missing_ok=True)

    def rebuild(self) -> None:
        """Regenerate every index file from the fingerprints stored in SQLite."""
        with self.write_lock():
            self._regenerate(None)
            self._sweep_orphans()
            self._fold_log()

    def _fold_log(self) -> None:
        """Copy the write-ahead log into the database and truncate it, so a catalog at rest takes
        its own size on disk (the log otherwise stays as large as the biggest batch). Skipped when
        readers still hold old snapshots after a short wait; the next write tries again."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute(f"PRAGMA busy_timeout = {_FOLD_LOG_WAIT_MS}")
            try:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self.db.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")

    def remove(self, work_id: int) -> bool:
        with self.write_lock(), self._transaction() as db:
            cursor = db.execute(
                "UPDATE works SET removed = 1 WHERE work_id = ? AND removed = 0", (work_id,)
            )
            return cursor.rowcount > 0

    def _sweep_orphans(self) -> None:
        """Delete shard files that no committed row references (left by a crash)."""
        referenced = set()
        for hash_file, chroma_file in self.db.execute("SELECT hash_file, chroma_file FROM shards"):
            referenced.update((hash_file, chroma_file))
        for path in (self.root / "shards").glob("*"):
            if path.name not in referenced:
                path.unlink(missing_ok=True)

    # -- reporting -----------------------------------------------------------------------------
    def stats(self) -> dict:
        works, seconds = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(duration_s), 0) FROM works WHERE removed = 0"
        ).fetchone()
        n_hashes, n_segments, n_shards = self.db.execute(
            "SELECT COALESCE(SUM(n_hashes), 0), COALESCE(SUM(n_segments), 0), COUNT(*) FROM shards"
        ).fetchone()
        index_bytes = sum(p.stat().st_size for p in (self.root / "shards").glob("*.faiss"))
        catalog_bytes = index_bytes + sum(
            p.stat().st_size for p in self.root.glob("catalog.sqlite*")
        )
        return {
            "works": works,
            "seconds": seconds,
            "index_bytes": index_bytes,
            "catalog_bytes": catalog_bytes,
            "hash_entries": n_hashes,
            "chroma_vectors": n_segments,
            "shards": n_shards,
        }

    def verify(self) -> list[str]:
        """Integrity problems found (empty when the catalog is sound)."""
        problems = []
        if (row := self.db.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
            problems.append(f"sqlite integrity check: {row}")
        orphans = self.db.execute(
            "SELECT COUNT(*) FROM works w LEFT JOIN fingerprints f USING (work_id) "
            "WHERE f.work_id IS NULL"
        ).fetchone()[0]
        if orphans:
            problems.append(f"{orphans} works have no stored fingerprint")
        for (work_id,) in self.db.execute("SELECT work_id FROM works WHERE removed = 0").fetchall():
            try:
                self.fingerprint(work_id)
            except CatalogError as exc:
                problems.append(f"work {work_id}: {exc}")
        unindexed = self.db.execute(
            "SELECT COUNT(*) FROM works WHERE removed = 0 AND (shard_id IS NULL OR shard_id NOT "
            "IN (SELECT shard_id FROM shards))"
        ).fetchone()[0]
        if unindexed:
            problems.append(f"{unindexed} works are in no index shard")
        for shard_id, hash_file, chroma_file, n_hashes, n_segments in self.db.execute(
            "SELECT shard_id, hash_file, chroma_file, n_hashes, n_segments FROM shards"
        ).fetchall():
            try:
                hashes = faiss.read_index_binary(str(self.root / "shards" / hash_file))
                chroma = faiss.read_index(str(self.root / "shards" / chroma_file))
            except RuntimeError as exc:
                problems.append(f"shard {shard_id}: unreadable index ({str(exc).splitlines()[0]})")
                continue
            expected = self.db.execute(
                "SELECT COALESCE(SUM(n_hashes), 0), COALESCE(SUM(n_segments), 0) FROM works "
                "WHERE shard_id = ?",
                (shard_id,),
            ).fetchone()
            if (hashes.ntotal, chroma.ntotal) != (n_hashes, n_segments) or (
                n_hashes,
                n_segments,
            ) != tuple(expected):
                problems.append(
                    f"shard {shard_id}: index holds {hashes.ntotal} hashes / {chroma.ntotal} "
                    f"vectors, catalog expects {expected[0]} / {expected[1]}"
                )
        return problems


def ivf_lists(n_vectors: int, per_list: int) -> int:
    """The power of two of inverted lists that keeps about ``per_list`` vectors in each: search
    cost per probed list stays flat as the shard grows."""
    return 1 << max(int(np.log2(max(n_vectors // per_list, 1))), 0)


def _min_training_vectors(index) -> int:
    """FAISS wants about 39 training vectors per IVF list; other trained indexes need a few."""
    try:
        return 39 * faiss.extract_index_ivf(index).nlist
    except RuntimeError:
        return 256


def _set_nprobe(index, nprobe: int) -> None:
    with contextlib.suppress(RuntimeError):  # not an IVF index
        faiss.extract_index_ivf(index).nprobe = nprobe


def _work_info(row) -> WorkInfo:
    return WorkInfo(
        work_id=int(row[0]),
        path=row[1],
        title=row[2],
        artist=row[3],
        duration_s=float(row[4]),
        sha256=row[5],
        added_at=row[6],
        metadata=json.loads(row[7] or "{}"),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


assert KEY_BITS <= _HASH_BUCKET_BITS <= 32
