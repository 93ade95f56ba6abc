"""Catalog storage: SQLite metadata and fingerprints, FAISS index shards on disk.

Layout of a catalog directory::

    catalog.sqlite        works (content) and their fingerprints (the source of truth), the
                          upload ledger, shard list, recipe
    shards/h-*.sorted     peak-triplet hashes: entry ids (packing the evidence) sorted by key
                          and the offset of every key, memory-mapped by readers
                          (the layout: audiodup.index; built in bounded memory:
                          audiodup.shard_build)
    shards/h-*.faiss      the same in catalogs written before: faiss.IndexBinaryHash, then the
                          hash bucket sizes (audiodup.index.write_hash_shard); still read,
                          rewritten as h-*.sorted by rebuild and compaction
    shards/c-*.faiss      chroma segment vectors, index chosen by a FAISS factory string
    catalog.lock          single-writer lock

Every batch of new works becomes a new immutable pair of shard files, written under a temporary
name, fsynced and renamed *before* the SQLite transaction that references them commits. A crash
at any moment leaves either the old or the new catalog; the files it leaves are removed by the
next writer. Removal is a tombstone; ``rebuild`` regenerates shards from the stored
fingerprints, and compaction too, except that it merges sorted hash files as they are. A catalog
split into shard groups (``split_shards``, for :mod:`audiodup.sharded`) keeps every shard within
one group (``work_id % n_groups``): new works, compaction and ``rebuild`` write one shard per
group.

Opening never takes the writer lock: screening, listing and verifying go on while a writer holds
it. Each write takes the lock and, holding it, removes what interrupted writes left: unreferenced
files of the catalog's own names (``h-``/``c-`` + 12 hex digits + ``.faiss``, ``h-`` + 12 hex
digits + ``.sorted``, and their ``.tmp-`` versions), never anything else. A catalog is created
only in a new or empty folder. A catalog on a read-only folder, or on a full disk where SQLite
cannot make the shared-memory file of its write-ahead log, is opened read-only (immutable when
the log is empty). SQLite and file errors
become typed ``CatalogError`` s that name the cause (:func:`catalog_error`): only SQLite's own
corruption reports say "damaged".
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .compaction import shards_to_merge
from .durable import fsync_folder, replace_file
from .errors import (
    CatalogBusyError,
    CatalogDamagedError,
    CatalogError,
    CatalogReadOnlyError,
    DiskFullError,
    RecipeMismatchError,
)
from .fingerprint import Fingerprint
from .index import (  # noqa: F401  (re-exported: LoadedIndexes and the id packing lived here)
    CHROMA_DIM,
    LoadedIndexes,
    SortedHashShard,
    bucket_sizes,
    build_shard,
    chroma_dim,
    chroma_index_dim,
    faiss_hash_index,
    ivf_lists,
    load_indexes,
    merge_sorted_hash_shards,
    new_chroma_index,
    pack_segment_ids,
    padded_chroma_index,
    read_chroma_index,
    read_hash_shard,
    read_index,
    reference_segments,
    sorted_ids_intact,
    unpack_segment_ids,
    write_hash_shard,
    write_index,
    write_sorted_hash_shard,
)
from .quads import QuadShard, quad_file_of, read_quad_shard, write_quad_shard
from .results import (
    REVIEW_LABELS,
    CatalogStats,
    ReviewDecision,
    UploadInfo,
    WorkInfo,
    path_text,
)
from .settings import (
    Settings,
    recipe_differences,
    recipe_matches,
    rekeyable,
    rekeyed_settings_json,
    stored_recipe_fields,
)
from .shard_build import (
    SPILL_PREFIX,
    ShardFiles,
    SpillFolder,
    build_shard_files,
    quad_file_of_works,
    regeneration_bytes,
)

SCHEMA_VERSION = "2"  # 2: the upload ledger (table uploads)
_LOCK_TIMEOUT_S = 600.0
_BUSY_TIMEOUT_S = 60.0
_FOLD_LOG_WAIT_MS = 200

_DB_FILE = "catalog.sqlite"
DB_FILE = _DB_FILE  # the service checks that the file at this name is the one it opened
_LOCK_FILE = "catalog.lock"


def require_catalog_folder(root: Path) -> None:
    """Raise ``CatalogError`` unless ``root`` holds a catalog's database (however sound)."""
    if not (Path(root) / _DB_FILE).is_file():
        raise CatalogError(f"no catalog at {path_text(root)} (run 'audiodup index add' first)")


# what a command that meets a damaged database adds to its error ('index verify' leaves it out)
VERIFY_HINT = "; 'audiodup index verify' lists the problems"
# the catalog folder's SQLite files: the catalog's, the rescan results, the service's rate limits
_SQLITE_FILE = re.compile(r".+\.sqlite(-wal|-shm|-journal)?")
OWN_DATABASE_FILE = "one of the catalog's own database files: never read as audio"
_SHARDS = "shards"
MAX_SHARD_GROUPS = 4096
# the only names the catalog writes in shards/ (_write_shard, _put_file): sweeping is limited to
# them, so a user's file or folder that ends up there is never deleted
_OWN_SHARD_FILE = re.compile(
    r"(?:\.tmp-)?(?:[hc]-[0-9a-f]{12}\.faiss|h-[0-9a-f]{12}\.sorted|q-[0-9a-f]{12}\.quads)"
)
# the folder a shard's build spills its entries to while it runs (audiodup.shard_build)
_SPILL_FOLDER = re.compile(re.escape(SPILL_PREFIX) + r"[a-z0-9_]{8}")  # tempfile.mkdtemp's names
# the folder a merge builds its shard in, outside the writer lock (merge_due_shards), and the
# lock its merger holds meanwhile: one merge at a time, and a sweep spares the folder
_MERGE_PREFIX = ".merge-"
_QUADS_FROM = "quads_from_shard"  # meta: the first shard id with a four-peak file
_MERGE_FOLDER = re.compile(re.escape(_MERGE_PREFIX) + r"[0-9a-f]{12}")
_MERGE_LOCK_FILE = "merge.lock"
# the hash shard layout new shards are written in: "sorted" (memory-mapped, see audiodup.index),
# or "faiss" (IndexBinaryHash in RAM, the layout of catalogs written before issue #14)
HASH_LAYOUT = "sorted"
# below this much free space an SQLite I/O error is taken for a full disk: SQLite reports a
# shared-memory file it cannot grow as a "disk I/O error", not as "disk full"
_NEARLY_FULL_BYTES = 1 << 20

# the removed works, which ``index_key`` counts before every search: without it that count reads
# every work (10 ms at 10^5 works). Catalogs written before it get it with their next write.
_REMOVED_WORKS_INDEX = (
    "CREATE INDEX IF NOT EXISTS works_removed ON works(work_id) WHERE removed = 1"
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS shards (
    shard_id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash_file TEXT NOT NULL, chroma_file TEXT NOT NULL,
    n_hashes INTEGER NOT NULL, n_segments INTEGER NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS works (
    work_id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL, title TEXT, artist TEXT, duration_s REAL NOT NULL,
    sha256 TEXT NOT NULL, recipe TEXT NOT NULL, added_at TEXT NOT NULL,
    file_size INTEGER, file_mtime REAL, metadata TEXT NOT NULL DEFAULT '{}',
    removed INTEGER NOT NULL DEFAULT 0, shard_id INTEGER,
    n_hashes INTEGER NOT NULL, n_segments INTEGER NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS works_live_sha ON works(sha256) WHERE removed = 0",
    "CREATE INDEX IF NOT EXISTS works_path ON works(path)",
    "CREATE TABLE IF NOT EXISTS fingerprints (work_id INTEGER PRIMARY KEY, blob BLOB NOT NULL)",
    _REMOVED_WORKS_INDEX,
)
# every submission is a row here; its content is a work (stored once, whoever sent it again)
_LEDGER_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS uploads (
    upload_id INTEGER PRIMARY KEY AUTOINCREMENT,
    work_id INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('reference', 'upload')),
    source_path TEXT NOT NULL, sha256 TEXT NOT NULL, file_size INTEGER, file_mtime REAL,
    title TEXT, artist TEXT, uploader TEXT, uploaded_at TEXT,
    isrc TEXT, upc TEXT, external_id TEXT, extra TEXT NOT NULL DEFAULT '{}',
    recorded_at TEXT NOT NULL, removed INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS uploads_work ON uploads(work_id)",
    "CREATE INDEX IF NOT EXISTS uploads_source ON uploads(source_path)",
    "CREATE INDEX IF NOT EXISTS uploads_external ON uploads(external_id)",
)
# reviewers' decisions on flagged uploads: appended, never changed (the latest one is in force)
_REVIEW_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS review_decisions (
    decision_id INTEGER PRIMARY KEY AUTOINCREMENT,
    upload_id INTEGER NOT NULL,
    work_id INTEGER NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('copy', 'not_a_copy', 'escalate')),
    note TEXT NOT NULL, reviewer TEXT NOT NULL, decided_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS review_decisions_upload ON review_decisions(upload_id)",
)
_DECISION_COLUMNS = "decision_id, upload_id, work_id, decision, note, reviewer, decided_at"
# what the service (audiodup.service) keeps per upload it screened and recorded: the verdict
# document, and the client's idempotency key so that a retried request is recorded once
_SCREENING_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS screenings (
    upload_id INTEGER PRIMARY KEY,
    verdict TEXT NOT NULL, result TEXT NOT NULL, screened_at TEXT NOT NULL,
    client TEXT NOT NULL, idempotency_key TEXT, request_hash TEXT)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS screenings_idempotency ON screenings(client, "
    "idempotency_key) WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS screenings_verdict ON screenings(verdict)",
)
# a recorded file's size, time, device and inode when it was last seen holding its upload's
# audio, and a time before that look: the quick check of later runs (find_unchanged_file)
_FILE_CHECK_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS file_checks (
    upload_id INTEGER PRIMARY KEY, file_size INTEGER NOT NULL, file_mtime REAL NOT NULL,
    file_device TEXT NOT NULL, file_inode TEXT NOT NULL, checked_at TEXT NOT NULL)""",
)
_UPLOAD_COLUMNS = (
    "upload_id, work_id, role, source_path, sha256, recorded_at, title, artist, uploader, "
    "uploaded_at, isrc, upc, external_id, extra"
)
_SCREENING_COLUMNS = (
    "upload_id, verdict, result, screened_at, client, idempotency_key, request_hash"
)
# metadata fields that are columns of an upload; any other metadata key is kept in ``extra``
UPLOAD_FIELDS = ("title", "artist", "uploader", "uploaded_at", "isrc", "upc", "external_id")


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
    metadata: dict = field(default_factory=dict)  # the upload's metadata (see UPLOAD_FIELDS)
    role: str = "upload"
    truncated: bool = False  # the file held more than the decoding limits took (not stored)
    # the file's device, inode, size, mtime and ctime (ns) as it was decoded (not stored): a
    # file that no longer has them when the upload is committed is recorded without its size
    # and time, so that no later run takes it for this upload unread
    file_identity: tuple[int, ...] | None = None
    # when the file was last seen with that identity, before the batch commits (not stored)
    checked_at: str | None = None


@dataclass(frozen=True)
class Committed:
    """What :meth:`CatalogStore.commit_batch` did with one item: ``added`` new content,
    recorded an ``identical`` upload of content already present, or found this very source
    file already recorded (``present``)."""

    work_id: int
    upload_id: int
    status: str  # "added" | "identical" | "present"


@dataclass(frozen=True)
class Screening:
    """The service's record of one upload it screened: the verdict label (``duplicate``,
    ``suspect``, ``clean``), the verdict entry as JSON text, when, which API key sent it, and
    the client's idempotency key with the hash of the request it came with."""

    upload_id: int
    verdict: str
    result: str
    screened_at: str
    client: str
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(frozen=True)
class CatalogCheck:
    """What :meth:`CatalogStore.check` found. ``problems`` make the catalog unsound (``index
    verify`` fails); ``notes`` are harmless: leftovers of an interrupted write that the next
    write removes, and files or folders in ``shards/`` that are not the catalog's (left alone)."""

    problems: tuple[str, ...]
    notes: tuple[str, ...]


