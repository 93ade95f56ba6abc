"""Tests for audiodup.store against hostile folders and hostile conditions: files that are not
the catalog's, readers while a writer holds the lock, read-only folders, full disks, damaged
databases, and the repair path (verify, remove, rebuild)."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_runner import run_main
from filelock import FileLock, Timeout

import audiodup.store
from audiodup import Catalog, CatalogError, Settings
from audiodup.catalog import default_catalog_path
from audiodup.errors import (
    CatalogBusyError,
    CatalogDamagedError,
    CatalogReadOnlyError,
    DiskFullError,
)
from audiodup.quads import quad_file_of
from audiodup.store import catalog_error

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "audio"
CATALOG_DIR = FIXTURES / "catalog"
UPLOADS_DIR = FIXTURES / "uploads"
DUPLICATE = UPLOADS_DIR / "pitch_-3_work_03.ogg"  # a copy of work_03
NEW_FILE = UPLOADS_DIR / "unrelated_a.ogg"  # not in the fixture catalog
EXIT_INTERNAL = 70
# a safety bound for child processes, not a timing assertion: before the fix a reader waited
# up to 600 s for the writer lock
CHILD_TIMEOUT_S = 300


def audiodup_cli(*args: object, cwd: Path = ROOT, env_db: str | None = None):
    env = dict(os.environ)
    env.pop("AUDIODUP_DB", None)
    if env_db is not None:
        env["AUDIODUP_DB"] = env_db
    return subprocess.run(
        [sys.executable, "-m", "audiodup", *(str(a) for a in args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )


def listing(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` with its content (None for folders and symlinks)."""
    found: dict[str, bytes | None] = {}
    for path in sorted(folder.rglob("*")):
        is_data = path.is_file() and not path.is_symlink()
        found[str(path.relative_to(folder))] = path.read_bytes() if is_data else None
    return found


def assert_one_clean_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def assert_screens(catalog: Catalog) -> None:
    verdict = catalog.screen(DUPLICATE)
    assert verdict.verdict == "duplicate", verdict
    assert Path(verdict.matches[0].path).name == "work_03.ogg"


# --- 6: a catalog removes only what it wrote --------------------------------------------------


def make_foreign(shards: Path, kind: str, outside: Path) -> str:
    """Put one entry that is not the catalog's into ``shards``; returns its name."""
    if kind == "data file":
        (shards / "data.parquet").write_bytes(b"PAR1 a user's data")
        return "data.parquet"
    if kind == "sub-folder":
        (shards / "sub").mkdir()
        (shards / "sub" / "keep.txt").write_text("keep me")
        return "sub"
    if kind == "folder with an index name":
        (shards / "h-0123456789ab.faiss").mkdir()
        return "h-0123456789ab.faiss"
    if kind == "near-miss index name":
        (shards / "h-0123.faiss").write_bytes(b"not ours: too short a token")
        return "h-0123.faiss"
    if kind == "upper-case index name":
        (shards / "C-0123456789AB.faiss").write_bytes(b"not ours: upper case")
        return "C-0123456789AB.faiss"
    if kind == "symlink with an index name":
        target = outside / "precious.bin"
        target.write_bytes(b"precious")
        (shards / "c-0123456789ab.faiss").symlink_to(target)
        return "c-0123456789ab.faiss"
    if kind == "hidden file":
        (shards / ".tmp-notes").write_text("mine")
        return ".tmp-notes"
    raise AssertionError(kind)


FOREIGN_KINDS = [
    "data file",
    "sub-folder",
    "folder with an index name",
    "near-miss index name",
    "upper-case index name",
    "symlink with an index name",
    "hidden file",
]


@pytest.mark.parametrize("kind", FOREIGN_KINDS)
def test_foreign_entries_in_shards_survive_reads_and_writes(
    catalog_copy: Path, tmp_path: Path, kind: str
) -> None:
    shards = catalog_copy / "shards"
    outside = tmp_path / "outside"
    outside.mkdir()
    name = make_foreign(shards, kind, outside)
    before = {k: v for k, v in listing(shards).items() if k == name or k.startswith(name + "/")}
    with Catalog.open(catalog_copy) as catalog:
        assert_screens(catalog)
        assert len(catalog.works()) == 6
        assert catalog.stats().works == 6
        check = catalog.check()
        assert check.problems == ()
        assert any(name in note and "left alone" in note for note in check.notes), check.notes
        catalog.add_paths([NEW_FILE])
        catalog.rebuild()
        assert catalog.verify() == []
        assert_screens(catalog)
    after = listing(shards)
    for entry, content in before.items():
        assert entry in after and after[entry] == content, f"{entry} was changed or deleted"
    if kind == "symlink with an index name":
        assert listing(outside) == {"precious.bin": b"precious"}