def _path_value(path: str) -> str | bytes:
    """A file's path as the database holds it: text, or the name's exact bytes when it is not
    UTF-8 (its undecodable bytes are lone surrogates in ``path``, ``os.fsdecode``'s), so that
    the name with the byte 0xFF and the name that spells ``\\xff``, shown alike, stay two
    values. SQLite keeps either type in a column and never finds a text equal to bytes (a
    catalog written before kept such a name as its shown text: :func:`_path_forms`)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        try:
            return os.fsencode(path)
        except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
            return path_text(path)


def _path_forms(path: str, text_names: bool) -> tuple[str | bytes, str | bytes]:
    """The two values a file's path may be stored as: :func:`_path_value`, and, in a catalog
    made before names were kept as bytes (``text_names``), the shown text it recorded (the
    same for a name that is UTF-8). There, when a file is named by that text itself
    (``x\\xff.wav`` spelled out beside ``x<0xFF>.wav``), the text is that file's path, not
    this one's, and only :func:`_path_value` is looked for; a catalog made since never looks
    for the text (a spelled-out name recorded, then deleted, hid a byte name)."""
    value, shown = _path_value(path), path_text(path)
    if not text_names or (isinstance(value, bytes) and os.path.lexists(shown)):
        return value, value
    return value, shown


def _file_of(value: str | bytes) -> str:
    """A stored path (:func:`_path_value`) as the string that opens the file."""
    return os.fsdecode(value) if isinstance(value, bytes) else str(value)


def _shown_path(value: str | bytes) -> str:
    """A stored path as printable text: the bytes of a name that is not UTF-8 as ``\\xNN``."""
    return path_text(_file_of(value))


def is_stored_id(number: int) -> bool:
    """Whether ``number`` fits an SQLite integer, as every stored id does (a larger one, which
    the command line accepts, names nothing; SQLite would refuse it)."""
    return -(1 << 63) <= number < 1 << 63


def reports_errors(doing: str):
    """Turn the SQLite and OS errors of a store method into :func:`catalog_error` ones."""

    def decorate(method):
        @functools.wraps(method)
        def wrapped(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except (sqlite3.Error, OSError) as exc:
                raise catalog_error(exc, self.root, doing) from None

        return wrapped

    return decorate


class CatalogStore:
    """SQLite + FAISS shards behind a narrow interface. Not shared between processes.

    Opening reads; it never takes the writer lock and writes nothing unless it creates the
    catalog (``create``: only in a new or empty folder). ``write`` asks for a catalog that can be
    written: a read-only one is then refused at once rather than at the first write.
    ``read_only`` says why this store cannot write (``None`` when it can). ``rekey`` opens a
    catalog whose index only :meth:`rekey` can bring to ``settings`` (``rekey_from``: its
    recipe), for that alone."""

    def __init__(
        self,
        root: Path,
        settings: Settings,
        *,
        create: bool = True,
        write: bool = False,
        rekey: bool = False,
    ):
        self.root = Path(root)
        self.settings = settings
        self.rekey_from: str | None = None
        self._rekey = rekey
        self.read_only: str | None = None
        self._db_path = self.root / _DB_FILE
        self._closed = threading.Event()  # stops this store's read-ahead
        self._shards_read: dict[str, object] = {}
        # four-peak files by (name, inode, mtime): an upgrade can write one again under its name
        self._quads_read: dict[tuple, QuadShard] = {}
        self._lock = None  # the writer lock, made by the first write (write_lock)
        self._making_lock = threading.Lock()
        self.lock_timeout_s = _LOCK_TIMEOUT_S  # how long a write waits for another writer
        self.merge_after_commit = True  # a commit that adds a shard makes the merges due
        if self.root.exists() and not self.root.is_dir():
            raise CatalogError(f"{path_text(self.root)} is a file, not a catalog folder")
        if not self._db_path.exists():
            if not create:
                require_catalog_folder(self.root)
            self._create()
        self.db = self._connect()
        try:
            recipe = self._stored_recipe()
            if recipe is None:  # a creation that stopped before it committed
                if not create or self.read_only is not None:
                    raise CatalogError(
                        f"no catalog at {path_text(self.root)} yet: it is being created, or its "
                        "creation was interrupted ('audiodup index add' finishes it)"
                    )
                self._create()
                recipe = self._stored_recipe()
            self._check_recipe(recipe)
            self._has_ledger = self._upgrade()
            # a catalog made with names kept as bytes holds no name as its shown text
            self._text_names = (
                self.db.execute("SELECT 1 FROM meta WHERE key = 'path_bytes'").fetchone() is None
            )
            if write and self.read_only is not None:
                raise self._unwritable("write to")
        except BaseException as exc:
            self.db.close()
            if isinstance(exc, sqlite3.Error):
                raise catalog_error(exc, self.root, "open") from None
            raise

    # -- opening and creating ----------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """A connection to the existing database: read-write when possible, else read-only.

        In write-ahead-log mode every reader needs the log's shared-memory file next to the
        database; on a read-only folder, or a full disk, SQLite cannot make it and cannot open a
        healthy catalog ("unable to open database file", "disk I/O error"). Then it is opened
        read-only, and if that fails too, immutable: SQLite then reads the database file alone,
        which is the whole catalog only while the log is empty (always so after a writer closed
        or folded it), so a log with content is never skipped."""
        attempts = ("rw", "ro", "immutable")
        first: sqlite3.Error | None = None
        for mode in attempts:
            if mode == "immutable" and _log_has_content(self._db_path):
                raise CatalogReadOnlyError(
                    f"cannot open catalog {path_text(self.root)}: it cannot be written here "
                    f"({_why_not_writable(self.root)}) and its write-ahead log holds changes "
                    "that only a writable catalog can read; open it once where it can be written"
                ) from None
            try:
                db = sqlite3.connect(
                    _sqlite_uri(self._db_path, mode),
                    uri=True,
                    timeout=_BUSY_TIMEOUT_S,
                    isolation_level=None,
                    # the service's threads take turns under one lock (audiodup.service.engine);
                    # the store itself is still not for two threads at once
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                first = first or exc
                if not _needs_a_writable_folder(exc):
                    break
                continue
            try:
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as exc:
                db.close()
                first = first or exc
                if not _needs_a_writable_folder(exc):
                    raise catalog_error(exc, self.root, "open") from None
                continue
            if mode == "rw" and os.access(self._db_path, os.W_OK):
                db.execute("PRAGMA synchronous=FULL")
            else:
                self.read_only = _why_not_writable(self.root)
            return db
        raise catalog_error(first, self.root, "open") from None

    def _stored_recipe(self) -> str | None:
        """The catalog's recipe; ``None`` while the database holds no catalog yet (created by a
        process that stopped before its first transaction committed)."""
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
        row = None
        if "meta" in tables:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'recipe'").fetchone()
        if row is not None:
            return str(row[0])
        # earlier versions created the tables and the recipe in separate steps, but always the
        # recipe before any work: works without a recipe are damage, not an unfinished creation
        if "works" in tables and self.db.execute("SELECT COUNT(*) FROM works").fetchone()[0]:
            raise CatalogDamagedError(
                f"catalog database {path_text(self._db_path)} is damaged: it holds works but no "
                "fingerprint recipe"
            )
        return None

    def stored_settings_json(self) -> str | None:
        """The settings JSON the catalog was created with (``Settings.to_json``), or ``None``."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        return None if row is None else str(row[0])

    def _check_recipe(self, recipe: str) -> None:
        """Refuse a catalog of another fingerprint recipe, naming the recipe fields that differ
        (read back from the stored settings). A catalog of a legacy id (``audiodup-fp-2``) is
        accepted when its stored recipe fields are those of these settings."""
        stored_json = self.stored_settings_json()
        if recipe_matches(recipe, stored_json, self.settings):
            return
        fingerprints_are_ours = rekeyable(recipe, stored_json, self.settings)
        if fingerprints_are_ours and self._rekey:
            self.rekey_from = recipe
            return
        try:
            catalog_fields = stored_recipe_fields(recipe, stored_json or "")
        except ValueError:  # no or unreadable settings JSON: the ids alone are known
            differences = ["(its settings are not recorded)"]
        else:
            differences = recipe_differences(catalog_fields, self.settings) or [
                "the same recipe fields, made by code of another recipe format"
            ]
        repair = (
            "its stored fingerprints are this recipe's: 'audiodup index upgrade' makes its index "
            "again from them, no audio needed"
            if fingerprints_are_ours
            else "rebuild it with the files (index add) into a new catalog"
        )
        raise RecipeMismatchError(
            f"catalog {path_text(self.root)} was built with fingerprint recipe {recipe!r}, this "
            f"audiodup uses {self.settings.recipe!r} ({'; '.join(differences)}); {repair}"
        )

    def _create(self) -> None:
        """Create the catalog: its folder, its shards folder and, in one transaction under the
        writer lock, its tables and recipe (a reader sees no catalog or a whole one). Refuses a
        folder that holds anything else: a catalog must not mix with, or sweep, other files."""
        if not self._db_path.exists():
            self._refuse_foreign_folder()
        try:
            (self.root / _SHARDS).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise catalog_error(exc, self.root, "create") from None
        with self.write_lock():
            if not self._db_path.exists():
                self._refuse_foreign_folder()  # checked again now that no one else creates it
            try:
                db = sqlite3.connect(
                    _sqlite_uri(self._db_path, "rwc"),
                    uri=True,
                    timeout=_BUSY_TIMEOUT_S,
                    isolation_level=None,
                )
            except sqlite3.Error as exc:
                raise catalog_error(exc, self.root, "create") from None
            try:
                use_write_ahead_log(db)
                db.execute("PRAGMA synchronous=FULL")
                db.execute("BEGIN IMMEDIATE")
                try:
                    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
                    recipe = (
                        db.execute("SELECT value FROM meta WHERE key = 'recipe'").fetchone()
                        if "meta" in names
                        else None
                    )
                    if recipe is None:
                        for statement in _SCHEMA + _LEDGER_SCHEMA + _REVIEW_SCHEMA:
                            db.execute(statement)
                        db.executemany(
                            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [
                                ("recipe", self.settings.recipe),
                                ("settings", self.settings.to_json()),
                                ("schema", SCHEMA_VERSION),
                                ("path_bytes", "1"),
                            ],
                        )
                    db.execute("COMMIT")
                finally:
                    if db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise catalog_error(exc, self.root, "create") from None
            finally:
                db.close()
            with contextlib.suppress(OSError):
                fsync_folder(self.root)

    def _upgrade(self) -> bool:
        """Give a catalog of the first layout its upload ledger: one upload per work, with the
        work's id and metadata. Returns whether the catalog has a ledger; a catalog that cannot
        be written here keeps the old layout and :meth:`uploads` derives the same records."""
        if self._table_exists("uploads"):
            return True
        if self.read_only is not None:
            return False
        with self.write_lock(), self._transaction() as db:
            if not self._table_exists("uploads"):
                for statement in _LEDGER_SCHEMA:
                    db.execute(statement)
                rows = db.execute(
                    "SELECT work_id, path, title, artist, sha256, added_at, metadata, removed, "
                    "file_size, file_mtime FROM works ORDER BY work_id"
                ).fetchall()
                for row in rows:
                    upload = _legacy_upload(row)
                    self._insert_upload(upload, removed=bool(row[7]), stat=(row[8], row[9]))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        return True

    def _table_exists(self, name: str) -> bool:
        found = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return found is not None

    def _refuse_foreign_folder(self) -> None:
        foreign = _foreign_entries(self.root)
        if foreign:
            shown = ", ".join(path_text(name) for name in foreign[:5])
            more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            raise CatalogError(
                f"will not create a catalog in {path_text(self.root)}: the folder is not empty "
                f"and holds no catalog ({shown}{more}); choose a new or empty folder"
            )

    # -- locking and transactions -------------------------------------------------------------
    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """The single-writer lock (reentrant). Only writes take it, never opening or reading
        (nor import its library: a screening process starts without it)."""
        from filelock import FileLock, Timeout

        with self._making_lock:
            if self._lock is None:
                self._lock = FileLock(str(self.root / _LOCK_FILE))
        try:
            self._lock.acquire(timeout=self.lock_timeout_s)
        except Timeout:
            raise CatalogBusyError(
                f"catalog {path_text(self.root)} is locked by another writer (waited "
                f"{self.lock_timeout_s:.0f} s)"
            ) from None
        except OSError as exc:
            raise catalog_error(exc, self.root, "lock") from None
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def _writing(self, doing: str, *, tidy: bool = True) -> Iterator[None]:
        """Hold the writer lock for one write. With ``tidy``, first make sure ``shards/`` exists
        (``rebuild`` recreates a deleted one) and remove what interrupted writes left there."""
        if self.read_only is not None:
            raise self._unwritable(doing)
        if self.rekey_from is not None and doing != "re-key":
            raise self._needs_rekey(doing)
        with self.write_lock():
            if tidy:
                shards = self.root / _SHARDS
                if not shards.is_dir():
                    if os.path.lexists(shards):
                        raise CatalogError(
                            f"cannot {doing} catalog {path_text(self.root)}: "
                            f"{path_text(shards)} is not a folder (move it away)"
                        )
                    shards.mkdir()
                    fsync_folder(self.root)
                self._sweep_orphans()
            # a catalog written before the removed works' index gets it here, under the
            # writer's lock (opening and reading never write); a no-op once it exists
            self.db.execute(_REMOVED_WORKS_INDEX)
            yield

    def _needs_rekey(self, doing: str) -> CatalogError:
        return RecipeMismatchError(
            f"cannot {doing} catalog {path_text(self.root)}: its index is of recipe "
            f"{self.rekey_from!r}, not {self.settings.recipe!r}; 'audiodup index upgrade' "
            "makes it again from the stored fingerprints first"
        )

    def _unwritable(self, doing: str) -> CatalogError:
        """The error of a write to a catalog that was opened read-only."""
        where = f"cannot {doing} catalog {path_text(self.root)}"
        if _nearly_full(self.root):
            return DiskFullError(f"{where}: the disk is full; free some space and try again")
        return CatalogReadOnlyError(f"{where}: it cannot be written here ({self.read_only})")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        # SQLite may have rolled back already (a full disk does that): a failing ROLLBACK must
        # not hide the error that caused it
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")

    def close(self) -> None:
        self._closed.set()
        # fold the write-ahead log back into the database file (skipped while others read)
        if self.read_only is None:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.db.close()

    # -- queries -------------------------------------------------------------------------------
    @reports_errors("read")
    def find_live_sha(self, sha256: str) -> int | None:
        row = self.db.execute(
            "SELECT work_id FROM works WHERE sha256 = ? AND removed = 0", (sha256,)
        ).fetchone()
        return None if row is None else int(row[0])

    @reports_errors("read")
    def find_unchanged_file(self, path: str, stat: os.stat_result) -> Committed | None:
        """The upload of this very file: same absolute path, size and modification time, and
        an inode not changed since it was last seen holding the upload's audio (``ctime``,
        against the upload's file check, else its recording time; no one sets a ctime: a
        file written over with other audio of the same size, its modification time set back,
        is not this upload), and with a file check the same device and inode (another
        volume mounted over the folder is other files). ``None`` sends the file to be decoded:
        an upload of audio already recorded from this path is then ``present`` all the same
        (:meth:`commit_batch`)."""
        if not self._has_ledger:
            return None
        forms = _path_forms(path, self._text_names)
        if self._table_exists("file_checks"):
            # an upload's check, when it has one (:meth:`_note_file_check`), holds the file's
            # size, time and inode then, and a time before its look instead of the commit's
            sql = (
                "SELECT u.work_id, u.upload_id, COALESCE(c.checked_at, u.recorded_at) "
                "FROM uploads u LEFT JOIN file_checks c ON c.upload_id = u.upload_id "
                "WHERE u.source_path IN (?, ?) AND COALESCE(c.file_size, u.file_size) = ? "
                "AND COALESCE(c.file_mtime, u.file_mtime) = ? AND (c.upload_id IS NULL OR "
                "(c.file_device = ? AND c.file_inode = ?)) AND u.removed = 0 "
                "ORDER BY u.upload_id DESC LIMIT 1"
            )
            args = (*forms, stat.st_size, stat.st_mtime, str(stat.st_dev), str(stat.st_ino))
        else:
            sql = (
                "SELECT work_id, upload_id, recorded_at FROM uploads WHERE source_path IN (?, ?) "
                "AND file_size = ? AND file_mtime = ? AND removed = 0 ORDER BY upload_id DESC "
                "LIMIT 1"
            )
            args = (*forms, stat.st_size, stat.st_mtime)
        row = self.db.execute(sql, args).fetchone()
        if row is None or not _changed_before(stat.st_ctime, row[2]):
            return None
        return Committed(int(row[0]), int(row[1]), "present")

    @reports_errors("read the uploads of")
    def uploads(self, work_ids: list[int] | None = None) -> list[UploadInfo]:
        """Live uploads (of ``work_ids``, or all) in order of their ids."""
        if not self._has_ledger:
            rows = self.db.execute(
                "SELECT work_id, path, title, artist, sha256, added_at, metadata FROM works "
                "WHERE removed = 0 ORDER BY work_id"
            ).fetchall()
            found = [_legacy_upload(r) for r in rows]
        else:
            where = ""
            if work_ids is not None:  # only ever a screening's few matched works
                where = f"AND work_id IN ({','.join(str(int(w)) for w in set(work_ids))})"
            found = [
                _upload_info(r)
                for r in self.db.execute(
                    f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE removed = 0 {where} "
                    "ORDER BY upload_id"
                )
            ]
        if work_ids is not None:
            wanted = set(work_ids)
            found = [u for u in found if u.work_id in wanted]
        return found

    @reports_errors("change the uploads of")
    def update_uploads(self, changes: list[tuple[int, dict]]) -> None:
        """Apply ``(upload id, {field: value})`` changes in one transaction: all or nothing.
        Fields are ``role``, :data:`UPLOAD_FIELDS` and other metadata names (kept in
        ``extra``); the caller has validated them."""
        with self._writing("change the uploads of", tidy=False), self._transaction() as db:
            for upload_id, fields in changes:
                row = db.execute(
                    "SELECT extra, work_id FROM uploads WHERE upload_id = ? AND removed = 0",
                    (upload_id,),
                ).fetchone()
                if row is None:
                    raise CatalogError(f"upload {upload_id} is not in the catalog")
                extra = _json_object(row[0], "extra metadata")
                self._update_first_upload_of(int(row[1]), upload_id, fields)
                columns = {}
                for name, value in fields.items():
                    if name == "role" or name in UPLOAD_FIELDS:
                        columns[name] = value
                    else:
                        extra[name] = value
                columns["extra"] = json.dumps(extra, sort_keys=True)
                assignments = ", ".join(f"{name} = ?" for name in columns)
                db.execute(
                    f"UPDATE uploads SET {assignments} WHERE upload_id = ?",
                    (*columns.values(), upload_id),
                )
            db.execute(
                "INSERT INTO meta VALUES ('ledger_edits', '1') ON CONFLICT(key) DO UPDATE "
                "SET value = CAST(value AS INTEGER) + 1"
            )

    def _update_first_upload_of(self, work_id: int, upload_id: int, fields: dict) -> None:
        """A work's row keeps the metadata of the upload that brought its audio (``index
        list`` shows it): changed with that upload's. Inside :meth:`update_uploads`."""
        (first,) = self.db.execute(
            "SELECT MIN(upload_id) FROM uploads WHERE work_id = ?", (work_id,)
        ).fetchone()
        if first != upload_id:
            return
        (stored,) = self.db.execute(
            "SELECT metadata FROM works WHERE work_id = ?", (work_id,)
        ).fetchone()
        metadata = {**_json_object(stored, "metadata"), **fields}
        columns = {name: fields[name] for name in ("title", "artist") if name in fields}
        columns["metadata"] = json.dumps(metadata)
        assignments = ", ".join(f"{name} = ?" for name in columns)
        self.db.execute(
            f"UPDATE works SET {assignments} WHERE work_id = ?", (*columns.values(), work_id)
        )

    @reports_errors("read")
    def ledger_edits(self) -> int:
        """How many times uploads' metadata or roles were changed (``update_uploads``): what
        was derived from the ledger is current while it is unchanged."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'ledger_edits'").fetchone()
        return 0 if row is None else int(row[0])

    @reports_errors("list the works of")
    def works(self) -> list[WorkInfo]:
        rows = self.db.execute(
            "SELECT work_id, path, title, artist, duration_s, sha256, added_at, metadata "
            "FROM works WHERE removed = 0 ORDER BY work_id"
        ).fetchall()
        return [_work_info(r) for r in rows]

    @reports_errors("read")
    def work(self, work_id: int) -> WorkInfo | None:
        if not is_stored_id(work_id):
            return None
        row = self.db.execute(
            "SELECT work_id, path, title, artist, duration_s, sha256, added_at, metadata "
            "FROM works WHERE work_id = ? AND removed = 0",
            (work_id,),
        ).fetchone()
        return None if row is None else _work_info(row)

    @reports_errors("read")
    def work_files(self) -> dict[int, str]:
        """Each live work's file as recorded, to open it (a name that is not UTF-8 as the
        string ``os.fsdecode`` gives; :attr:`WorkInfo.path` shows it)."""
        rows = self.db.execute("SELECT work_id, path FROM works WHERE removed = 0")
        return {int(work_id): _file_of(path) for work_id, path in rows}

    @reports_errors("read")
    def recorded_file_names(self) -> set[str]:
        """The name (last part) of every file a work or an upload records, removed ones too:
        what a sweep of unrecorded received files must keep."""
        query = "SELECT path FROM works"
        if self._has_ledger:
            query += " UNION SELECT source_path FROM uploads"
        return {os.path.basename(_file_of(row[0])) for row in self.db.execute(query)}

    @reports_errors("read")
    def work_file(self, work_id: int) -> str | None:
        """One live work's file as :meth:`work_files` gives it (None: no such work)."""
        return self._file("SELECT path FROM works WHERE work_id = ? AND removed = 0", work_id)

    @reports_errors("read")
    def upload_file(self, upload_id: int) -> str | None:
        """One live upload's file as :meth:`work_files` gives a work's (None: no such upload,
        or a catalog without a ledger)."""
        if not self._has_ledger:
            return None
        query = "SELECT source_path FROM uploads WHERE upload_id = ? AND removed = 0"
        return self._file(query, upload_id)

    def _file(self, query: str, row_id: int) -> str | None:
        """The file of the one row ``query`` finds for ``row_id`` (None: none)."""
        if not is_stored_id(row_id):
            return None
        row = self.db.execute(query, (row_id,)).fetchone()
        return None if row is None else _file_of(row[0])

    @reports_errors("read a fingerprint from")
    def fingerprint(self, work_id: int) -> Fingerprint:
        found = self._stored_fingerprint(work_id)
        if isinstance(found, str):
            raise CatalogDamagedError(found)
        return found

    def _stored_fingerprint(self, work_id: int) -> Fingerprint | str:
        """The decoded stored fingerprint, or what is wrong with it."""
        row = self.db.execute(
            "SELECT blob FROM fingerprints WHERE work_id = ?", (work_id,)
        ).fetchone()
        if row is None:
            return f"work {work_id} has no stored fingerprint"
        if not isinstance(row[0], bytes):
            return f"work {work_id}: stored fingerprint is damaged (not a blob)"
        try:
            return Fingerprint.from_bytes(row[0])
        except CatalogError as exc:
            return f"work {work_id}: {exc}"

    @reports_errors("read")
    def index_key(self) -> tuple:
        """A value that changes whenever the searchable indexes do (a shard added or replaced, a
        work removed): a cached :class:`LoadedIndexes` is current while it is unchanged."""
        return tuple(
            self.db.execute(
                "SELECT (SELECT group_concat(shard_id) FROM shards), "
                "(SELECT COUNT(*) FROM works WHERE removed = 1), "
                "(SELECT value FROM meta WHERE key = 'index_files')"
            ).fetchone()
        )

    @reports_errors("read the indexes of")
    def load_indexes(
        self, attempts: int = 5, group: tuple[int, int] | None = None
    ) -> LoadedIndexes:
        """Read every shard listed in one SQLite snapshot (retrying if a compaction raced us);
        with ``group`` = ``(group, n_groups)``, only that shard group's shards."""
        if self.rekey_from is not None:
            raise self._needs_rekey("search")
        for attempt in range(attempts):
            self.db.execute("BEGIN")
            try:
                if group is not None and self.shard_groups() != group[1]:
                    raise CatalogError(
                        f"catalog {path_text(self.root)} is split into {self.shard_groups()} "
                        f"shard groups, not {group[1]}"
                    )
                shards = self.db.execute(
                    "SELECT shard_id, hash_file, chroma_file FROM shards ORDER BY shard_id"
                ).fetchall()
                if group is not None:
                    own = set(self.group_shards(group[1]).get(group[0], []))
                    shards = [row for row in shards if row[0] in own]
                shards = [(h, c) for _, h, c in shards]
                live_ids = [
                    r[0] for r in self.db.execute("SELECT work_id FROM works WHERE removed = 0")
                ]
                max_id = self.db.execute("SELECT MAX(work_id) FROM works").fetchone()[0] or 0
            finally:
                self._rollback()  # a read transaction: nothing to commit
            try:
                hash_shards = [self._read_shard(h, read_hash_shard) for h, _ in shards]
                chroma_shards = [self._read_shard(c, read_chroma_index) for _, c in shards]
                quad_keys = [self._quads_key(h) for h, _ in shards]
                quad_shards = [self._read_quads(key) for key in quad_keys if key is not None]
            except (RuntimeError, FileNotFoundError) as exc:
                # a rebuild or merge removed a file of this snapshot (FAISS says so with a
                # RuntimeError): read the next snapshot
                gone = any(not self._shard_path(n).exists() for pair in shards for n in pair)
                if attempt + 1 < attempts and (isinstance(exc, FileNotFoundError) or gone):
                    time.sleep(0.2)
                    continue
                raise CatalogError(
                    f"catalog index files are damaged or missing ({_first_line(exc)}); "
                    "run 'audiodup index rebuild'"
                ) from None
            # shard files are immutable and never renamed: the next load reads only new ones
            kept = {name for pair in shards for name in pair}
            self._shards_read = {n: r for n, r in self._shards_read.items() if n in kept}
            self._quads_read = {k: self._quads_read[k] for k in quad_keys if k is not None}
            live = np.zeros(max_id + 1, dtype=bool)
            live[np.asarray(live_ids, dtype=np.int64)] = True
            return load_indexes(
                hash_shards,
                chroma_shards,
                live,
                self.settings.chroma_nprobe,
                quad_shards,
                self.settings.chroma_probed_share,
            )
        raise CatalogError("catalog kept changing while loading; try again")

    def _read_shard(self, name, read):
        """A shard file's index, read once per store (a long-lived reader such as a service
        worker then reloads only the shards a commit added)."""
        if name not in self._shards_read:
            self._shards_read[name] = read(self._shard_path(name))
        return self._shards_read[name]

    def _quads_key(self, hash_file: str) -> tuple | None:
        """The four-peak file beside ``hash_file`` as ``(name, inode, mtime)`` (None: its shard
        was written before them). A hash file gone as well means a compaction replaced the
        shard: ``FileNotFoundError``."""
        name = quad_file_of(hash_file)
        try:
            found = self._shard_path(name).stat()
        except FileNotFoundError:
            if not self._shard_path(hash_file).exists():
                raise
            return None
        return name, found.st_ino, found.st_mtime_ns

    def _read_quads(self, key: tuple) -> QuadShard:
        """A four-peak file, read once per store while it is the same file."""
        if key not in self._quads_read:
            self._quads_read[key] = read_quad_shard(self._shard_path(key[0]))
        return self._quads_read[key]

    def _shard_path(self, name) -> Path:
        if not isinstance(name, str) or not _OWN_SHARD_FILE.fullmatch(name):
            # a shard row names a file of the catalog's own making, nothing else
            raise CatalogDamagedError(
                f"catalog database {path_text(self._db_path)} is damaged: a shard row names "
                f"{name!r}; run 'audiodup index rebuild'"
            )
        return self.root / _SHARDS / name

    @reports_errors("read")
    def files_to_warm(
        self, budget_bytes: int, shard_ids: Collection[int] | None = None
    ) -> list[tuple[Path, int]]:
        """``(path, bytes)`` of the catalog's index files to read ahead into the page cache
        (:func:`read_ahead`), those of ``shard_ids`` (None: every shard), up to ``budget_bytes``
        in all. Started cold, a process pages them in by the random reads of its first queries:
        at 10^5 works the first took 7-8 s of wall time and the 20th still 0.8 s
        (``benchmarks/SCALING.md``); read in one sequential pass they take seconds.

        Never the database: closing a second descriptor of an SQLite file drops every POSIX
        lock the process holds on it (SQLite's own connections included), and a worker that
        lost them read a stale catalog in the service tests."""
        mapped = [
            name
            for name in self._referenced_files(shard_ids)
            # the memory-mapped files; a FAISS hash index (h-*.faiss) is read whole at load
            if isinstance(name, str)
            and _OWN_SHARD_FILE.fullmatch(name)
            and not (name.startswith("h-") and name.endswith(".faiss"))
        ]
        # under a tight budget the hash look-ups first, then the four-peak ones, then chroma
        names = sorted(mapped, key=lambda name: ("hqc".index(name[0]), name))
        paths = [self.root / _SHARDS / name for name in names]
        return within_budget([(path, _file_size(path)) for path in paths], budget_bytes)

    def is_own_database(self, path: str | Path) -> bool:
        """Whether ``path`` names an SQLite file inside the catalog folder. Such a file is
        never decoded as an upload: closing a second descriptor of it would drop the locks
        this process's connections hold on it."""
        return bool(_SQLITE_FILE.fullmatch(Path(path).name)) and self.holds(path)

    def holds(self, path: str | Path) -> bool:
        """Whether ``path``, its links resolved, is inside the catalog folder."""
        try:
            return Path(path).resolve().is_relative_to(self.root.resolve())
        except (OSError, RuntimeError, ValueError):  # unreadable folder, symlink loop, NUL byte
            return False

    def read_ahead_in_background(
        self, budget_bytes: int, shard_ids: Collection[int] | None = None
    ) -> threading.Thread | None:
        """:func:`start_read_ahead` of :meth:`files_to_warm`, in the calling thread's turn on
        the connection; a speed-up only, so a catalog that cannot say its files (busy, closed)
        reads nothing ahead rather than failing its caller.

        ``budget_bytes`` is shared by the read-aheads running at once in this process: what the
        others still have to read is taken off it (a Dask worker that opens several shard
        groups at once reads one budget ahead, not one per group); a finished or stopped one
        no longer counts."""
        if self._closed.is_set():
            return None
        try:
            plan = self.files_to_warm(budget_bytes, shard_ids)
        except (CatalogError, OSError, sqlite3.Error):
            return None
        return start_read_ahead(plan, self._closed, budget_bytes)

    def _referenced_files(self, shard_ids: Collection[int] | None = None) -> set[str]:
        """The file names the shards table names (of ``shard_ids``; None: every shard)."""
        referenced = set()
        rows = self.db.execute("SELECT shard_id, hash_file, chroma_file FROM shards")
        for shard_id, hash_file, chroma_file in rows:
            if shard_ids is None or shard_id in shard_ids:
                referenced.update((hash_file, chroma_file, quad_file_of(hash_file)))
        return referenced

    # -- review decisions ----------------------------------------------------------------------
    @reports_errors("record a review decision in")
    def record_decision(
        self, upload_id: int, work_id: int, decision: str, note: str, reviewer: str
    ) -> ReviewDecision:
        """Append a reviewer's decision on a live upload (its latest decision from now on).

        It takes no writer lock: a decision touches one table of its own and no index file,
        and SQLite's transaction serialises it with the other writes, so a reviewer does not
        wait behind a long ``index add``."""
        if decision not in REVIEW_LABELS:
            raise ValueError(f"decision must be one of {', '.join(REVIEW_LABELS)}")
        if self.read_only is not None:
            raise self._unwritable("record a review decision in")
        with self._transaction() as db:
            for statement in _REVIEW_SCHEMA:  # catalogs made before decisions existed
                db.execute(statement)
            if not self._upload_is_live(upload_id):
                raise CatalogError(f"upload {upload_id} is not in the catalog")
            made = ReviewDecision(0, upload_id, work_id, decision, note, reviewer, _now())
            cursor = db.execute(
                "INSERT INTO review_decisions (upload_id, work_id, decision, note, reviewer, "
                "decided_at) VALUES (?, ?, ?, ?, ?, ?)",
                (upload_id, work_id, decision, note, reviewer, made.decided_at),
            )
        return replace(made, decision_id=int(cursor.lastrowid))

    def _upload_is_live(self, upload_id: int) -> bool:
        if not self._has_ledger:  # first layout: an upload is a work, with the same id
            sql = "SELECT 1 FROM works WHERE work_id = ? AND removed = 0"
        else:
            sql = "SELECT 1 FROM uploads WHERE upload_id = ? AND removed = 0"
        return self.db.execute(sql, (upload_id,)).fetchone() is not None

    @reports_errors("read the review decisions of")
    def decisions(self, upload_id: int | None = None) -> list[ReviewDecision]:
        """Every decision (on ``upload_id``, or on all uploads), oldest first: the history."""
        if not self._table_exists("review_decisions"):
            return []
        where, args = ("WHERE upload_id = ?", (upload_id,)) if upload_id is not None else ("", ())
        rows = self.db.execute(
            f"SELECT {_DECISION_COLUMNS} FROM review_decisions {where} ORDER BY decision_id", args
        ).fetchall()
        return [_decision(r) for r in rows]

    @reports_errors("read the review decisions of")
    def latest_decisions(self) -> list[ReviewDecision]:
        """The decision in force for each upload that has one (its latest), by upload id."""
        if not self._table_exists("review_decisions"):
            return []
        rows = self.db.execute(
            f"SELECT {_DECISION_COLUMNS} FROM review_decisions WHERE decision_id IN "
            "(SELECT MAX(decision_id) FROM review_decisions GROUP BY upload_id) "
            "ORDER BY upload_id"
        ).fetchall()
        return [_decision(r) for r in rows]

    # -- writes --------------------------------------------------------------------------------
    @reports_errors("add works to")
    def commit_batch(self, items: list[NewWork]) -> list[Committed]:
        """Record one upload per item and store new content, atomically, in input order.

        Audio already in the catalog is not stored again: the item becomes an ``identical``
        upload of the existing work. An item whose source file (absolute path) is already
        recorded with that content is ``present`` and records nothing."""
        out: list[Committed] = []
        with self._writing("add works to"):
            fresh: list[tuple[int, NewWork]] = []
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for item in items:
                    work_id = self.find_live_sha(item.sha256)
                    if work_id is None:
                        work_id = self._insert_work(item)
                        fresh.append((work_id, item))
                        status = "added"
                    else:
                        status = "identical"
                        known = self._recorded_source(work_id, item.path)
                        if known is not None:
                            self._note_file_check(known, item)
                            out.append(Committed(work_id, known, "present"))
                            continue
                    upload = _new_upload(item, work_id)
                    upload_id = self._insert_upload(
                        upload, removed=False, stat=(item.file_size, item.file_mtime)
                    )
                    self._note_file_check(upload_id, item)
                    out.append(Committed(work_id, upload_id, status))
                # a split catalog routes each new work to its group's own shard
                new = dict(fresh)
                for group in split_by_group(list(new), self.shard_groups()):
                    self._write_shard([(w, new[w].fingerprint) for w in group])
                self.db.execute("COMMIT")
            except BaseException:
                self._abandon()
                raise
            if fresh:
                self._fold_log()
        if fresh:
            self._merge_after_commit()
        return out

    def _abandon(self) -> None:
        """Roll back and remove the files the failed transaction wrote: on a full disk that is
        the space the next attempt needs. Caller holds the writer lock."""
        self._rollback()
        with contextlib.suppress(sqlite3.Error, OSError):
            self._sweep_orphans()

    def _note_file_check(self, upload_id: int, item: NewWork) -> None:
        """Keep the size, time and inode of a file just recorded, or read again and found to
        hold its upload's audio, as they were when it was last seen unchanged since its decoding
        (``item.checked_at``, before the batch waited for the writer lock; nothing when it
        changed meanwhile, :func:`audiodup.ingest._as_committed`), for the quick check of
        later runs (:meth:`find_unchanged_file`). A change after that look has a later ctime
        than it, where the commit's own time could follow a change made while the batch
        waited; and a file whose inode changed without new content (a chmod, a restore from
        backup) is read once, not by every later run. Inside the caller's transaction."""
        if None in (item.checked_at, item.file_size, item.file_mtime, item.file_identity):
            return
        for statement in _FILE_CHECK_SCHEMA:
            self.db.execute(statement)
        device, inode = item.file_identity[:2]
        self.db.execute(
            "INSERT OR REPLACE INTO file_checks (upload_id, file_size, file_mtime, file_device, "
            "file_inode, checked_at) VALUES (?, ?, ?, ?, ?, ?)",
            (upload_id, item.file_size, item.file_mtime, str(device), str(inode), item.checked_at),
        )

    def _recorded_source(self, work_id: int, source_path: str) -> int | None:
        """The upload that records ``work_id``'s audio as what ``source_path`` holds now: the
        path's latest live upload, when it is of that work (a path that held A, then B, then A
        again holds a new upload of A)."""
        row = self.db.execute(
            "SELECT work_id, upload_id FROM uploads WHERE source_path IN (?, ?) "
            "AND removed = 0 ORDER BY upload_id DESC LIMIT 1",
            _path_forms(source_path, self._text_names),
        ).fetchone()
        return None if row is None or int(row[0]) != work_id else int(row[1])

    def _insert_upload(
        self, upload: UploadInfo, removed: bool, stat: tuple[int | None, float | None]
    ) -> int:
        """Insert one ledger row (its id is ``upload.upload_id`` when that is not 0)."""
        cursor = self.db.execute(
            "INSERT INTO uploads (upload_id, work_id, role, source_path, sha256, file_size, "
            "file_mtime, title, artist, uploader, uploaded_at, isrc, upc, external_id, extra, "
            "recorded_at, removed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                upload.upload_id or None,
                upload.work_id,
                upload.role,
                _path_value(upload.source_path),
                upload.sha256,
                *stat,
                *(getattr(upload, name) for name in UPLOAD_FIELDS),
                json.dumps(upload.extra, sort_keys=True),
                upload.recorded_at,
                int(removed),
            ),
        )
        return int(cursor.lastrowid)

    def _insert_work(self, item: NewWork) -> int:
        """Insert the work's row and fingerprint; ``_write_shard`` fills in its index counts."""
        cursor = self.db.execute(
            "INSERT INTO works (path, title, artist, duration_s, sha256, recipe, added_at, "
            "file_size, file_mtime, metadata, n_hashes, n_segments) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _path_value(item.path),
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

    def _write_shard(self, entries: Sequence[tuple[int, Fingerprint]]) -> int:
        """Build the index files of ``entries``, put them in place, record the shard and point
        its works at it with their entry counts (inside the caller's transaction)."""
        if HASH_LAYOUT == "faiss":  # built whole in RAM: only tests write this layout now
            shard = build_shard(entries, self.settings)
            files = ShardFiles(
                write_hash_shard(faiss_hash_index(shard.hash_index), shard.bucket_sizes),
                shard.n_hashes,
                write_index(shard.chroma_index, binary=False),
                shard.n_segments,
                write_quad_shard(shard.quad_index),
                shard.counts,
            )
            return self._put_shard(files, hash_layout="faiss")
        with SpillFolder(self.root / _SHARDS) as folder:
            return self._put_shard(build_shard_files(entries, self.settings, folder))

    def _put_shard(
        self, files: ShardFiles, *, hash_layout: str = "sorted", keep_hash_counts: bool = False
    ) -> int:
        """Put a shard's files in place, record it and point its works at it (``keep_hash_counts``:
        their hash entries are as recorded)."""
        names = _new_shard_names(hash_layout)
        self._put_files(names, files)
        return self._record_shard(names, files, keep_hash_counts=keep_hash_counts)

    def _put_files(
        self, names: tuple[str, str, str], files: ShardFiles, folder: Path | None = None
    ):
        """Write a shard's hash, chroma and four-peak files under ``names`` in ``folder``
        (default: ``shards/``)."""
        writers = (files.write_hashes, files.write_chroma, files.write_quads)
        for name, write in zip(names, writers, strict=True):
            self._put_file(name, write, folder)

    def _note_quads_from(self, shard_id: int) -> None:
        """Keep the first shard id from which every shard has a four-peak file (the shards
        before it were written before them): a shard from there on without one has lost it, and
        verify says so. Set once, at the first shard recorded with this rule: the lowest shard
        that already has its file, else this one (inside the caller's transaction)."""
        if self.db.execute(f"SELECT 1 FROM meta WHERE key = '{_QUADS_FROM}'").fetchone():
            return
        first = shard_id
        for other, hash_file in self.db.execute(
            "SELECT shard_id, hash_file FROM shards WHERE shard_id < ? ORDER BY shard_id DESC",
            (shard_id,),
        ).fetchall():
            if not self._shard_path(quad_file_of(hash_file)).exists():
                break
            first = other
        self.db.execute("INSERT INTO meta VALUES (?, ?)", (_QUADS_FROM, str(first)))

    def _record_shard(
        self, names: tuple[str, str, str], files: ShardFiles, *, keep_hash_counts: bool
    ) -> int:
        """Record a shard whose files are in place and point its works at it (inside the
        caller's transaction)."""
        hash_file, chroma_file, _ = names
        cursor = self.db.execute(
            "INSERT INTO shards (hash_file, chroma_file, n_hashes, n_segments, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (hash_file, chroma_file, files.n_hashes, files.n_segments, _now()),
        )
        shard_id = int(cursor.lastrowid)
        self._note_quads_from(shard_id)
        if keep_hash_counts:
            self.db.executemany(
                "UPDATE works SET n_segments = ?, shard_id = ? WHERE work_id = ?",
                [(n, shard_id, w) for _, n, w in files.counts],
            )
        else:
            self.db.executemany(
                "UPDATE works SET n_hashes = ?, n_segments = ?, shard_id = ? WHERE work_id = ?",
                [(h, n, shard_id, w) for h, n, w in files.counts],
            )
        return shard_id

    def _mergeable_hashes(self, old: list, ids: list[int]) -> list[SortedHashShard] | None:
        """The sorted hash shards of ``old`` shard rows, when every one is sorted, intact and
        holds what the works table says (None: regenerate instead)."""
        if HASH_LAYOUT != "sorted":
            return None
        shards = []
        for _, hash_file, _ in old:
            try:
                stored = read_hash_shard(self._shard_path(hash_file)).index
            except (RuntimeError, OSError, CatalogError):
                return None
            if not isinstance(stored, SortedHashShard) or not sorted_ids_intact(stored):
                return None
            shards.append(stored)
        in_shards = self.db.execute(
            "SELECT COALESCE(SUM(n_hashes), 0) FROM works WHERE shard_id IN "
            f"({','.join(str(int(s)) for s, _, _ in old)})"
        ).fetchone()[0]
        if in_shards != sum(s.ntotal for s in shards):
            return None
        return shards

    def _write_merged_shard(
        self, entries: StoredFingerprints, hash_shards: list[SortedHashShard]
    ) -> int:
        """Like :meth:`_write_shard`, the hash file merged from ``hash_shards`` (the entries of
        ``entries``' works only) rather than hashed again."""
        with SpillFolder(self.root / _SHARDS) as folder:
            merged = self._shard_files(entries, folder, hash_shards)
            return self._put_shard(merged, keep_hash_counts=True)

    def _shard_files(
        self,
        entries: StoredFingerprints,
        folder: SpillFolder,
        hash_shards: list[SortedHashShard] | None,
    ) -> ShardFiles:
        """The files of a shard of ``entries``: its hash file merged from ``hash_shards``, or
        (None) hashed from the fingerprints."""
        if hash_shards is None:
            return build_shard_files(entries, self.settings, folder)
        live = np.zeros(max(entries.work_ids) + 1, dtype=bool)
        live[entries.work_ids] = True

        def is_live(works: np.ndarray) -> np.ndarray:
            return (works < len(live)) & live[np.minimum(works, len(live) - 1)]

        hash_writer, n_hashes = merge_sorted_hash_shards(hash_shards, is_live)
        files = build_shard_files(entries, self.settings, folder, hashes=False)
        return replace(files, write_hashes=hash_writer, n_hashes=n_hashes)

    def _chroma_index(self, training: np.ndarray | None):
        return new_chroma_index(training, self.settings)

    def _put_file(
        self,
        name: str,
        write: Callable[[Callable[[bytes], object]], None],
        folder: Path | None = None,
    ) -> None:
        """Write one index file through ``write(file.write)`` under a temporary name, fsync it
        and rename it into place (in ``folder``, default ``shards/``). FAISS's own file writer
        only prints a failed close (a full disk can surface there) and goes on; through a Python
        file every write, flush and fsync error is raised, so a truncated file is never put in
        place."""
        final = (self.root / _SHARDS if folder is None else folder) / name
        # a fixed temporary name, under the writer lock: the catalog's clean-up knows it
        replace_file(final, lambda handle: write(handle.write), tmp=final.with_name(f".tmp-{name}"))

    # -- merging shards, outside the writer lock ------------------------------------------------
    @reports_errors("merge the shards of")
    def merge_due_shards(self) -> int:
        """Merge the runs of shards :func:`audiodup.compaction.shards_to_merge` plans, per
        shard group, until none is due; returns how many merges were made.

        The writer lock is held only to plan a merge and to put it in place. Between, the merged
        shard is built in a ``shards/.merge-*`` folder from what no writer changes (the shards'
        files and the works' stored fingerprints), so the writes that wait for the lock (an
        upload the service records) wait seconds, not the minutes of a large merge. One merge
        runs at a time per catalog (the merge lock): while another process's runs, this returns
        0. A merge whose shards a rebuild, split or re-key replaced meanwhile is dropped."""
        if self.read_only is not None or self.rekey_from is not None:
            return 0
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.root / _MERGE_LOCK_FILE))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return 0
        try:
            merges = 0
            while (due := self._due_merge()) is not None and self._merge(due):
                merges += 1
            return merges
        finally:
            lock.release()

    def _due_merge(self) -> _Regeneration | None:
        """The first group's due merge: its shards and their works, read under the writer
        lock; when a snapshot read without it finds none due, the lock is not taken (the
        service asks after every upload it records)."""
        if self.due_merge_run() is None:
            return None
        with self._writing("merge the shards of"):
            run = self._due_run()
            return None if run is None else self._regeneration_rows(run, None)

    @reports_errors("read")
    def due_merge_run(self) -> list[int] | None:
        """The shard ids of the first group's due merge, read in a snapshot without the writer
        lock (None: none is due)."""
        self.db.execute("BEGIN")
        try:
            return self._due_run()
        finally:
            self._rollback()  # a read transaction: nothing to commit

    def _due_run(self) -> list[int] | None:
        """The shard ids of the first group's due merge (None: none is due)."""
        sizes = dict(self.db.execute("SELECT shard_id, n_hashes FROM shards").fetchall())
        n_groups = self.shard_groups()
        groups = self.group_shards(n_groups).values() if n_groups else [sorted(sizes)]
        for shard_ids in groups:
            run = shards_to_merge([sizes[s] for s in shard_ids], self.settings.max_shards)
            if run:
                return [shard_ids[i] for i in run]
        return None

    def _merge(self, due: _Regeneration) -> bool:
        """Build ``due``'s merged shard in its own folder, then put it in place of the shards
        it merges, unless they are gone (False). Its checks (room, sorted hash shards intact)
        run here too, outside the writer lock; a damaged fingerprint stops the build, before
        anything is put in place."""
        if not due.groups:  # the shards hold removed works only
            return self._put_merged(due, None)
        (work_ids,) = due.groups
        hash_shards = self._mergeable_hashes(due.old, work_ids)
        self._require_room(due.groups, due.counts, hashed=hash_shards is None)
        folder = self.root / _SHARDS / f"{_MERGE_PREFIX}{uuid.uuid4().hex[:12]}"
        try:
            folder.mkdir()
            entries = StoredFingerprints(work_ids, self.fingerprint)
            names = _new_shard_names("sorted" if hash_shards is not None else HASH_LAYOUT)
            with SpillFolder(folder) as spill:
                files = self._shard_files(entries, spill, hash_shards)
                self._put_files(names, files, folder)
            return self._put_merged(due, (folder, names, files, hash_shards is not None))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _put_merged(
        self, due: _Regeneration, built: tuple[Path, tuple[str, str, str], ShardFiles, bool] | None
    ) -> bool:
        """Under the writer lock: move a merged shard's files in from the folder they were
        built in, record it and drop the shards it replaces, in one transaction (``built``
        None: they held removed works only); False when they are no longer all there."""
        with self._writing("merge the shards of"):
            ids = ",".join(str(int(shard_id)) for shard_id, _, _ in due.old)
            now = self.db.execute(
                f"SELECT shard_id, hash_file, chroma_file FROM shards WHERE shard_id IN ({ids})"
            ).fetchall()
            if sorted(now) != sorted(due.old):
                return False
            shards = self.root / _SHARDS
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if built is not None:
                    folder, names, files, hashes_merged = built
                    for name in names:
                        os.replace(folder / name, shards / name)
                    fsync_folder(shards)
                    self._record_shard(names, files, keep_hash_counts=hashes_merged)
                self.db.execute(f"DELETE FROM shards WHERE shard_id IN ({ids})")
                self.db.execute("COMMIT")
            except BaseException:
                self._abandon()
                raise
            self._unlink_shard_files(due.old)
            self._fold_log()
        return True

    def compact(self, among: list[int] | None = None) -> None:
        """Merge shards (``among`` them, default all) into one per shard group, dropping removed
        works. Caller holds the write lock."""
        shards = [s for (s,) in self.db.execute("SELECT shard_id FROM shards ORDER BY shard_id")]
        if among is not None:
            wanted = set(among)
            shards = [s for s in shards if s in wanted]
        self._regenerate(shards)

    # -- shard groups: a catalog split across machines (audiodup.sharded) -----------------------
    def shard_groups(self) -> int:
        """How many groups the shards are split into (0: not split). Work ``w`` belongs to group
        ``w % n_groups`` and every shard holds works of one group only, so a machine can hold
        one group's shards and screen against them alone."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'shard_groups'").fetchone()
        return int(row[0]) if row else 0

    def group_shards(self, n_groups: int) -> dict[int, list[int]]:
        """The shard ids of each group, in shard order (only shards that exist: a removed
        work keeps the id of the shard it was in, which a merge may since have replaced)."""
        rows = self.db.execute(
            "SELECT DISTINCT w.shard_id, w.work_id % ? FROM works AS w "
            "JOIN shards AS s ON s.shard_id = w.shard_id ORDER BY w.shard_id",
            (n_groups,),
        ).fetchall()
        groups: dict[int, list[int]] = {}
        for shard_id, group in rows:
            groups.setdefault(int(group), []).append(int(shard_id))
        return groups

    @reports_errors("split the shards of")
    def split_shards(self, n_groups: int) -> None:
        """Rebuild the shards as ``n_groups`` groups (one shard each; 0 joins them into one),
        in one transaction: the catalog is either split or as it was."""
        if not 0 <= n_groups <= MAX_SHARD_GROUPS:
            raise CatalogError(f"shard groups must be 0 to {MAX_SHARD_GROUPS}, not {n_groups}")
        with self._writing("split the shards of"):
            self._regenerate(None, n_groups=n_groups)
            self._fold_log()

    def _regenerate(
        self,
        shard_ids: list[int] | None,
        *,
        n_groups: int | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """Replace the given shards (None: all) by one shard per shard group built from stored
        fingerprints (one shard in a catalog that is not split); ``n_groups`` splits it anew.
        ``before_commit`` writes more in the same transaction."""
        rows = self._regeneration_rows(shard_ids, n_groups)
        old, groups, counts = rows.old, rows.groups, rows.counts
        ids = [work_id for group in groups for work_id in group]
        may_merge = shard_ids is not None and len(groups) == 1 and HASH_LAYOUT == "sorted"
        self._require_room(groups, counts, hashed=not may_merge)
        # every stored fingerprint checked first (nothing is written when one is damaged), then
        # decoded again as the shard is built: compacting 10^5 works held 12 GB of them at once
        self._require_readable(ids, "the index cannot be regenerated")
        # compaction within one group merges sorted hash shards as they are (the same file a
        # rebuild would write, without hashing every work again); rebuild regenerates all, to repair
        mergeable = (
            self._mergeable_hashes(old, ids) if shard_ids is not None and len(groups) == 1 else None
        )
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for group in groups:
                entries = StoredFingerprints(group, self.fingerprint)
                if mergeable is not None:
                    self._write_merged_shard(entries, mergeable)
                else:
                    self._write_shard(entries)
            if n_groups is not None:
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('shard_groups', ?)", (str(n_groups),)
                )
            for shard_id, _, _ in old:
                self.db.execute("DELETE FROM shards WHERE shard_id = ?", (shard_id,))
            if before_commit is not None:
                before_commit()
            self.db.execute("COMMIT")
        except BaseException:
            self._abandon()
            raise
        self._unlink_shard_files(old)

    def _regeneration_rows(
        self, shard_ids: list[int] | None, n_groups: int | None
    ) -> _Regeneration:
        """The rows regenerating ``shard_ids`` (None: all) replaces, and the live works of
        each shard it builds."""
        listed = "" if shard_ids is None else ",".join(str(int(s)) for s in shard_ids)
        where = "" if shard_ids is None else f"AND shard_id IN ({listed})"
        counts = {
            work_id: (n_hashes, n_segments)
            for work_id, n_hashes, n_segments in self.db.execute(
                "SELECT work_id, COALESCE(n_hashes, 0), COALESCE(n_segments, 0) FROM works "
                f"WHERE removed = 0 {where} ORDER BY work_id"
            )
        }
        ids = list(counts)
        old = self.db.execute(
            "SELECT shard_id, hash_file, chroma_file FROM shards"
            + ("" if shard_ids is None else f" WHERE shard_id IN ({listed})")
        ).fetchall()
        groups = split_by_group(ids, self.shard_groups() if n_groups is None else n_groups)
        return _Regeneration(old, groups, counts)

    def _unlink_shard_files(self, old: list[tuple]) -> None:
        """Delete the files of shard rows just replaced (only names the catalog writes)."""
        for _, hash_file, chroma_file in old:
            for name in (hash_file, chroma_file, quad_file_of(hash_file)):
                if isinstance(name, str) and _OWN_SHARD_FILE.fullmatch(name):
                    (self.root / _SHARDS / name).unlink(missing_ok=True)

    def _require_room(
        self, groups: list[list[int]], counts: dict[int, tuple[int, int]], *, hashed: bool
    ) -> None:
        """Raise ``DiskFullError`` when the free disk cannot hold what building a shard of each
        of ``groups`` writes: the new files and the largest spill (:func:`regeneration_bytes`,
        from the works' recorded entry counts: a re-key's are its former recipe's). It would
        otherwise fail at its end, minutes later at 10^5 works."""
        sizes = [
            (sum(counts[w][0] for w in group), sum(counts[w][1] for w in group)) for group in groups
        ]
        needed = regeneration_bytes(sizes, chroma_dim(self.settings), hashed=hashed)
        free = _free_bytes(self.root / _SHARDS)
        if free is not None and free < needed:
            raise DiskFullError(
                f"cannot regenerate the index of catalog {path_text(self.root)}: it needs about "
                f"{_gigabytes(needed)} of free disk, {_gigabytes(free)} are free; free some "
                "space and try again"
            )

    def _require_readable(self, work_ids: list[int], what: str) -> None:
        """Raise ``CatalogDamagedError`` (``what``: why it matters) when a stored fingerprint
        of ``work_ids`` cannot be decoded, naming them and what to do."""
        problems = self._unreadable(work_ids)
        if problems:
            unusable = list(problems)
            raise CatalogDamagedError(
                f"{what}: {_unusable(unusable, problems[unusable[0]])}, then rebuild"
            )

    def _unreadable(self, work_ids: list[int]) -> dict[int, str]:
        """What is wrong with the stored fingerprint of each of ``work_ids`` that cannot be
        decoded (each decoded and let go)."""
        problems = {}
        for work_id in work_ids:
            found = self._stored_fingerprint(work_id)
            if isinstance(found, str):
                problems[work_id] = found
        return problems

    @reports_errors("upgrade")
    def pad_chroma_shards(self) -> int:
        """Rewrite the chroma files stored before their vectors were padded for FAISS's SIMD
        scan (:func:`audiodup.index.padded_chroma_index`: the same lists and codes), in
        one transaction; the number of shards rewritten."""
        with self._writing("upgrade"):
            shards = self.db.execute("SELECT shard_id, chroma_file FROM shards").fetchall()
            replaced = []
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for shard_id, chroma_file in shards:
                    try:
                        stored = read_index(self._shard_path(chroma_file), binary=False)
                    except RuntimeError as exc:
                        raise CatalogDamagedError(
                            f"chroma shard {shard_id} is unreadable ({_first_line(exc)}); "
                            "run 'audiodup index rebuild'"
                        ) from None
                    padded = padded_chroma_index(stored)
                    if padded is None:
                        continue
                    name = f"c-{uuid.uuid4().hex[:12]}.faiss"
                    self._put_file(name, write_index(padded, binary=False))
                    self.db.execute(
                        "UPDATE shards SET chroma_file = ? WHERE shard_id = ?", (name, shard_id)
                    )
                    replaced.append(chroma_file)
                self.db.execute("COMMIT")
            except BaseException:
                self._abandon()
                raise
            for name in replaced:
                (self.root / _SHARDS / name).unlink(missing_ok=True)
            self._fold_log()
            return len(replaced)

    @reports_errors("upgrade")
    def write_missing_quads(self) -> int:
        """Write the four-peak file of every shard written before them, from its live works'
        stored fingerprints (the shard's other files and rows stay as they are); the number of
        files written. A reader that loaded the catalog before loads it again (:meth:`index_key`
        changes)."""
        with self._writing("upgrade"):
            shards = self.db.execute("SELECT shard_id, hash_file FROM shards").fetchall()
            written = 0
            try:
                for shard_id, hash_file in shards:
                    written += self._write_missing_quads(shard_id, hash_file)
            finally:
                if written:  # readers holding the indexes load them again (index_key)
                    with self._transaction() as db:
                        db.execute(
                            "INSERT OR REPLACE INTO meta VALUES ('index_files', ?)",
                            (uuid.uuid4().hex[:12],),
                        )
            return written

    def _write_missing_quads(self, shard_id: int, hash_file: str) -> int:
        """Write the shard's four-peak file if it has none; 1 if written."""
        name = quad_file_of(hash_file)
        if not name or self._shard_path(name).exists():
            return 0
        ids = [
            r[0]
            for r in self.db.execute(
                "SELECT work_id FROM works WHERE shard_id = ? AND removed = 0 ORDER BY work_id",
                (shard_id,),
            )
        ]
        self._require_readable(ids, f"shard {shard_id}'s four-peak index cannot be written")
        with SpillFolder(self.root / _SHARDS) as folder:
            fingerprints = StoredFingerprints(ids, self.fingerprint)
            self._put_file(name, quad_file_of_works(fingerprints, self.settings, folder))
        return 1

    @reports_errors("re-key")
    def rekey(self) -> int:
        """Bring a catalog opened with ``rekey`` to this recipe: every index file made again from
        the stored fingerprints under it, and the recipe recorded, in one transaction (a reader
        sees the old index and recipe or the new ones). Returns the works re-keyed (0: the
        catalog was this recipe's already). A stored fingerprint keeps the id of the recipe
        it was made under: its peaks and chroma are this recipe's too."""
        if self.rekey_from is None:
            return 0
        with self._writing("re-key"):
            works = self.db.execute("SELECT COUNT(*) FROM works WHERE removed = 0").fetchone()[0]
            self._regenerate(None, before_commit=self._record_recipe)
            self._sweep_orphans()
            self._fold_log()
        self.rekey_from = None
        return int(works)

    def _record_recipe(self) -> None:
        stored = self.stored_settings_json() or self.settings.to_json()
        self.db.execute(
            "UPDATE meta SET value = ? WHERE key = 'settings'",
            (rekeyed_settings_json(stored, self.settings),),
        )
        self.db.execute("UPDATE meta SET value = ? WHERE key = 'recipe'", (self.settings.recipe,))

    @reports_errors("rebuild")
    def rebuild(self) -> None:
        """Regenerate every index file from the fingerprints stored in SQLite (recreating a
        missing ``shards/`` folder)."""
        with self._writing("rebuild"):
            self._regenerate(None)
            self._sweep_orphans()
            self._fold_log()

    def _merge_after_commit(self) -> None:
        """After a commit that wrote a shard (and released the writer lock): make the merges
        due, unless ``merge_after_commit`` is off (the service merges in a child process).
        Merging only saves look-up time: a catalog it cannot merge now (a damaged fingerprint, a
        full disk) stays sound with more shards, and the batch is committed, so that is not the
        caller's failure (verify names the cause)."""
        if self.merge_after_commit:
            with contextlib.suppress(CatalogError, sqlite3.Error, OSError):
                self.merge_due_shards()

    def finish_interrupted(self) -> None:
        """For an ``index add`` that added no work (an interrupted run's files all present): make
        the merge that run left due, or remove what interrupted writes left in ``shards/``, as
        its own commit would have. Best effort, as after a commit (verify names the cause)."""
        if self.read_only is not None or self.rekey_from is not None:
            return
        with contextlib.suppress(CatalogError, sqlite3.Error, OSError):
            if self._leftovers():  # first: a merge running here would keep a merge's folder
                with self._writing("tidy"):
                    pass  # the writer's tidying is the work
            if self.due_merge_run() is not None:
                self._merge_after_commit()

    @reports_errors("read")
    def _leftovers(self) -> bool:
        """Whether ``shards/`` holds what an interrupted write left (read without the lock)."""
        self.db.execute("BEGIN")
        try:
            referenced = self._referenced_files()
        finally:
            self._rollback()
        return next(self._left_by_writes(referenced), None) is not None

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

    @reports_errors("remove a work from")
    def remove(self, work_id: int) -> bool:
        # no tidying: removing a work with a damaged fingerprint is how a user repairs a catalog,
        # and it must work whatever state shards/ is in
        if not is_stored_id(work_id):
            return False
        with self._writing("remove a work from", tidy=False), self._transaction() as db:
            cursor = db.execute(
                "UPDATE works SET removed = 1 WHERE work_id = ? AND removed = 0", (work_id,)
            )
            if self._has_ledger:
                db.execute("UPDATE uploads SET removed = 1 WHERE work_id = ?", (work_id,))
            return cursor.rowcount > 0

    def _sweep_orphans(self) -> None:
        """Delete what interrupted writes left in ``shards/``: files of the catalog's own names
        (index files and their temporaries) that no committed row references, and the folders
        a shard's build spilled to, and a merge's folder unless a merge is running (its merger
        holds the merge lock). Other sub-folders and files of other names are not the catalog's
        and stay. Caller holds the writer lock."""
        merging: bool | None = None  # probed once, when a merge folder is found
        for entry in self._left_by_writes(self._referenced_files()):
            if _is_merge_folder(entry):
                merging = (
                    _lock_is_held(self.root / _MERGE_LOCK_FILE) if merging is None else merging
                )
                if not merging:
                    shutil.rmtree(entry.path, ignore_errors=True)
            elif _is_spill_folder(entry):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def _left_by_writes(self, referenced: set[str]) -> Iterator[os.DirEntry]:
        """What interrupted writes left in ``shards/``: merge and spill folders, and files of
        the catalog's own names, that no committed row (``referenced``) names."""
        for entry in _entries(self.root / _SHARDS):
            if entry.name in referenced:
                continue
            own = _OWN_SHARD_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
            if own or _is_merge_folder(entry) or _is_spill_folder(entry):
                yield entry

    # -- the service's ledger of screened uploads ----------------------------------------------
    @reports_errors("record an upload in")
    def record_screened_upload(
        self, item: NewWork, screening: Screening
    ) -> tuple[Committed, Screening]:
        """Record one upload with its screening in one transaction: the upload, its content
        (stored once: audio already present makes it ``identical``) and the screening row.

        Unlike :meth:`commit_batch` an upload is never ``present``: the service names received
        files by their bytes, and the same bytes sent again are another upload. When the
        screening's ``(client, idempotency_key)`` is already recorded nothing is written and the
        earlier upload and screening come back (status ``present``); the caller compares the
        request hashes."""
        with self._writing("record an upload in"):
            fresh = False
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCREENING_SCHEMA:
                    self.db.execute(statement)
                if screening.idempotency_key is not None:
                    earlier = self._screening_by_key(screening.client, screening.idempotency_key)
                    if earlier is not None:
                        self._rollback()
                        row = self.db.execute(
                            "SELECT work_id FROM uploads WHERE upload_id = ?",
                            (earlier.upload_id,),
                        ).fetchone()
                        work_id = int(row[0]) if row is not None else 0
                        return Committed(work_id, earlier.upload_id, "present"), earlier
                work_id = self.find_live_sha(item.sha256)
                if work_id is None:
                    work_id = self._insert_work(item)
                    fresh = True
                upload_id = self._insert_upload(
                    _new_upload(item, work_id),
                    removed=False,
                    stat=(item.file_size, item.file_mtime),
                )
                recorded = Screening(**{**screening.__dict__, "upload_id": upload_id})
                self.db.execute(
                    "INSERT INTO screenings (upload_id, verdict, result, screened_at, client, "
                    "idempotency_key, request_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        upload_id,
                        recorded.verdict,
                        recorded.result,
                        recorded.screened_at,
                        recorded.client,
                        recorded.idempotency_key,
                        recorded.request_hash,
                    ),
                )
                if fresh:
                    self._write_shard([(work_id, item.fingerprint)])
                self.db.execute("COMMIT")
            except BaseException:
                self._abandon()
                raise
            if fresh:
                self._fold_log()
        if fresh:
            self._merge_after_commit()
        return Committed(work_id, upload_id, "added" if fresh else "identical"), recorded

    def _screening_by_key(self, client: str, idempotency_key: str) -> Screening | None:
        row = self.db.execute(
            f"SELECT {_SCREENING_COLUMNS} FROM screenings WHERE client = ? AND idempotency_key = ?",
            (client, idempotency_key),
        ).fetchone()
        return None if row is None else Screening(*row)

    @reports_errors("read the screenings of")
    def screening_by_key(self, client: str, idempotency_key: str) -> Screening | None:
        """The screening a client recorded under ``idempotency_key``, if any."""
        if not self._table_exists("screenings"):
            return None
        return self._screening_by_key(client, idempotency_key)

    @reports_errors("read the screenings of")
    def screenings(self, upload_ids: list[int]) -> dict[int, Screening]:
        """The service's screenings of these uploads (uploads it did not screen are absent)."""
        if not upload_ids or not self._table_exists("screenings"):
            return {}
        found: dict[int, Screening] = {}
        for start in range(0, len(upload_ids), 500):
            chunk = [int(u) for u in upload_ids[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                f"SELECT {_SCREENING_COLUMNS} FROM screenings WHERE upload_id IN ({marks})", chunk
            ):
                found[int(row[0])] = Screening(*row)
        return found

    @reports_errors("read the uploads of")
    def find_uploads(
        self,
        *,
        verdict: str | None = None,
        uploader: str | None = None,
        since: str | None = None,
        after_id: int = 0,
        limit: int = 100,
        upload_id: int | None = None,
    ) -> list[tuple[UploadInfo, Screening | None]]:
        """Live uploads in order of their ids with the service's screening of each (None when
        the service did not screen it). Filters: ``verdict`` (only screened uploads),
        ``uploader`` (exact), ``since`` (recorded at or after this UTC ISO 8601 time),
        uploads after ``after_id``, at most ``limit``; or the one ``upload_id``."""
        if not self._has_ledger:
            # a first-layout catalog opened read-only: the service never screened into it
            found = [
                u
                for u in self.uploads()
                if verdict is None
                and u.upload_id > after_id
                and upload_id in (None, u.upload_id)
                and uploader in (None, u.uploader)
                and (since is None or u.recorded_at >= since)
            ]
            return [(u, None) for u in found[:limit]]
        screened = self._table_exists("screenings")
        columns = ", ".join(f"u.{c.strip()}" for c in _UPLOAD_COLUMNS.split(","))
        joined = (
            ", " + ", ".join(f"s.{c.strip()}" for c in _SCREENING_COLUMNS.split(","))
            if screened
            else ""
        )
        sql = f"SELECT {columns}{joined} FROM uploads u"
        sql += " LEFT JOIN screenings s ON s.upload_id = u.upload_id" if screened else ""
        where, args = ["u.removed = 0", "u.upload_id > ?"], [int(after_id)]
        if upload_id is not None:
            where.append("u.upload_id = ?")
            args.append(int(upload_id))
        if verdict is not None:
            if not screened:
                return []
            where.append("s.verdict = ?")
            args.append(verdict)
        if uploader is not None:
            where.append("u.uploader = ?")
            args.append(uploader)
        if since is not None:
            where.append("u.recorded_at >= ?")
            args.append(since)
        sql += f" WHERE {' AND '.join(where)} ORDER BY u.upload_id LIMIT ?"
        args.append(int(limit))
        out = []
        width = len(_UPLOAD_COLUMNS.split(","))
        for row in self.db.execute(sql, args):
            upload = _upload_info(row[:width])
            rest = row[width:]
            out.append((upload, Screening(*rest) if rest and rest[0] is not None else None))
        return out

    # -- reporting -----------------------------------------------------------------------------
    @reports_errors("read the statistics of")
    def stats(self) -> CatalogStats:
        works, seconds = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(duration_s), 0) FROM works WHERE removed = 0"
        ).fetchone()
        n_hashes, n_segments, n_shards = self.db.execute(
            "SELECT COALESCE(SUM(n_hashes), 0), COALESCE(SUM(n_segments), 0), COUNT(*) FROM shards"
        ).fetchone()
        uploads, references = (
            self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(role = 'reference'), 0) FROM uploads "
                "WHERE removed = 0"
            ).fetchone()
            if self._has_ledger
            else (works, 0)
        )
        # the catalog's own files only: whatever else lies in its folders is not its size
        index_bytes = sum(
            _file_size(self.root / _SHARDS / name)
            for name in self._referenced_files()
            if isinstance(name, str) and _OWN_SHARD_FILE.fullmatch(name)
        )
        catalog_bytes = index_bytes + sum(
            _file_size(self.root / f"{_DB_FILE}{suffix}") for suffix in ("", "-wal", "-shm")
        )
        hours = seconds / 3600.0
        return CatalogStats(
            works=works,
            hours=hours,
            index_bytes=index_bytes,
            catalog_bytes=catalog_bytes,
            bytes_per_work=catalog_bytes / works if works else 0.0,
            bytes_per_hour=catalog_bytes / hours if hours else 0.0,
            hash_entries=n_hashes,
            chroma_vectors=n_segments,
            shards=n_shards,
            uploads=uploads,
            references=references,
        )

    def verify(self) -> list[str]:
        """Integrity problems found (empty when the catalog is sound)."""
        return list(self.check().problems)

    def check(self) -> CatalogCheck:
        """Check the catalog and report every finding; damage is a finding, never an exception.

        Problems: SQLite's integrity check, live works without a readable fingerprint or with a
        damaged row, live works in no shard, shards whose files are unreadable or hold other
        counts than the catalog expects or saved bucket sizes that do not count their index.
        Removed works are not checked: removing a damaged work is a repair. Notes: leftovers of
        interrupted writes, foreign entries in ``shards/``, a merge due that has not run."""
        problems: list[str] = []
        notes: list[str] = []
        checks = (
            ("the SQLite integrity check", self._check_sqlite),
            ("the works", self._check_works),
            ("the index shards", self._check_shards),
        )
        for what, step in checks:
            try:
                step(problems)
            except (CatalogError, sqlite3.Error, OSError) as exc:
                problems.append(f"{what} could not be checked: {exc}")
                self._rollback()
        try:
            notes.extend(self._shards_folder_notes())
            notes.extend(self._writer_lock_note())
            notes.extend(self._merge_due_note())
            notes.extend(self._future_dates_note())
        except (sqlite3.Error, OSError) as exc:
            notes.append(f"the shards folder could not be listed: {exc}")
        return CatalogCheck(tuple(problems), tuple(notes))

    def _future_dates_note(self) -> list[str]:
        """A note on live uploads whose stored ``uploaded_at`` is in the future (stored before
        that was refused, or by a clock that ran ahead): they count as undated."""
        from .metadata import is_future, parse_timestamp  # see _changed_before

        if not self._has_ledger:
            return []
        future = []
        for upload_id, text in self.db.execute(
            "SELECT upload_id, uploaded_at FROM uploads WHERE removed = 0 AND uploaded_at "
            "IS NOT NULL ORDER BY upload_id"
        ):
            try:
                if is_future(parse_timestamp(text)):
                    future.append((upload_id, text))
            except (ValueError, OverflowError):
                continue
        if not future:
            return []
        first_id, first_text = future[0]
        return [
            f"{len(future)} live upload(s) have an uploaded_at in the future (upload {first_id}: "
            f"{first_text!r}): originality counts them as undated; correct them with "
            "index update --metadata"
        ]

    def _writer_lock_note(self) -> list[str]:
        """A note when ``catalog.lock`` is no file: every write (index add, rebuild, the
        service's uploads) would fail to take it."""
        lock = self.root / _LOCK_FILE
        if os.path.lexists(lock) and not lock.is_file():
            return [f"{_LOCK_FILE} is not a file: no write can run (remove it)"]
        reason = _unwritable(lock)
        if reason:
            return [f"{_LOCK_FILE} cannot be opened for writing ({reason}): no write can run"]
        return []

    def _merge_due_note(self) -> list[str]:
        """A note when a merge is due and none is running: a catalog whose merges cannot run
        (an unusable ``merge.lock``, a damaged fingerprint) otherwise grows shards silently."""
        lock = self.root / _MERGE_LOCK_FILE
        if os.path.lexists(lock) and not lock.is_file():
            return [f"{_MERGE_LOCK_FILE} is not a file: no shard merge can run (remove it)"]
        if _lock_is_held(lock):
            return []
        due = self.due_merge_run()
        if due is None:
            return []
        return [
            f"a merge of {len(due)} shards is due and has not run (more than "
            f"{self.settings.max_shards} in a shard group): index add merges after its commit, "
            "index rebuild makes one shard per group"
        ]

    def _check_sqlite(self, problems: list[str]) -> None:
        rows = [r[0] for r in self.db.execute("PRAGMA integrity_check(20)").fetchall()]
        if rows != ["ok"]:
            problems.extend(f"sqlite integrity check: {row}" for row in rows)

    def _check_works(self, problems: list[str]) -> None:
        missing = [
            r[0]
            for r in self.db.execute(
                "SELECT w.work_id FROM works w LEFT JOIN fingerprints f USING (work_id) "
                "WHERE f.work_id IS NULL AND w.removed = 0 ORDER BY w.work_id"
            )
        ]
        if missing:
            problems.append(_unusable(missing, f"work {missing[0]} has no stored fingerprint"))
        lacking = set(missing)
        rows = self.db.execute(
            "SELECT work_id, path, title, artist, duration_s, sha256, added_at, metadata "
            "FROM works WHERE removed = 0 ORDER BY work_id"
        ).fetchall()
        for row in rows:
            try:
                _work_info(row)
            except CatalogError as exc:
                problems.append(str(exc))
                continue
            if row[0] not in lacking:
                found = self._stored_fingerprint(row[0])
                if isinstance(found, str):
                    problems.append(_unusable([row[0]], found))
        unindexed = self.db.execute(
            "SELECT COUNT(*) FROM works WHERE removed = 0 AND (shard_id IS NULL OR shard_id NOT "
            "IN (SELECT shard_id FROM shards))"
        ).fetchone()[0]
        if unindexed:
            problems.append(f"{_works(unindexed)} in no index shard")

    def _check_shards(self, problems: list[str], attempts: int = 5) -> None:
        """Each listed shard's files against the catalog. A writer that replaces shards (a
        merge, a rebuild) deletes their files once it has committed: a shard list that
        changed while its files were read is read again, as :meth:`load_indexes` does, so a
        write in progress is never reported as damage."""
        for attempt in range(attempts):
            shards = self._shard_rows()
            found: list[str] = []
            self._check_shard_rows(shards, found)
            if not found or attempt + 1 == attempts or self._shard_rows() == shards:
                problems.extend(found)
                return

    def _shard_rows(self) -> list[tuple]:
        return self.db.execute(
            "SELECT shard_id, hash_file, chroma_file, n_hashes, n_segments FROM shards "
            "ORDER BY shard_id"
        ).fetchall()

    def _check_shard_rows(self, shards: list[tuple], problems: list[str]) -> None:
        if shards and not (self.root / _SHARDS).is_dir():
            problems.append(f"the shards folder {path_text(self.root / _SHARDS)} is missing")
            return
        quads_from = self._quads_from()
        for shard_id, hash_file, chroma_file, n_hashes, n_segments in shards:
            try:
                stored = read_hash_shard(self._shard_path(hash_file))
                chroma = read_chroma_index(self._shard_path(chroma_file))
            except (RuntimeError, OSError, CatalogError) as exc:
                problems.append(f"shard {shard_id}: unreadable index ({_first_line(exc)})")
                continue
            dim = chroma_dim(self.settings)
            if chroma.d not in (dim, chroma_index_dim(dim)):
                problems.append(
                    f"shard {shard_id}: chroma vectors of {chroma.d} columns, the recipe's have "
                    f"{dim}"
                )
            quad_problem = self._check_quads(hash_file, written_with=shard_id >= quads_from)
            if quad_problem:
                problems.append(f"shard {shard_id}: {quad_problem}")
            hashes = stored.index
            if isinstance(hashes, SortedHashShard):
                if not sorted_ids_intact(hashes):
                    problems.append(f"shard {shard_id}: its hash entries fail their checksum")
            # saved sizes that sum right could still be misplaced: count every key again
            elif stored.bucket_sizes is not None and not np.array_equal(
                stored.bucket_sizes, bucket_sizes([hashes])
            ):
                problems.append(f"shard {shard_id}: saved bucket sizes differ from its index")
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

    def _quads_from(self) -> float:
        """The first shard id that must have a four-peak file (:meth:`_note_quads_from`; none
        recorded: no shard must)."""
        row = self.db.execute(f"SELECT value FROM meta WHERE key = '{_QUADS_FROM}'").fetchone()
        return int(row[0]) if row else math.inf

    def _check_quads(self, hash_file: str, written_with: bool) -> str | None:
        """What is wrong with the shard's four-peak file (none: sound, or missing from a shard
        written before them, which :meth:`_shards_folder_notes` counts; ``written_with``: the
        shard was written with one, :meth:`_note_quads_from`)."""
        name = quad_file_of(hash_file)
        if not name:
            return None
        path = self._shard_path(name)
        if not path.exists():
            if written_with:
                return "its four-peak index file is missing ('audiodup index upgrade' writes it)"
            return None
        try:
            quads = read_quad_shard(path, check=True)
        except (RuntimeError, OSError) as exc:
            return f"unreadable four-peak index ({_first_line(exc)})"
        quads.release_pages()
        return None

    def _shards_folder_notes(self) -> list[str]:
        referenced = self._referenced_files()
        leftovers, spills, merges, foreign = 0, 0, 0, []
        for entry in _entries(self.root / _SHARDS):
            if entry.name in referenced:
                continue
            if _is_merge_folder(entry):
                merges += 1
            elif _is_spill_folder(entry):
                spills += 1
            elif _OWN_SHARD_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                leftovers += 1
            else:
                foreign.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
        notes = []
        quads_from = self._quads_from()  # from there on a missing file is a problem instead
        without = sum(
            1
            for shard_id, hash_file in self.db.execute("SELECT shard_id, hash_file FROM shards")
            if quad_file_of(hash_file)
            and shard_id < quads_from
            and not (self.root / _SHARDS / quad_file_of(hash_file)).exists()
        )
        if without:
            notes.append(
                f"{without} {'shard has' if without == 1 else 'shards have'} no four-peak index "
                "(written before it existed): large catalogs find fewer hard copies; "
                "'audiodup index upgrade' writes it"
            )
        files = f"{leftovers} unreferenced index {'file' if leftovers == 1 else 'files'}"
        folders = f"{spills} spill {'folder' if spills == 1 else 'folders'}"
        if (leftovers or spills) and _writer_holds_lock(self.root):
            held = [files] * bool(leftovers) + [folders] * bool(spills)
            notes.append(
                f"{' and '.join(held)} of the write in progress (another process holds the "
                "writer lock)"
            )
        else:
            # remove and the ledger's upload changes leave shards/ as it is
            sweep = "the next index add, rebuild or upgrade removes them"
            if leftovers:
                notes.append(f"{files} left by an interrupted write; {sweep}")
            if spills:
                notes.append(f"{folders} of an interrupted shard build; {sweep}")
        if merges:
            merge_folders = f"{merges} merge {'folder' if merges == 1 else 'folders'}"
            if _lock_is_held(self.root / _MERGE_LOCK_FILE):
                notes.append(
                    f"{merge_folders} of the merge in progress (another process holds the merge "
                    "lock)"
                )
            else:
                notes.append(
                    f"{merge_folders} of an interrupted merge; the next index add, rebuild or "
                    "upgrade removes them"
                )
        for name in sorted(foreign)[:20]:
            notes.append(f"shards/{path_text(name)} is not the catalog's; it is left alone")
        if len(foreign) > 20:
            notes.append(f"... and {len(foreign) - 20} more entries in shards/ that are not")
        return notes