def test_leftovers_of_the_catalog_are_still_swept(catalog_copy: Path) -> None:
    """Only the catalog's own names go: a crash's unreferenced index files and temporaries."""
    shards = catalog_copy / "shards"
    leftovers = ["h-0123456789ab.faiss", "c-0123456789ab.faiss", ".tmp-h-abcdefabcdef.faiss"]
    for name in leftovers:
        (shards / name).write_bytes(b"left by a crash")
    (shards / "mine.txt").write_text("not the catalog's")
    with Catalog.open(catalog_copy) as catalog:
        assert catalog.verify() == []
        catalog.remove(1)  # a removal does not touch shards/
        assert all((shards / name).exists() for name in leftovers)
        catalog.add_paths([NEW_FILE])
    names = {p.name for p in shards.iterdir()}
    assert not names & set(leftovers)
    assert "mine.txt" in names


@pytest.mark.parametrize("command", ["list", "verify", "rebuild", "stats", "screen"])
def test_a_sub_folder_in_shards_breaks_no_command(catalog_copy: Path, command: str) -> None:
    (catalog_copy / "shards" / "sub").mkdir()
    args = ["screen", "--db", catalog_copy, DUPLICATE] if command == "screen" else []
    proc = audiodup_cli(*(args or ["index", command, "--db", catalog_copy]))
    assert "Traceback" not in proc.stderr
    assert proc.returncode == (1 if command == "screen" else 0), proc.stderr
    assert (catalog_copy / "shards" / "sub").is_dir()