@dataclass(frozen=True)
class _Regeneration:
    """The shard rows a regeneration or merge replaces, the live works of each shard it
    builds, and their recorded (hash, segment) entry counts."""

    old: list[tuple]  # (shard_id, hash_file, chroma_file)
    groups: list[list[int]]
    counts: dict[int, tuple[int, int]]


def _new_shard_names(hash_layout: str) -> tuple[str, str, str]:
    """A new shard's hash, chroma and four-peak file names (a fresh random token)."""
    token = uuid.uuid4().hex[:12]
    hash_file = f"h-{token}.{hash_layout}"
    return hash_file, f"c-{token}.faiss", quad_file_of(hash_file)


# -- errors --------------------------------------------------------------------------------------
def split_by_group(work_ids: list[int], n_groups: int) -> list[list[int]]:
    """``work_ids`` by shard group (``work_id % n_groups``), groups in order, empty ones left
    out; all in one list when the catalog is not split (``n_groups`` 0)."""
    if not n_groups:
        return [list(work_ids)] if work_ids else []
    groups: dict[int, list[int]] = {}
    for work_id in work_ids:
        groups.setdefault(work_id % n_groups, []).append(work_id)
    return [groups[g] for g in sorted(groups)]


def catalog_error(exc: BaseException, root: Path, doing: str) -> CatalogError:
    """The :class:`CatalogError` that says what ``exc``, an SQLite or OS error met while trying
    to ``doing`` catalog ``root`` (``"open"``, ``"add works to"``, ...), means: a full disk, a
    read-only folder, a busy database, an I/O error, missing permissions, each by name; damage
    only when SQLite reports damage (corruption, not a database, missing tables)."""
    where = f"cannot {doing} catalog {path_text(root)}"
    db = root / _DB_FILE
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None) or ""
        said = f"SQLite: {exc}"
        if name.startswith("SQLITE_FULL") or (
            name.startswith("SQLITE_IOERR") and _nearly_full(root)
        ):
            return DiskFullError(
                f"{where}: the disk is full ({said}); free some space and try again (nothing "
                "already committed is lost)"
            )
        if (
            name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
            or "malformed" in str(exc)
            or str(exc).startswith(("no such table", "no such column"))
        ):
            return CatalogDamagedError(
                f"catalog database {path_text(db)} is damaged ({exc}){VERIFY_HINT}"
            )
        if name.startswith("SQLITE_READONLY"):
            return CatalogReadOnlyError(
                f"{where}: it cannot be written here ({_why_not_writable(root)}; {said})"
            )
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return CatalogBusyError(
                f"{where}: another process kept its database locked for over "
                f"{_BUSY_TIMEOUT_S:.0f} s ({said}); try again"
            )
        if name.startswith("SQLITE_IOERR"):
            return CatalogError(
                f"{where}: disk I/O error ({said}, {name}); check the disk, the catalog "
                "itself may be intact"
            )
        if name.startswith("SQLITE_CANTOPEN"):
            return CatalogError(f"{where}: cannot open {path_text(db)} ({_why_unopenable(db)})")
        if name.startswith(("SQLITE_PERM", "SQLITE_AUTH")):
            return CatalogError(f"{where}: permission denied ({said})")
        if name.startswith("SQLITE_NOMEM"):
            return CatalogError(f"{where}: out of memory")
        return CatalogError(f"{where} ({said})")
    if isinstance(exc, OSError):
        code = exc.errno
        about = f" ({path_text(exc.filename)})" if exc.filename else ""
        text = f"{exc.strerror or exc}{about}"
        if code in (errno.ENOSPC, errno.EDQUOT):
            return DiskFullError(
                f"{where}: the disk is full ({text}); free some space and try again (nothing "
                "already committed is lost)"
            )
        if code == errno.EROFS:
            return CatalogReadOnlyError(f"{where}: it is on a read-only file system ({text})")
        if code == errno.EIO:
            return CatalogError(f"{where}: disk I/O error ({text}); check the disk")
        return CatalogError(f"{where}: {text}")
    return CatalogError(f"{where}: {exc}")