def fill_folder(folder: Path, layout: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "project folder":
        (folder / "README.md").write_text("# my project")
        (folder / "src").mkdir()
        (folder / "src" / "main.py").write_text("print('hi')")
    elif layout == "user shards folder":
        (folder / "shards").mkdir()
        (folder / "shards" / "data.parquet").write_bytes(b"PAR1")
    elif layout == "empty sub-folder":
        (folder / "notes").mkdir()
    elif layout == "hidden file":
        (folder / ".env").write_text("SECRET=1")
    elif layout == "another database":
        (folder / "other.sqlite").write_bytes(b"SQLite format 3\x00")
    else:
        raise AssertionError(layout)


LAYOUTS = ["project folder", "user shards folder", "empty sub-folder", "hidden file"]


@pytest.mark.parametrize("layout", [*LAYOUTS, "another database"])
def test_no_catalog_is_created_in_a_folder_that_holds_other_things(
    tmp_path: Path, layout: str
) -> None:
    folder = tmp_path / "project"
    fill_folder(folder, layout)
    before = listing(folder)
    with pytest.raises(CatalogError) as info:
        Catalog.open(folder)
    message = str(info.value)
    assert str(folder) in message and "not empty" in message
    assert listing(folder) == before  # not even a lock file or a shards folder


@pytest.mark.parametrize("layout", LAYOUTS)
def test_index_add_refuses_a_folder_that_holds_other_things(tmp_path: Path, layout: str) -> None:
    folder = tmp_path / "project"
    fill_folder(folder, layout)
    before = listing(folder)
    for db in (folder, "."):  # --db ~/project and --db .
        proc = audiodup_cli("index", "add", "--db", db, CATALOG_DIR / "work_00.ogg", cwd=folder)
        assert proc.returncode == 2
        assert "not empty" in assert_one_clean_error(proc)
        assert listing(folder) == before


@pytest.mark.parametrize("state", ["new", "empty", "interrupted creation"])
def test_a_catalog_is_created_in_a_new_or_empty_folder(tmp_path: Path, state: str) -> None:
    folder = tmp_path / "cat"
    if state == "empty":
        folder.mkdir()
    elif state == "interrupted creation":  # what a creator killed early leaves behind
        (folder / "shards").mkdir(parents=True)
        (folder / "catalog.lock").write_bytes(b"")
        (folder / "shards" / ".tmp-h-0123456789ab.faiss").write_bytes(b"half")
        (folder / "catalog.sqlite").write_bytes(b"")  # connected, nothing committed
    with Catalog.open(folder) as catalog:
        results = catalog.add_paths([CATALOG_DIR / "work_00.ogg"])
        assert [r.status for r in results] == ["added"]
        assert catalog.verify() == []
    assert not (folder / "shards" / ".tmp-h-0123456789ab.faiss").exists()


def test_an_unfinished_catalog_is_not_created_by_readers(tmp_path: Path) -> None:
    folder = tmp_path / "cat"
    folder.mkdir()
    (folder / "catalog.sqlite").write_bytes(b"")
    with pytest.raises(CatalogError, match="index add"):
        Catalog.open(folder, create=False)
    assert (folder / "catalog.sqlite").stat().st_size == 0


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_audiodup_db_counts_as_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AUDIODUP_DB", value)
    assert default_catalog_path() == Path("audiodup-catalog")
    work = tmp_path / "work"
    fill_folder(work, "user shards folder")
    proc = audiodup_cli("index", "add", CATALOG_DIR / "work_00.ogg", cwd=work, env_db=value)
    assert proc.returncode == 0, proc.stderr
    assert (work / "shards" / "data.parquet").read_bytes() == b"PAR1"
    assert (work / "audiodup-catalog" / "catalog.sqlite").exists()
    assert not (work / "catalog.sqlite").exists()


@pytest.mark.parametrize(
    "name",
    ["query?and#fragment", "per%20cent", "mode=ro&immutable=1", "new\nline", b"caf\xe9-latin1"],
)
def test_a_catalog_folder_may_have_any_name(tmp_path: Path, name: str | bytes) -> None:
    """SQLite is opened by URI and FAISS through Python files: no folder name is read as URI
    syntax or refused for not being UTF-8."""
    root = tmp_path / (os.fsdecode(name) if isinstance(name, bytes) else name)
    with Catalog.open(root) as catalog:
        catalog.add_paths([CATALOG_DIR / "work_03.ogg"])
        catalog.rebuild()
    assert (root / "catalog.sqlite").exists()
    with Catalog.open(root, create=False) as catalog:
        assert_screens(catalog)
        assert catalog.verify() == []


# --- 7: readers never wait for the writer lock ------------------------------------------------


@contextmanager
def writer_lock_held(root: Path) -> Iterator[None]:
    """Hold ``root``'s writer lock in another process, as a running or stopped writer does."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from filelock import FileLock; "
            f"lock = FileLock({str(root / 'catalog.lock')!r}); lock.acquire(); "
            "print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Timeout):  # really held: nobody else can take it
            FileLock(str(root / "catalog.lock"), timeout=0).acquire()
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_readers_open_and_screen_while_a_writer_holds_the_lock(catalog_copy: Path) -> None:
    with writer_lock_held(catalog_copy):
        for create in (False, True):
            with Catalog.open(catalog_copy, create=create) as catalog:
                assert_screens(catalog)
                assert len(catalog.works()) == 6
                assert catalog.stats().works == 6
                assert catalog.verify() == []


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["screen", DUPLICATE], 1),
        (["index", "list"], 0),
        (["index", "stats"], 0),
        (["index", "verify"], 0),
    ],
)
def test_read_commands_complete_while_a_writer_holds_the_lock(
    catalog_copy: Path, args: list, code: int
) -> None:
    with writer_lock_held(catalog_copy):
        proc = audiodup_cli(*args[:2], "--db", catalog_copy, *args[2:])
    assert proc.returncode == code, proc.stderr


def test_opening_and_reading_never_touch_the_lock(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self):
        raise AssertionError("a reader took the writer lock")

    monkeypatch.setattr(audiodup.store.CatalogStore, "write_lock", refuse)
    with Catalog.open(catalog_copy) as catalog:
        assert_screens(catalog)
        catalog.check()
        catalog.stats()


def test_writes_still_take_the_lock(catalog_copy: Path) -> None:
    with writer_lock_held(catalog_copy), Catalog.open(catalog_copy) as catalog:
        catalog.store.lock_timeout_s = 0  # do not wait: show that the lock is wanted
        with pytest.raises(CatalogBusyError, match="locked by another writer"):
            catalog.remove(1)
        with pytest.raises(CatalogBusyError):
            catalog.rebuild()
        with pytest.raises(CatalogBusyError):
            catalog.add_paths([NEW_FILE])
        assert len(catalog.works()) == 6


def test_a_write_waits_as_long_as_the_store_says_after_an_earlier_write(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is made by the first write; a wait set afterwards holds for the next write."""
    with Catalog.open(catalog_copy) as catalog:
        catalog.remove(1)
        lock = catalog.store._lock
        asked = []

        def acquire(*args, **kwargs):
            asked.append(kwargs.get("timeout"))
            return type(lock).acquire(lock, *args, **kwargs)

        monkeypatch.setattr(lock, "acquire", acquire)
        catalog.store.lock_timeout_s = 7.0
        catalog.remove(2)
        assert asked == [7.0] and len(catalog.works()) == 4


# --- 8: read-only folders and full disks ------------------------------------------------------


def _run(*command: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=60)


@contextmanager
def read_only_mount(source: Path, view: Path) -> Iterator[Path]:
    """``source`` seen through a read-only bind mount at ``view`` (root cannot be stopped by
    chmod). Skips when mounting is not permitted here."""
    view.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    bound = _run("mount", "--bind", source, view)
    if bound.returncode != 0:
        pytest.skip(f"bind mounts are not permitted here: {bound.stderr.strip()}")
    try:
        remounted = _run("mount", "-o", "remount,ro,bind", view)
        if remounted.returncode != 0:
            pytest.skip(f"cannot make a bind mount read-only here: {remounted.stderr.strip()}")
        probe = view / "probe"
        try:
            probe.write_text("x")
        except OSError as exc:
            assert exc.errno == errno.EROFS
        else:
            pytest.skip("the read-only bind mount accepts writes")
        yield view
    finally:
        if _run("umount", view).returncode != 0:
            _run("umount", "-l", view)


@contextmanager
def small_disk(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``mount_point``. Skips when mounting is not permitted here."""
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mount_point)
    if mounted.returncode != 0:
        pytest.skip(f"tmpfs mounts are not permitted here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if _run("umount", mount_point).returncode != 0:
            _run("umount", "-l", mount_point)


def fill_disk(folder: Path, leave_bytes: int = 0) -> Path:
    """Fill the file system of ``folder`` to ``leave_bytes`` of free space; returns the filler."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    os.truncate(filler, max(filler.stat().st_size - leave_bytes, 0))
    return filler


def assert_read_only_catalog_works(root: Path) -> None:
    with Catalog.open(root, create=False) as catalog:
        assert catalog.store.read_only is not None
        assert_screens(catalog)
        assert len(catalog.works()) == 6
        assert catalog.stats().works == 6
        assert catalog.verify() == []
        with pytest.raises(CatalogReadOnlyError):
            catalog.add_paths([NEW_FILE])
        with pytest.raises(CatalogReadOnlyError):
            catalog.remove(1)
        with pytest.raises(CatalogReadOnlyError):
            catalog.rebuild()
    with pytest.raises(CatalogReadOnlyError):
        Catalog.open(root, write=True)


def test_a_catalog_on_a_read_only_mount_screens(catalog_copy: Path, tmp_path: Path) -> None:
    before = listing(catalog_copy)
    with read_only_mount(catalog_copy, tmp_path / "ro") as view:
        assert_read_only_catalog_works(view)
        screen = audiodup_cli("screen", "--db", view, DUPLICATE)
        assert screen.returncode == 1, screen.stderr
        for args in (["index", "verify"], ["index", "list"], ["index", "stats"]):
            proc = audiodup_cli(*args, "--db", view)
            assert proc.returncode == 0, (args, proc.stderr)
        for args in (
            ["index", "add", "--db", view, NEW_FILE],
            ["index", "rebuild", "--db", view],
            ["rescan", "--db", view],  # rescan keeps its results in the catalog folder
        ):
            proc = audiodup_cli(*args)
            assert proc.returncode == 2
            line = assert_one_clean_error(proc)
            assert "read-only" in line and "damaged" not in line
    assert listing(catalog_copy) == before


def test_a_read_only_mount_with_an_unfolded_log_is_read_through_it(
    catalog_copy: Path, tmp_path: Path
) -> None:
    """A catalog copied while a writer had changes in its log: the read-only open must read the
    log (the immutable fallback would not), so the removal below is seen."""
    snapshot = tmp_path / "snapshot"
    writer = sqlite3.connect(catalog_copy / "catalog.sqlite", isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("UPDATE works SET removed = 1 WHERE work_id = 1")
        shutil.copytree(catalog_copy, snapshot)
    finally:
        writer.close()
    assert (snapshot / "catalog.sqlite-wal").stat().st_size > 0
    with read_only_mount(snapshot, tmp_path / "ro") as view, Catalog.open(view, create=False) as c:
        assert c.store.read_only is not None
        assert 1 not in {w.work_id for w in c.works()}
        assert len(c.works()) == 5
    # without the shared-memory file the log cannot be read here: refused, never skipped
    (snapshot / "catalog.sqlite-shm").unlink()
    refused = pytest.raises(CatalogReadOnlyError, match="write-ahead log")
    with read_only_mount(snapshot, tmp_path / "ro2") as view, refused:
        Catalog.open(view, create=False)


def test_read_only_simulated_by_sqlite_refusing_to_open(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What a read-only folder does to SQLite, without mounting: every open that would need
    the log's shared-memory file fails with SQLITE_CANTOPEN; only immutable opens work."""
    real_connect = sqlite3.connect
    unopenable = f"file:{tmp_path / 'no-such-folder' / 'x.sqlite'}?mode=ro"

    def connect(database, *args, **kwargs):
        if "immutable=1" not in str(database):
            return real_connect(unopenable, *args, **{**kwargs, "uri": True})
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(audiodup.store.sqlite3, "connect", connect)
    assert_read_only_catalog_works(catalog_copy)


def test_a_write_refused_by_sqlite_is_read_only_not_damage(catalog_copy: Path) -> None:
    """'attempt to write a readonly database' at the first write (the folder became read-only
    after the open) is a CatalogReadOnlyError."""
    with Catalog.open(catalog_copy) as catalog:
        catalog.store.db.close()
        uri = f"file:{catalog_copy / 'catalog.sqlite'}?mode=ro"
        catalog.store.db = sqlite3.connect(uri, uri=True, isolation_level=None)
        for write in (lambda: catalog.remove(1), lambda: catalog.add_paths([NEW_FILE])):
            with pytest.raises(CatalogReadOnlyError) as info:
                write()
            assert "damaged" not in str(info.value)
    with Catalog.open(catalog_copy) as catalog:
        assert catalog.verify() == [] and len(catalog.works()) == 6


def test_a_full_disk_screens_and_refuses_additions(
    pristine_catalog_dir: Path, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk", "2m") as disk:
        root = disk / "catalog"
        shutil.copytree(pristine_catalog_dir, root)
        filler = fill_disk(disk)
        # SQLite cannot make the log's shared-memory file: read without it
        with Catalog.open(root, create=False) as catalog:
            assert_screens(catalog)
            assert catalog.verify() == []
            with pytest.raises(DiskFullError, match="disk is full"):
                catalog.add_paths([NEW_FILE])
        proc = audiodup_cli("index", "add", "--db", root, NEW_FILE)
        assert proc.returncode == 2
        line = assert_one_clean_error(proc)
        assert "disk is full" in line and "damaged" not in line
        proc = audiodup_cli("rescan", "--db", root)
        assert proc.returncode == 2
        line = assert_one_clean_error(proc)
        assert "disk is full" in line and "damaged" not in line
        filler.unlink()
        with Catalog.open(root) as catalog:
            assert catalog.verify() == []
            assert [r.status for r in catalog.add_paths([NEW_FILE])] == ["added"]
            assert len(catalog.works()) == 7


@pytest.mark.parametrize("leave_kib", [40, 48, 64])
def test_a_disk_that_fills_during_an_add_loses_nothing(
    pristine_catalog_dir: Path, tmp_path: Path, leave_kib: int
) -> None:
    """The open succeeds, the shard files or the commit do not fit: a clear disk-full error,
    the committed works intact, no partial files left to take space."""
    with small_disk(tmp_path / "disk", "2m") as disk:
        root = disk / "catalog"
        shutil.copytree(pristine_catalog_dir, root)
        shards_before = {p.name for p in (root / "shards").iterdir()}
        filler = fill_disk(disk, leave_kib * 1024)
        proc = audiodup_cli("index", "add", "--db", root, NEW_FILE)
        assert proc.returncode == 2, proc.stderr
        assert "disk is full" in proc.stderr and "damaged" not in proc.stderr
        assert "Traceback" not in proc.stderr
        assert {p.name for p in (root / "shards").iterdir()} == shards_before
        filler.unlink()
        with Catalog.open(root) as catalog:
            assert catalog.verify() == []
            assert len(catalog.works()) == 6
            assert [r.status for r in catalog.add_paths([NEW_FILE])] == ["added"]
            assert catalog.verify() == []


def test_sqlite_full_is_disk_full(catalog_copy: Path) -> None:
    """SQLITE_FULL ("database or disk is full") for real, through SQLite's page limit."""
    with Catalog.open(catalog_copy) as catalog:
        pages = catalog.store.db.execute("PRAGMA page_count").fetchone()[0]
        catalog.store.db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(DiskFullError, match="disk is full") as info:
            catalog.add_paths([NEW_FILE])
        assert "damaged" not in str(info.value)
        shards = {p.name for p in (catalog_copy / "shards").iterdir()}
        assert shards == {
            name
            for h, c in catalog.store.db.execute("SELECT hash_file, chroma_file FROM shards")
            for name in (h, c, quad_file_of(h))
        }  # the failed batch's index files are gone
    with Catalog.open(catalog_copy) as catalog:
        assert catalog.verify() == [] and len(catalog.works()) == 6
        assert [r.status for r in catalog.add_paths([NEW_FILE])] == ["added"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_no_space_for_an_index_file_is_disk_full(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def no_space(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    with Catalog.open(catalog_copy) as catalog:
        monkeypatch.setattr(audiodup.store.os, "fsync", no_space)
        with pytest.raises(DiskFullError):
            catalog.add_paths([NEW_FILE])
        monkeypatch.undo()
        assert not [p for p in (catalog_copy / "shards").iterdir() if p.name.startswith(".tmp")]
        assert catalog.verify() == [] and len(catalog.works()) == 6


def test_a_busy_database_is_busy_not_damaged(catalog_copy: Path) -> None:
    """'database is locked': another connection holds SQLite's write lock (not ours)."""
    other = sqlite3.connect(catalog_copy / "catalog.sqlite", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with Catalog.open(catalog_copy) as catalog:
            assert len(catalog.works()) == 6  # readers go on
            catalog.store.db.execute("PRAGMA busy_timeout = 0")
            with pytest.raises(CatalogBusyError, match="locked") as info:
                catalog.remove(1)
            assert "damaged" not in str(info.value)
    finally:
        other.close()


def test_a_database_that_cannot_be_opened_is_not_called_damaged(catalog_copy: Path) -> None:
    for name in ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"):
        (catalog_copy / name).unlink(missing_ok=True)
    (catalog_copy / "catalog.sqlite").mkdir()  # 'unable to open database file'
    with pytest.raises(CatalogError) as info:
        Catalog.open(catalog_copy, create=False)
    assert "damaged" not in str(info.value) and "folder" in str(info.value)


def sqlite_error(name: str, text: str) -> sqlite3.Error:
    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorname = name
    return exc


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (sqlite_error("SQLITE_FULL", "database or disk is full"), DiskFullError, "disk is full"),
        (sqlite_error("SQLITE_READONLY", "attempt to write a readonly database"),
         CatalogReadOnlyError, "cannot be written"),
        (sqlite_error("SQLITE_READONLY_DBMOVED", "attempt to write a readonly database"),
         CatalogReadOnlyError, "cannot be written"),
        (sqlite_error("SQLITE_BUSY", "database is locked"), CatalogBusyError, "locked"),
        (sqlite_error("SQLITE_LOCKED", "database table is locked"), CatalogBusyError, "locked"),
        (sqlite_error("SQLITE_IOERR_READ", "disk I/O error"), CatalogError, "disk I/O error"),
        (sqlite_error("SQLITE_CANTOPEN", "unable to open database file"), CatalogError,
         "cannot open"),
        (sqlite_error("SQLITE_PERM", "access permission denied"), CatalogError, "permission"),
        (sqlite_error("SQLITE_CORRUPT", "database disk image is malformed"),
         CatalogDamagedError, "damaged"),
        (sqlite_error("SQLITE_NOTADB", "file is not a database"), CatalogDamagedError, "damaged"),
        (sqlite3.OperationalError("no such table: works"), CatalogDamagedError, "damaged"),
        (OSError(errno.ENOSPC, "No space left on device"), DiskFullError, "disk is full"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), DiskFullError, "disk is full"),
        (OSError(errno.EROFS, "Read-only file system"), CatalogReadOnlyError, "read-only"),
        (OSError(errno.EIO, "Input/output error"), CatalogError, "disk I/O error"),
        (OSError(errno.EACCES, "Permission denied"), CatalogError, "Permission denied"),
    ],
)  # fmt: skip
def test_every_storage_error_has_its_own_message(
    tmp_path: Path, exc: Exception, kind: type, words: str
) -> None:
    error = catalog_error(exc, tmp_path, "add works to")
    assert type(error) is kind
    assert words in str(error)
    assert str(tmp_path) in str(error)
    if kind is not CatalogDamagedError:
        assert "damaged" not in str(error)


# --- 10: the recovery path -------------------------------------------------------------------


def corrupt_table_pages(db: Path, table: str) -> None:
    connection = sqlite3.connect(db)
    root_page = connection.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
    ).fetchone()[0]
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    with open(db, "r+b") as handle:
        handle.seek((root_page - 1) * page_size)
        handle.write(b"\xff" * 64)


def damage(root: Path, kind: str) -> None:
    db = root / "catalog.sqlite"
    if kind == "corrupt works pages":
        corrupt_table_pages(db, "works")
        return
    if kind == "corrupt fingerprint pages":
        corrupt_table_pages(db, "fingerprints")
        return
    if kind == "not a database":
        for name in ("catalog.sqlite-wal", "catalog.sqlite-shm"):
            (root / name).unlink(missing_ok=True)
        db.write_bytes(b"this is not a database" * 100)
        return
    if kind == "shards folder deleted":
        shutil.rmtree(root / "shards")
        return
    statement = {
        "works table dropped": "DROP TABLE works",
        "fingerprints table dropped": "DROP TABLE fingerprints",
        "shards table dropped": "DROP TABLE shards",
        "metadata not JSON": "UPDATE works SET metadata = '{oops' WHERE work_id = 2",
        "fingerprint not a blob": "UPDATE fingerprints SET blob = 'text' WHERE work_id = 3",
        "shard row names a foreign file": "UPDATE shards SET hash_file = '../../etc/passwd'",
    }[kind]
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute(statement)
    connection.close()


DAMAGE = [
    "corrupt works pages",
    "corrupt fingerprint pages",
    "not a database",
    "shards folder deleted",
    "works table dropped",
    "fingerprints table dropped",
    "shards table dropped",
    "metadata not JSON",
    "fingerprint not a blob",
    "shard row names a foreign file",
]


@pytest.mark.parametrize("kind", DAMAGE)
def test_verify_reports_damage_as_findings(
    catalog_copy: Path, kind: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    damage(catalog_copy, kind)
    code, out, err = run_main(["index", "verify", "--db", str(catalog_copy)], monkeypatch, capsys)
    assert code == 1, (code, err)
    assert "problem: " in err and "Traceback" not in err
    assert "catalog OK" not in out


def assert_no_crash(catalog: Path, commands: list[list[str]], monkeypatch, capsys) -> None:
    for argv in commands:
        code, _, err = run_main([*argv[:2], "--db", str(catalog), *argv[2:]], monkeypatch, capsys)
        assert code != EXIT_INTERNAL, (argv, err)
        assert "Traceback" not in err and "internal error" not in err, (argv, err)


@pytest.mark.parametrize("kind", DAMAGE)
def test_listing_on_damage_is_one_error_line_not_a_crash(
    catalog_copy: Path, kind: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    damage(catalog_copy, kind)
    assert_no_crash(catalog_copy, [["index", "list"], ["index", "stats"]], monkeypatch, capsys)


@pytest.mark.parametrize(
    "kind", ["corrupt works pages", "works table dropped", "shards table dropped"]
)
def test_screening_on_damage_is_one_error_line_not_a_crash(
    catalog_copy: Path, kind: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    damage(catalog_copy, kind)
    assert_no_crash(catalog_copy, [["screen", str(DUPLICATE)]], monkeypatch, capsys)


def test_rebuild_recreates_a_deleted_shards_folder(catalog_copy: Path) -> None:
    shutil.rmtree(catalog_copy / "shards")
    proc = audiodup_cli("index", "rebuild", "--db", catalog_copy)
    assert proc.returncode == 0, proc.stderr
    assert "rebuilt: 6 works" in proc.stdout
    assert audiodup_cli("index", "verify", "--db", catalog_copy).returncode == 0
    with Catalog.open(catalog_copy) as catalog:
        assert_screens(catalog)


def test_rebuild_recreates_shards_replaced_by_nothing_but_refuses_a_file(
    catalog_copy: Path,
) -> None:
    shutil.rmtree(catalog_copy / "shards")
    (catalog_copy / "shards").write_text("a file where the folder was")
    with Catalog.open(catalog_copy) as catalog, pytest.raises(CatalogError, match="not a folder"):
        catalog.rebuild()
    assert (catalog_copy / "shards").read_text() == "a file where the folder was"


def lose_fingerprint(root: Path, work_id: int, how: str) -> None:
    connection = sqlite3.connect(root / "catalog.sqlite", isolation_level=None)
    if how == "deleted":
        connection.execute("DELETE FROM fingerprints WHERE work_id = ?", (work_id,))
    else:
        connection.execute(
            "UPDATE fingerprints SET blob = ? WHERE work_id = ?", (b"\x00\x11\x22", work_id)
        )
    connection.close()


@pytest.mark.parametrize(
    ("victims", "how"), [([2], "deleted"), ([4], "garbled"), ([1, 5], "deleted")]
)
def test_removing_works_that_lost_their_fingerprint_makes_verify_ok(
    catalog_copy: Path, victims: list[int], how: str
) -> None:
    for work_id in victims:
        lose_fingerprint(catalog_copy, work_id, how)
    with Catalog.open(catalog_copy) as catalog:
        problems = catalog.verify()
        assert problems and all("index remove" in p for p in problems)
        assert all(str(w) in " ".join(problems) for w in victims)
        with pytest.raises(CatalogDamagedError, match="index remove"):
            catalog.rebuild()
        for work_id in victims:
            assert catalog.remove(work_id)
        assert catalog.verify() == []
        catalog.rebuild()
        assert catalog.verify() == []
        assert len(catalog.works()) == 6 - len(victims)
        catalog.add_paths([NEW_FILE])
        assert catalog.verify() == []


def test_the_cli_repair_sequence_ends_in_catalog_ok(catalog_copy: Path) -> None:
    lose_fingerprint(catalog_copy, 2, "deleted")
    verify = audiodup_cli("index", "verify", "--db", catalog_copy)
    assert verify.returncode == 1 and "index remove 2" in verify.stderr
    rebuild = audiodup_cli("index", "rebuild", "--db", catalog_copy)
    assert rebuild.returncode == 2 and "index remove 2" in assert_one_clean_error(rebuild)
    assert audiodup_cli("index", "remove", "--db", catalog_copy, 2).returncode == 0
    verify = audiodup_cli("index", "verify", "--db", catalog_copy)
    assert verify.returncode == 0 and "catalog OK" in verify.stdout, verify.stderr
    assert audiodup_cli("index", "rebuild", "--db", catalog_copy).returncode == 0
    assert audiodup_cli("index", "verify", "--db", catalog_copy).returncode == 0


def test_adding_goes_on_when_compaction_meets_a_damaged_fingerprint(catalog_copy: Path) -> None:
    """The batch is committed before compaction; a fingerprint compaction cannot read does not
    turn that success into an error (verify names the damaged work)."""
    lose_fingerprint(catalog_copy, 2, "garbled")
    with Catalog.open(catalog_copy, settings=Settings(max_shards=1)) as catalog:
        results = catalog.add_paths([NEW_FILE])
        assert [r.status for r in results] == ["added"]
        assert_screens(catalog)
        problems = catalog.verify()
        assert len(problems) == 1 and "work 2" in problems[0]
        # the merge stopped before it put anything in place, and left no folder
        assert catalog.store.db.execute("SELECT COUNT(*) FROM shards").fetchone() == (2,)
        assert not list((catalog_copy / "shards").glob(".merge-*"))
        (note,) = catalog.check().notes  # the merge that cannot run is named
        assert note.startswith("a merge of 2 shards is due and has not run")


def test_a_reader_racing_a_rebuild_reads_the_next_snapshot(catalog_copy: Path, monkeypatch) -> None:
    """A rebuild in another process removes the shard files of the snapshot a reader has just
    listed: FAISS reports the chroma file gone as a RuntimeError, and the reader must read the
    next snapshot, not call a sound catalog damaged."""
    import audiodup.store as store_module

    real, raced = store_module.read_chroma_index, []

    def racing(path):
        if not raced:
            with Catalog.open(catalog_copy, create=False) as other:
                other.rebuild()
            raced.append(path)
        return real(path)

    monkeypatch.setattr(store_module, "read_chroma_index", racing)
    with Catalog.open(catalog_copy, create=False) as catalog:
        verdict = catalog.screen(DUPLICATE)
    assert raced and not raced[0].exists()
    assert verdict.verdict == "duplicate"


def test_damaged_ids_in_a_hash_file_are_no_works_and_screening_goes_on(
    catalog_copy: Path,
) -> None:
    """Bytes overwritten in a hash file's ids give ids of no work (negative ones too): index
    verify names the damage, and screening takes them for no work instead of failing with an
    index error for the whole batch."""
    (hashes,) = (catalog_copy / "shards").glob("h-*.sorted")
    with open(hashes, "r+b") as handle:
        handle.seek(hashes.stat().st_size - 320)
        handle.write(bytes([0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0xFA, 0xF9, 0xF8]))
    with Catalog.open(catalog_copy, create=False) as catalog:
        assert any("checksum" in problem for problem in catalog.verify())
        assert catalog.screen(DUPLICATE).verdict == "duplicate"
        assert catalog.screen(NEW_FILE).verdict == "clean"


def test_an_add_of_files_all_present_finishes_what_an_interrupted_add_left(
    catalog_copy: Path,
) -> None:
    """Killed after its commit, an ``index add`` leaves a due merge and a merge folder; run
    again, every file is already present, and the run still merges and tidies."""
    uploads = sorted(UPLOADS_DIR.glob("*.ogg"))[:9]
    with Catalog.open(catalog_copy, create=False) as catalog:
        catalog.store.merge_after_commit = False  # as a kill right after each commit
        for path in uploads:
            assert catalog.add_paths([path])[0].status in ("added", "identical")
        assert catalog.store.due_merge_run() is not None
    stale = catalog_copy / "shards" / ".merge-0123456789ab"
    stale.mkdir()
    with Catalog.open(catalog_copy, create=False) as catalog:
        assert {r.status for r in catalog.add_paths(uploads)} == {"present"}
        assert catalog.store.due_merge_run() is None and not stale.exists()
        assert catalog.verify() == []
        assert catalog.screen(DUPLICATE).verdict == "duplicate"