def probe_readable(root: Path, busy_timeout_s: float = 1.0) -> None:
    """Open the catalog database in ``root`` read-only and read its schema, on a connection of
    its own (a fraction of a millisecond; a readiness probe's check). Raises the
    :class:`CatalogError` that says why it cannot: absent, damaged, locked for longer than
    ``busy_timeout_s``, unreadable."""
    root = Path(root)
    db_path = root / _DB_FILE
    if not db_path.is_file():
        raise CatalogError(f"no catalog database at {path_text(db_path)}")
    for mode in ("ro", "immutable"):
        if mode == "immutable" and _log_has_content(db_path):
            break  # the read-only attempt's error below says why
        try:
            db = sqlite3.connect(_sqlite_uri(db_path, mode), uri=True, timeout=busy_timeout_s)
            try:
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return
            finally:
                db.close()
        except sqlite3.Error as exc:
            if mode == "immutable" or not _needs_a_writable_folder(exc):
                raise catalog_error(exc, root, "read") from None
            first = exc
    raise catalog_error(first, root, "read") from None


def _needs_a_writable_folder(exc: sqlite3.Error) -> bool:
    """SQLite failed to open the database for want of a writable folder or free space (the
    log's shared-memory file), not because the database is damaged or absent."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    return name.startswith(
        ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_IOERR_SHM", "SQLITE_FULL", "SQLITE_PERM")
    )


def _why_not_writable(root: Path) -> str:
    if _nearly_full(root):
        return "the disk is full"
    with contextlib.suppress(OSError):
        if os.statvfs(root).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system"
    if not os.access(root, os.W_OK):
        return "its folder is not writable"
    if not os.access(root / _DB_FILE, os.W_OK):
        return f"{_DB_FILE} is not writable"
    return "SQLite could not open it for writing"


def _why_unopenable(db: Path) -> str:
    if not db.exists():
        return "it is missing"
    if db.is_dir():
        return "it is a folder"
    if not os.access(db, os.R_OK):
        return "permission denied"
    return "SQLite cannot open it, or cannot create its shared-memory file next to it"


def _writer_holds_lock(root: Path) -> bool:
    """Whether a writer holds the catalog's lock now."""
    return _lock_is_held(root / _LOCK_FILE)


def _unwritable(lock_file: Path) -> str | None:
    """Why a writer could not open ``lock_file`` (immutable, a read-only file system), or None:
    probed with a write-only descriptor that neither creates nor truncates it."""
    try:
        fd = os.open(lock_file, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    return None


def _lock_is_held(lock_file: Path) -> bool:
    """Whether a process holds ``lock_file``'s flock now (this one included, through another
    descriptor): probed with a shared, non-blocking flock on a read-only descriptor, so the
    probe neither waits nor writes."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: cannot tell
        return False
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases the probe's own lock
    return False


def _nearly_full(root: Path) -> bool:
    free = _free_bytes(root)
    return free is not None and free < _NEARLY_FULL_BYTES


def _free_bytes(path: Path) -> int | None:
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def _gigabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


# -- files ---------------------------------------------------------------------------------------
def _sqlite_uri(path: Path, mode: str) -> str:
    """A ``file:`` URI for SQLite; every byte of the path that could read as URI syntax (``?``,
    ``#``, ``%``, undecodable bytes of a file name) is percent-encoded."""
    location = quote(os.fsencode(path.absolute()), safe="/")
    if mode == "immutable":
        return f"file:{location}?mode=ro&immutable=1"
    return f"file:{location}?mode={mode}"


def use_write_ahead_log(db: sqlite3.Connection) -> None:
    """Switch the journal to write-ahead logging. SQLite answers "locked" at once, without
    waiting, while another connection holds the journal (a writer folding its log, or a
    process racing to create the catalog), so this waits as a busy connection would."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _log_has_content(db_path: Path) -> bool:
    try:
        return db_path.with_name(db_path.name + "-wal").stat().st_size > 0
    except FileNotFoundError:
        return False


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as found:
            return list(found)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _foreign_entries(root: Path) -> list[str]:
    """What ``root`` holds besides the files of a catalog (its database, lock and shards folder
    with index files of its own names): a catalog is created only where this is empty."""
    own = {
        _DB_FILE,
        f"{_DB_FILE}-wal",
        f"{_DB_FILE}-shm",
        f"{_DB_FILE}-journal",
        _LOCK_FILE,
        _MERGE_LOCK_FILE,
    }
    foreign = []
    for entry in _entries(root):
        if entry.name in own and entry.is_file(follow_symlinks=False):
            continue
        if entry.name == _SHARDS and entry.is_dir(follow_symlinks=False):
            foreign.extend(
                f"{_SHARDS}/{inner.name}"
                for inner in _entries(Path(entry.path))
                if not (
                    _OWN_SHARD_FILE.fullmatch(inner.name)
                    or _is_spill_folder(inner)
                    or _is_merge_folder(inner)
                )
            )
            continue
        foreign.append(entry.name)
    return sorted(foreign)


def _is_spill_folder(entry: os.DirEntry) -> bool:
    return bool(_SPILL_FOLDER.fullmatch(entry.name)) and entry.is_dir(follow_symlinks=False)


def _is_merge_folder(entry: os.DirEntry) -> bool:
    return bool(_MERGE_FOLDER.fullmatch(entry.name)) and entry.is_dir(follow_symlinks=False)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class StoredFingerprints(Sequence):
    """``(work_id, stored fingerprint)`` of each of ``work_ids``, decoded by ``load`` each time
    it is reached: a shard built from them holds one at a time, not all of them."""

    def __init__(self, work_ids: list[int], load: Callable[[int], Fingerprint]):
        self.work_ids, self._load = list(work_ids), load

    def __len__(self) -> int:
        return len(self.work_ids)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [(w, self._load(w)) for w in self.work_ids[i]]
        return self.work_ids[i], self._load(self.work_ids[i])


def _unusable(work_ids: list[int], first: str) -> str:
    """What is wrong with works whose stored fingerprint is missing or damaged (``first``
    describes the first of them) and how to repair the catalog."""
    if len(work_ids) == 1:
        return (
            f"{first}; remove it with 'audiodup index remove {work_ids[0]}' and add its file again"
        )
    shown = ", ".join(str(w) for w in work_ids[:10]) + (" ..." if len(work_ids) > 10 else "")
    return (
        f"{len(work_ids)} works ({shown}) have no readable stored fingerprint ({first}); remove "
        "each with 'audiodup index remove ID' and add their files again"
    )


def _works(n: int) -> str:
    return f"{n} work" if n == 1 else f"{n} works"


def _work_info(row) -> WorkInfo:
    try:
        metadata = _json_object(row[7], "metadata")
        return WorkInfo(
            work_id=int(row[0]),
            path=_shown_path(row[1]),
            title=row[2],
            artist=row[3],
            duration_s=float(row[4]),
            sha256=str(row[5]),
            added_at=str(row[6]),
            metadata=metadata,
        )
    except (TypeError, ValueError) as exc:
        raise CatalogDamagedError(
            f"work {row[0]}: its stored row is damaged ({exc}); remove it with "
            f"'audiodup index remove {row[0]}' and add its file again"
        ) from None


def _json_object(text: str | None, what: str) -> dict:
    """A stored JSON object (metadata, extra fields); ``ValueError`` for anything else."""
    found = json.loads(text or "{}")
    if not isinstance(found, dict):
        raise ValueError(f"{what} is not a JSON object")
    return found


def _upload_fields(meta: dict, title: str | None, artist: str | None, *, tags_first: bool) -> dict:
    """An upload's metadata as :class:`UploadInfo` fields: the :data:`UPLOAD_FIELDS` (blank ones
    as None), title and artist completed from the file's tags (or, ``tags_first``, taken from
    them where they have any), and every other name under ``extra``."""
    known = {name: meta.get(name) or None for name in UPLOAD_FIELDS}
    if tags_first:
        known["title"], known["artist"] = title or known["title"], artist or known["artist"]
    else:
        known["title"], known["artist"] = known["title"] or title, known["artist"] or artist
    return {**known, "extra": {k: v for k, v in meta.items() if k not in UPLOAD_FIELDS}}


def _new_upload(item: NewWork, work_id: int) -> UploadInfo:
    """The ledger record of one submitted item (its id is given when it is inserted)."""
    metadata = {k: v for k, v in (item.metadata or {}).items() if k != "role"}
    return UploadInfo(
        upload_id=0,
        work_id=work_id,
        role="reference" if item.role == "reference" else "upload",
        source_path=item.path,
        sha256=item.sha256,
        recorded_at=_now(),
        **_upload_fields(metadata, item.title, item.artist, tags_first=False),
    )


def _legacy_upload(row) -> UploadInfo:
    """The upload a first-layout work stands for: same id, its metadata split into fields
    (the old ``work_id`` column was the distributor's identifier: ``external_id``)."""
    work_id, path, title, artist, sha256, added_at, metadata = row[:7]
    try:
        meta = _json_object(metadata, "metadata")
    except ValueError:
        meta = {}
    meta = {str(k): str(v) for k, v in meta.items() if v is not None}
    if "work_id" in meta and "external_id" not in meta:
        meta["external_id"] = meta.pop("work_id")
    return UploadInfo(
        upload_id=int(work_id),
        work_id=int(work_id),
        role="upload",
        source_path=_file_of(path),
        sha256=str(sha256),
        recorded_at=str(added_at),
        **_upload_fields(meta, title, artist, tags_first=True),
    )


def _upload_info(row) -> UploadInfo:
    try:
        extra = _json_object(row[13], "extra metadata")
        return UploadInfo(
            upload_id=int(row[0]),
            work_id=int(row[1]),
            role=str(row[2]),
            source_path=_shown_path(row[3]),
            sha256=str(row[4]),
            recorded_at=str(row[5]),
            title=row[6],
            artist=row[7],
            uploader=row[8],
            uploaded_at=row[9],
            isrc=row[10],
            upc=row[11],
            external_id=row[12],
            extra=extra,
        )
    except (TypeError, ValueError) as exc:
        raise CatalogDamagedError(f"upload {row[0]}: its stored row is damaged ({exc})") from None


def _decision(row) -> ReviewDecision:
    return ReviewDecision(
        decision_id=int(row[0]),
        upload_id=int(row[1]),
        work_id=int(row[2]),
        decision=row[3],
        note=str(row[4]),
        reviewer=str(row[5]),
        decided_at=str(row[6]),
    )


def _changed_before(ctime: float, recorded_at: str) -> bool:
    """Whether a file's inode last changed (``ctime``, seconds) no later than ``recorded_at``
    (an upload's ISO time; one without a time zone, of an older catalog, is UTC)."""
    from .metadata import parse_timestamp  # metadata imports ingest, which imports this

    try:
        return ctime <= parse_timestamp(str(recorded_at)).timestamp()
    except ValueError:
        return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {path_text(exc.filename)}" if exc.filename else "")
    return (str(exc).splitlines() or [type(exc).__name__])[0]


# (limit, usage) files of this process's memory cgroup: v2, then v1 (a container's own)
_CGROUP_MEMORY = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def available_memory(
    meminfo: str = "/proc/meminfo", cgroups: tuple[tuple[str, str], ...] = _CGROUP_MEMORY
) -> int:
    """Bytes of memory available to new page cache: Linux's ``MemAvailable``, or less when the
    process's memory cgroup (a container's limit) has less room left; 0 when unknown."""
    available = 0
    try:
        with open(meminfo, encoding="ascii") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    for limit_file, usage_file in cgroups:
        try:
            limit = Path(limit_file).read_text(encoding="ascii").strip()
            usage = int(Path(usage_file).read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            continue
        if (
            limit.isascii() and limit.isdigit() and int(limit) < 1 << 60
        ):  # "max" or a huge v1 value: no limit
            available = min(available, max(int(limit) - usage, 0))
        break
    return available


# the bytes each read-ahead running in this process planned (start_read_ahead)
_READ_AHEAD_RUNNING: dict[object, int] = {}
_READ_AHEAD_LOCK = threading.Lock()


def within_budget(plan: list[tuple[Path, int]], budget_bytes: int) -> list[tuple[Path, int]]:
    """The first ``(path, bytes)`` of ``plan`` that fit in ``budget_bytes`` in all, the last
    one cut to what is left; files of no bytes dropped."""
    kept, left = [], max(budget_bytes, 0)
    for path, size in plan:
        size = min(size, left)
        if size > 0:
            kept.append((path, size))
            left -= size
    return kept


def start_read_ahead(
    plan: list[tuple[Path, int]],
    stop: threading.Event | None = None,
    budget_bytes: int | None = None,
) -> threading.Thread | None:
    """:func:`read_ahead` of ``plan`` in a daemon thread (None: nothing to read). With
    ``budget_bytes`` the plan is first cut to that budget less what the other read-aheads
    running in this process planned."""
    with _READ_AHEAD_LOCK:
        if budget_bytes is not None:
            plan = within_budget(plan, budget_bytes - sum(_READ_AHEAD_RUNNING.values()))
        if not plan:
            return None
        token = object()
        _READ_AHEAD_RUNNING[token] = sum(n for _, n in plan)

    def run() -> None:
        try:
            read_ahead(plan, stop=stop)
        finally:
            with _READ_AHEAD_LOCK:
                del _READ_AHEAD_RUNNING[token]

    thread = threading.Thread(target=run, name="audiodup-read-ahead", daemon=True)
    thread.start()
    return thread


def read_ahead(
    plan: list[tuple[Path, int]], chunk_bytes: int = 4 << 20, stop: threading.Event | None = None
) -> int:
    """Read the first ``bytes`` of each ``(path, bytes)`` and drop them: the page cache keeps
    them for the memory-mapped look-ups. Files that cannot be read are skipped; ``stop`` set
    (the store closed) ends the reading. Returns the bytes read.

    A page fault on a memory-mapped file maps the pages of the page-cache folio it lands in.
    Read in order, a file is cached in large folios: the four-peak look-up, which releases its
    pages every few thousand entries, then faults 15x less (at 10^5 works 146 -> 62 ms a
    look-up, 75 -> 3 ms of it in the kernel). A hash file is read without read-ahead
    (``POSIX_FADV_RANDOM``), into 4 KB folios: its look-up releases its pages only once done,
    and in large folios its scattered reads map most of the file (at 10^5 works a screening's
    peak RSS 1.24 -> 1.71 GB; ``benchmarks/SCALING.md``, session 27)."""
    done = 0
    buffer = bytearray(chunk_bytes)
    for path, size in plan:
        try:
            with open(path, "rb", buffering=0) as handle:
                if Path(path).name.startswith("h-") and hasattr(os, "posix_fadvise"):
                    with contextlib.suppress(OSError):  # a hint: the file is read either way
                        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
                left = size
                while left > 0:
                    if stop is not None and stop.is_set():
                        return done
                    n = handle.readinto(memoryview(buffer)[: min(chunk_bytes, left)])
                    if not n:
                        break
                    left -= n
                    done += n
        except OSError:
            continue
    return done
