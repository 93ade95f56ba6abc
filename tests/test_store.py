"""Tests for audiodup.store: integrity checks, damage and repair, orphan sweeping, and crash
and concurrency safety of ``audiodup index add`` run as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiodup import Catalog, CatalogError
from audiodup.index import (
    CHROMA_DIM,
    ivf_lists,
    pack_segment_ids,
    padded_columns,
    probed_lists,
    unpack_segment_ids,
)
from audiodup.quads import quad_file_of

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "audio"
CATALOG_DIR = FIXTURES / "catalog"
UPLOADS_DIR = FIXTURES / "uploads"
ADD_INPUTS = [str(CATALOG_DIR), str(UPLOADS_DIR)]


def shard_files(root: Path) -> list[Path]:
    suffixes = (".faiss", ".sorted", ".quads")
    return sorted(p for p in (root / "shards").iterdir() if p.suffix in suffixes)


def referenced_files(catalog: Catalog) -> set[str]:
    rows = catalog.store.db.execute("SELECT hash_file, chroma_file FROM shards").fetchall()
    return {name for h, c in rows for name in (h, c, quad_file_of(h))}


def assert_sound(catalog: Catalog) -> None:
    assert catalog.verify() == []
    shas = [w.sha256 for w in catalog.works()]
    assert len(shas) == len(set(shas)), "the same audio is in the catalog twice"


# --- ids ------------------------------------------------------------------------------------


@given(work_id=st.integers(0, 2**40), n=st.integers(0, 2000))
def test_segment_ids_round_trip(work_id: int, n: int) -> None:
    ids = pack_segment_ids(work_id, n)
    assert ids.dtype == np.int64 and len(ids) == n and np.all(ids >= 0)
    works, segments = unpack_segment_ids(ids)
    assert np.all(works == work_id)
    assert segments.tolist() == list(range(n))


@pytest.mark.parametrize(
    ("n_vectors", "lists"), [(0, 1), (39, 1), (2_560, 64), (20_000, 256), (42_000, 1024)]
)
def test_inverted_lists_grow_with_the_shard(n_vectors: int, lists: int) -> None:
    assert ivf_lists(n_vectors, 40) == lists
    assert n_vectors < 40 or 40 * lists <= n_vectors < 80 * lists


@pytest.mark.parametrize(("n_vectors", "lists"), [(1_000, None), (3_000, 64), (12_000, 256)])
def test_chroma_shards_are_exhaustive_when_small_and_inverted_when_large(
    catalog: Catalog, n_vectors: int, lists: int | None
) -> None:
    vectors = np.random.default_rng(0).standard_normal((n_vectors, CHROMA_DIM)).astype(np.float32)
    index = catalog.store._chroma_index(vectors)
    try:
        nlist = faiss.extract_index_ivf(index).nlist
    except RuntimeError:
        nlist = None
    assert nlist == lists


def test_a_large_chroma_shard_trains_at_most_the_capped_lists() -> None:
    """Training costs vectors x lists: past ``chroma_max_lists`` a shard's lists grow longer
    instead of more numerous, so compacting a large catalog trains in bounded time."""
    from dataclasses import replace

    from audiodup.index import new_chroma_index
    from audiodup.settings import DEFAULT_SETTINGS

    capped = replace(DEFAULT_SETTINGS, chroma_max_lists=128)
    vectors = np.random.default_rng(1).standard_normal((12_000, CHROMA_DIM)).astype(np.float32)
    assert faiss.extract_index_ivf(new_chroma_index(vectors, capped)).nlist == 128
    assert faiss.extract_index_ivf(new_chroma_index(vectors, DEFAULT_SETTINGS)).nlist == 256
    assert DEFAULT_SETTINGS.chroma_max_lists >= ivf_lists(100_000, 40)  # 1,250 works: no cap


@pytest.mark.parametrize(
    ("nlist", "nprobe"), [(1, 24), (64, 24), (4096, 24), (8192, 48), (16_384, 96)]
)
def test_a_finer_chroma_shard_probes_the_same_share_of_its_lists(nlist: int, nprobe: int) -> None:
    """Up to 4,096 lists a search probes ``chroma_nprobe`` of them, past that the same share
    (a shard of a large catalog is split finer, and a copy's nearest segments lie as deep)."""
    from audiodup.settings import DEFAULT_SETTINGS as S

    assert probed_lists(nlist, S.chroma_nprobe, S.chroma_probed_share) == nprobe


def test_loaded_chroma_shards_probe_their_share_and_every_list_finds_the_exhaustive_hits() -> None:
    from audiodup.index import load_indexes, new_chroma_index
    from audiodup.settings import DEFAULT_SETTINGS

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((6_000, CHROMA_DIM)).astype(np.float32)
    index = new_chroma_index(vectors, DEFAULT_SETTINGS)
    index.add_with_ids(padded_columns(vectors, index.d), np.arange(len(vectors), dtype=np.int64))
    ivf = faiss.extract_index_ivf(index)
    assert ivf.nlist == 128
    queries = padded_columns(vectors[:200] + 0.8 * rng.standard_normal((200, CHROMA_DIM)), index.d)
    queries = queries.astype(np.float32)

    load_indexes([], [index], np.ones(1, bool), nprobe=2)
    assert ivf.nprobe == 2
    _, few = index.search(queries, 8)
    load_indexes([], [index], np.ones(1, bool), nprobe=2, probed_share=1.0)
    assert ivf.nprobe == 128
    _, every = index.search(queries, 8)
    exhaustive = faiss.IndexFlatIP(index.d)
    exhaustive.add(padded_columns(vectors, index.d))
    _, nearest = exhaustive.search(queries, 1)
    # SQ8 codes round the similarities, so the exact nearest is among the 8 rather than first
    assert (every == nearest).any(axis=1).mean() >= 0.99  # 1.0 here
    assert (few == nearest).any(axis=1).mean() < 0.8  # 0.56 here: 2 of 128 lists


# --- verify, damage, rebuild ----------------------------------------------------------------


def test_verify_is_clean_on_a_good_catalog(catalog: Catalog) -> None:
    assert catalog.verify() == []
    assert referenced_files(catalog) == {p.name for p in shard_files(catalog.store.root)}


@pytest.mark.parametrize("kind", ["hash", "chroma"])
def test_deleted_shard_file_is_reported_and_rebuilt(catalog_copy: Path, kind: str) -> None:
    victim = next(p for p in shard_files(catalog_copy) if p.name.startswith(kind[0] + "-"))
    victim.unlink()
    with Catalog.open(catalog_copy) as catalog:
        problems = catalog.verify()
        assert problems and any("shard" in p for p in problems)
        with pytest.raises(CatalogError, match="rebuild"):
            catalog.screen(UPLOADS_DIR / "pitch_-3_work_03.ogg")
        catalog.rebuild()
        verdict = catalog.screen(UPLOADS_DIR / "pitch_-3_work_03.ogg")
        assert verdict.verdict == "duplicate"
        assert Path(verdict.matches[0].path).name == "work_03.ogg"


def test_verify_is_clean_after_rebuilding_a_deleted_shard(catalog_copy: Path) -> None:
    shard_files(catalog_copy)[0].unlink()
    with Catalog.open(catalog_copy) as catalog:
        catalog.rebuild()
        assert catalog.verify() == []


def test_verify_during_a_rebuild_reads_the_new_shards_not_damage(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that replaces the shards (a merge, a rebuild) deletes their files once it has
    committed. A review found ``verify`` reading the old list meanwhile, reporting every shard
    'unreadable' and telling the user to rebuild a sound catalog. A damaged shard the writer
    does not replace is still reported."""
    import audiodup.store as store_module

    read = store_module.read_hash_shard
    rebuilt = []

    def read_while_rebuilt(path, *args, **kwargs):
        if not rebuilt:  # another process rebuilds between the list and the first file
            rebuilt.append(True)
            with Catalog.open(catalog_copy) as other:
                other.rebuild()
        return read(path, *args, **kwargs)

    monkeypatch.setattr(store_module, "read_hash_shard", read_while_rebuilt)
    with Catalog.open(catalog_copy) as catalog:
        assert catalog.verify() == [] and rebuilt
        monkeypatch.setattr(store_module, "read_hash_shard", read)
        shard_files(catalog_copy)[0].write_bytes(b"damaged")
        assert any("unreadable index" in problem for problem in catalog.verify())


def test_truncated_shard_file_is_reported_and_rebuilt(catalog_copy: Path) -> None:
    victim = shard_files(catalog_copy)[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with Catalog.open(catalog_copy) as catalog:
        assert catalog.verify()
        catalog.rebuild()
        verdict = catalog.screen(UPLOADS_DIR / "stretch_1.25_work_02.ogg")
        assert verdict.verdict == "duplicate"


def test_garbage_shard_file_is_reported(catalog_copy: Path) -> None:
    shard_files(catalog_copy)[-1].write_bytes(b"\x00garbage" * 64)
    with Catalog.open(catalog_copy) as catalog:
        assert catalog.verify()


def test_stray_files_are_swept_by_the_next_writer(catalog_copy: Path) -> None:
    shards = catalog_copy / "shards"
    (shards / "h-0123456789ab.faiss").write_bytes(b"left by a crash")
    (shards / ".tmp-c-0123456789ab.faiss").write_bytes(b"half written")
    with Catalog.open(catalog_copy) as catalog:
        # opening only reads: the leftovers wait for the next writer, harmless until then
        assert len(list(shards.iterdir())) == 5
        assert catalog.verify() == []
        assert any("interrupted write" in note for note in catalog.check().notes)
        catalog.add_paths([UPLOADS_DIR / "unrelated_a.ogg"])
        assert referenced_files(catalog) == {p.name for p in shards.iterdir()}
        assert catalog.verify() == []


def test_write_ahead_log_is_folded_after_adding(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "cat", create=True) as catalog:
        catalog.add_paths([str(CATALOG_DIR)])
        log = tmp_path / "cat" / "catalog.sqlite-wal"
        # while still open: the added fingerprints are in the database file, not the log
        assert not log.exists() or log.stat().st_size == 0
        assert_sound(catalog)


def test_missing_fingerprint_is_reported(catalog_copy: Path) -> None:
    with Catalog.open(catalog_copy) as catalog:
        catalog.store.db.execute("DELETE FROM fingerprints WHERE work_id = 1")
        assert any("fingerprint" in p for p in catalog.verify())


def damage_fingerprint(catalog: Catalog, work_id: int) -> None:
    catalog.store.db.execute(
        "UPDATE fingerprints SET blob = ? WHERE work_id = ?", (b"\x00\x11\x22\x33", work_id)
    )


def test_damaged_fingerprint_is_reported_by_verify(catalog_copy: Path) -> None:
    with Catalog.open(catalog_copy) as catalog:
        damage_fingerprint(catalog, 2)
        assert catalog.verify()


def test_damaged_fingerprint_is_a_catalog_error(catalog_copy: Path) -> None:
    """Rebuilding (or a chroma look-up) on an undecodable stored fingerprint must fail with the
    catalog's error type, which the CLI turns into one line, not with a numpy exception."""
    with Catalog.open(catalog_copy) as catalog:
        damage_fingerprint(catalog, 2)
        with pytest.raises(CatalogError):
            catalog.rebuild()
        with pytest.raises(CatalogError):
            catalog.store.fingerprint(2)


def test_two_readers_and_a_writer(catalog_copy: Path, tmp_path: Path) -> None:
    """An open catalog notices shards added by another connection."""
    with Catalog.open(catalog_copy) as reader, Catalog.open(catalog_copy) as writer:
        upload = UPLOADS_DIR / "unrelated_a.ogg"
        assert reader.screen(upload).verdict == "clean"
        writer.add_paths([upload])
        verdict = reader.screen(upload)
        assert verdict.verdict == "duplicate"
        assert Path(verdict.matches[0].path).name == "unrelated_a.ogg"
        assert reader.verify() == []


# --- crash safety ---------------------------------------------------------------------------


def add_command(db: Path, inputs: list[str]) -> list[str]:
    return [sys.executable, "-m", "audiodup", "index", "add", "--db", str(db), *inputs]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AUDIODUP_DB", None)
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def kill_after(db: Path, delay_s: float) -> int | None:
    """Start ``index add``, SIGKILL it after ``delay_s`` (if still running); its return code."""
    proc = subprocess.Popen(
        add_command(db, ADD_INPUTS),
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=delay_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=60)


def crash_then_complete(db: Path, delay_s: float, expected_shas: set[str]) -> str | None:
    """One crash experiment; returns a description of what went wrong, or None."""
    kill_after(db, delay_s)
    with Catalog.open(db) as catalog:
        problems = catalog.verify()
        if problems:
            return f"after a kill at {delay_s:.2f} s: verify() = {problems}"
        shas = [w.sha256 for w in catalog.works()]
        if len(shas) != len(set(shas)) or not set(shas) <= expected_shas:
            return f"after a kill at {delay_s:.2f} s: unexpected works {shas}"
        results = catalog.add_paths(ADD_INPUTS)
        failed = [r for r in results if r.status == "failed"]
        if failed:
            return f"completing after a kill at {delay_s:.2f} s: {failed}"
        shas = [w.sha256 for w in catalog.works()]
        problems = catalog.verify()
    if problems:
        return f"completed after a kill at {delay_s:.2f} s: verify() = {problems}"
    if len(shas) != len(set(shas)) or set(shas) != expected_shas:
        return f"completed after a kill at {delay_s:.2f} s: {len(shas)} works, expected " + str(
            len(expected_shas)
        )
    return None


def test_killed_add_leaves_a_sound_catalog(tmp_path: Path, fixture_sha256: dict[str, str]) -> None:
    """SIGKILL ``index add`` at 20 moments from start-up to the final commit; every time the
    catalog must verify, and finishing the add must give each distinct audio exactly once."""
    expected_shas = set(fixture_sha256.values())
    assert len(expected_shas) == len(fixture_sha256) == 17  # uploads differ from their sources
    rng = np.random.default_rng(20240601)
    delays = np.linspace(0.05, 3.0, 20) + rng.uniform(-0.04, 0.04, 20)
    rng.shuffle(delays)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(
            pool.map(
                lambda item: crash_then_complete(tmp_path / f"db{item[0]}", item[1], expected_shas),
                enumerate(np.clip(delays, 0.05, 3.0)),
            )
        )
    failures = [o for o in outcomes if o is not None]
    assert failures == []


def test_killed_add_resumes_with_the_cli(tmp_path: Path, fixture_sha256: dict[str, str]) -> None:
    """Kill during the run, then finish it with the same command line."""
    db = tmp_path / "db"
    kill_after(db, 1.2)
    done = subprocess.run(
        add_command(db, ADD_INPUTS),
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    with Catalog.open(db) as catalog:
        assert_sound(catalog)
        assert {w.sha256 for w in catalog.works()} == set(fixture_sha256.values())


# --- concurrency ----------------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_adds_store_each_audio_once(
    tmp_path: Path, fixture_sha256: dict[str, str], round_: int
) -> None:
    db = tmp_path / "db"
    if round_ == 2:  # one round on an existing catalog, the others race to create it
        with Catalog.open(db) as catalog:
            catalog.add_paths([CATALOG_DIR / "work_00.ogg"])
    inputs_a = ADD_INPUTS
    inputs_b = [str(UPLOADS_DIR), str(CATALOG_DIR / "work_03.ogg"), str(CATALOG_DIR)]
    procs = [
        subprocess.Popen(
            add_command(db, inputs),
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for inputs in (inputs_a, inputs_b)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, (stdout, stderr)
        assert "Traceback" not in stderr
    with Catalog.open(db) as catalog:
        assert_sound(catalog)
        assert {w.sha256 for w in catalog.works()} == set(fixture_sha256.values())
        assert len(catalog.works()) == 17


def test_concurrent_add_and_screen(tmp_path: Path, catalog_copy: Path) -> None:
    """Screening while another process adds works never sees a half-written catalog."""
    proc = subprocess.Popen(
        add_command(catalog_copy, [str(UPLOADS_DIR)]),
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    verdicts = []
    with Catalog.open(catalog_copy) as catalog:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            verdicts.append(catalog.screen(UPLOADS_DIR / "excerpt_15s_work_00.ogg"))
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        verdicts.append(catalog.screen(UPLOADS_DIR / "excerpt_15s_work_00.ogg"))
        assert_sound(catalog)
    assert all(v.verdict == "duplicate" for v in verdicts)
    # once the upload itself is in the catalog it is reported too
    final = {Path(m.path).name: m for m in verdicts[-1].matches}
    assert {"work_00.ogg", "excerpt_15s_work_00.ogg"} <= set(final)
    assert final["excerpt_15s_work_00.ogg"].tempo_ratio == pytest.approx(1.0, rel=0.01)


# -- read-ahead into the page cache -----------------------------------------------------------
def test_the_files_to_warm_are_the_index_files_within_the_budget(catalog_copy: Path) -> None:
    """Never the database: a second descriptor of an SQLite file, closed, drops the process's
    locks on it (a service worker then read a stale catalog)."""
    from audiodup.store import read_ahead

    with Catalog.open(catalog_copy, create=False) as catalog:
        store = catalog.store
        shards = {p.name: p.stat().st_size for p in (catalog_copy / "shards").iterdir()}
        (catalog_copy / "shards" / "stray.bin").write_bytes(b"x" * 100)  # not the catalog's
        plan = store.files_to_warm(1 << 40)
        assert {p.name: n for p, n in plan} == shards
        assert all(p.parent == catalog_copy / "shards" for p, _ in plan)
        # a budget that ends inside the second file: the first whole, the second cut, no more
        first, second = plan[0][1], plan[1][1]
        cut = store.files_to_warm(first + second // 2)
        assert [n for _, n in cut] == [first, second // 2]
        assert store.files_to_warm(0) == []
        # reading: exactly the planned bytes; a file gone meanwhile is skipped
        assert read_ahead(cut, chunk_bytes=4096) == first + second // 2
        plan[1][0].unlink()
        assert read_ahead(plan) == sum(n for _, n in plan) - second


def test_a_catalog_warms_its_files_in_a_background_thread(catalog: Catalog, monkeypatch) -> None:
    import audiodup.catalog as catalog_module
    import audiodup.store as store_module

    read = []
    monkeypatch.setattr(store_module, "read_ahead", lambda plan, stop=None: read.append(plan))
    monkeypatch.setattr(catalog_module, "available_memory", lambda: 10**12)
    thread = catalog.warm_files(share_of_free_memory=0.5)
    thread.join(timeout=600)
    assert thread.daemon and len(read) == 1 and read[0][0][0].parent.name == "shards"
    monkeypatch.setattr(catalog_module, "available_memory", lambda: 0)  # unknown: no reading
    assert catalog.warm_files() is None


def test_the_files_of_some_shards_are_theirs(catalog: Catalog) -> None:
    store = catalog.store
    shard_id, hash_file, chroma_file = store.db.execute(
        "SELECT shard_id, hash_file, chroma_file FROM shards ORDER BY shard_id"
    ).fetchone()
    names = {p.name for p, _ in store.files_to_warm(1 << 40, [shard_id])}
    assert names == {hash_file, chroma_file, quad_file_of(hash_file)}
    assert store.files_to_warm(1 << 40, []) == []


def test_a_catalog_that_cannot_list_its_files_reads_nothing_ahead(
    catalog_copy: Path, monkeypatch
) -> None:
    """The read-ahead is a speed-up: a busy or closed catalog does not fail its caller."""
    from audiodup.errors import CatalogBusyError
    from audiodup.store import CatalogStore

    def busy(self, budget_bytes, shard_ids=None):
        raise CatalogBusyError("the catalog is busy")

    with Catalog.open(catalog_copy, create=False) as catalog:
        assert catalog.store.read_ahead_in_background(1 << 20) is not None
        monkeypatch.setattr(CatalogStore, "files_to_warm", busy)
        assert catalog.store.read_ahead_in_background(1 << 20) is None


def test_the_read_aheads_running_in_a_process_share_one_budget(
    catalog_copy: Path, monkeypatch
) -> None:
    """A Dask worker opening several shard groups at once reads one budget ahead, not one per
    group; a read-ahead that has finished no longer counts."""
    import threading

    import audiodup.store as store_module

    release, planned = threading.Event(), []

    def held(plan, chunk_bytes=4 << 20, stop=None):
        planned.append(sum(n for _, n in plan))
        release.wait(timeout=600)
        return 0

    monkeypatch.setattr(store_module, "read_ahead", held)
    monkeypatch.setattr(store_module, "_READ_AHEAD_RUNNING", {})  # none of other tests' stores
    with (
        Catalog.open(catalog_copy, create=False) as one,
        Catalog.open(catalog_copy, create=False) as two,
    ):
        whole = sum(n for _, n in one.store.files_to_warm(1 << 40))
        first = one.store.read_ahead_in_background(whole // 2)
        assert two.store.read_ahead_in_background(whole // 2) is None  # spent, still running
        second = two.store.read_ahead_in_background(whole)
        release.set()
        first.join(timeout=600)
        second.join(timeout=600)
        assert sorted(planned) == sorted([whole // 2, whole - whole // 2])
        two.store.read_ahead_in_background(whole).join(timeout=600)
        assert planned[-1] == whole  # none running: the whole budget again


def test_hash_files_are_read_ahead_first_and_faiss_hash_indexes_not_at_all(
    catalog_copy: Path, monkeypatch
) -> None:
    import audiodup.store as store_module

    with Catalog.open(catalog_copy, create=False) as catalog:
        kinds = [p.name[0] for p, _ in catalog.store.files_to_warm(1 << 40)]
        assert set(kinds) == set("hqc") and kinds == sorted(kinds, key="hqc".index)
        monkeypatch.setattr(store_module, "HASH_LAYOUT", "faiss")  # as before issue #14
        catalog.rebuild()
        names = [p.name for p, _ in catalog.store.files_to_warm(1 << 40)]
    assert list((catalog_copy / "shards").glob("h-*.faiss")), "the old layout was written"
    assert names and not [n for n in names if n.startswith("h-")], "read whole at load"


def test_hash_files_are_read_ahead_without_read_ahead_and_the_others_in_order(
    catalog_copy: Path, monkeypatch
) -> None:
    """A hash look-up releases its pages only once done: its file must not be cached in the
    large folios a read in order leaves (its scattered reads would map most of it); the
    four-peak and chroma files are, so their look-ups fault a folio at a time."""
    import os

    from audiodup.store import read_ahead

    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this system")
    opened: list[str] = []
    advice: dict[str, int] = {}  # file name -> the advice given while it was the last opened
    monkeypatch.setattr(
        os, "posix_fadvise", lambda fd, start, n, given: advice.update({opened[-1]: given})
    )
    real_open = open

    def recording_open(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    with Catalog.open(catalog_copy, create=False) as catalog:
        plan = catalog.store.files_to_warm(1 << 40)
    monkeypatch.setattr("builtins.open", recording_open)
    assert read_ahead(plan) == sum(n for _, n in plan)
    assert {name[0] for name in opened} == set("hqc")
    for name in opened:
        given = advice.get(name)
        assert given == (os.POSIX_FADV_RANDOM if name.startswith("h-") else None), name


def test_a_refused_read_ahead_hint_still_reads_the_file(catalog_copy: Path, monkeypatch) -> None:
    import os

    from audiodup.store import read_ahead

    def refused(*_):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "posix_fadvise", refused, raising=False)
    with Catalog.open(catalog_copy, create=False) as catalog:
        plan = catalog.store.files_to_warm(1 << 40)
    assert any(p.name.startswith("h-") for p, _ in plan)
    assert read_ahead(plan) == sum(n for _, n in plan)


def test_available_memory_is_a_positive_count_of_bytes_here() -> None:
    from audiodup.store import available_memory

    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc/meminfo on this system")
    assert available_memory() > 1 << 20


def test_available_memory_is_the_smaller_of_the_machine_and_the_container(tmp_path) -> None:
    from audiodup.store import available_memory

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 24000000 kB\nMemAvailable: 20000000 kB\n")
    limit, usage = tmp_path / "memory.max", tmp_path / "memory.current"
    cgroup = ((str(limit), str(usage)),)
    machine = 20_000_000 * 1024
    assert available_memory(str(meminfo), ()) == machine
    limit.write_text("4294967296\n")  # a 4 GiB container, 3 GiB used
    usage.write_text(str(3 << 30))
    assert available_memory(str(meminfo), cgroup) == 1 << 30
    usage.write_text(str(5 << 30))  # over its limit (page cache counted): no room
    assert available_memory(str(meminfo), cgroup) == 0
    limit.write_text("max\n")  # cgroup v2 without a limit
    assert available_memory(str(meminfo), cgroup) == machine
    limit.write_text("9223372036854771712\n")  # cgroup v1 without a limit
    assert available_memory(str(meminfo), cgroup) == machine
    missing = ((str(tmp_path / "none"), str(tmp_path / "none")), *cgroup)
    assert available_memory(str(meminfo), missing) == machine, "the next cgroup layout"
    assert available_memory(str(tmp_path / "no-meminfo"), cgroup) == 0


def test_a_closed_store_stops_its_read_ahead(catalog_copy: Path) -> None:
    import threading

    from audiodup.store import read_ahead

    stop = threading.Event()
    with Catalog.open(catalog_copy, create=False) as catalog:
        plan = catalog.store.files_to_warm(1 << 40)
        assert read_ahead(plan, chunk_bytes=4096, stop=stop) == sum(n for _, n in plan)
        stop.set()
        assert read_ahead(plan, chunk_bytes=4096, stop=stop) == 0
        store = catalog.store
    assert store._closed.is_set(), "closing the catalog stops what its store reads ahead"


_REMOVED_COUNT_PLAN = "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM works WHERE removed = 1"


def test_the_removed_works_are_counted_from_their_index(catalog: Catalog) -> None:
    """``index_key``, asked before every search, counts the removed works: from an index, not by
    reading every work (10 ms a search at 10^5 works)."""
    assert "works_removed" in str(catalog.store.db.execute(_REMOVED_COUNT_PLAN).fetchall())


def test_a_catalog_written_before_the_index_gets_it_with_its_next_write(
    catalog_copy: Path,
) -> None:
    import sqlite3

    db = sqlite3.connect(catalog_copy / "catalog.sqlite")
    db.execute("DROP INDEX works_removed")
    db.close()
    with Catalog.open(catalog_copy, create=False) as catalog:
        key = catalog.store.index_key()
        # opening and reading write nothing
        assert "works_removed" not in str(catalog.store.db.execute(_REMOVED_COUNT_PLAN).fetchall())
        assert catalog.remove(catalog.works()[0].work_id)
        assert "works_removed" in str(catalog.store.db.execute(_REMOVED_COUNT_PLAN).fetchall())
        assert catalog.store.index_key() != key
    with Catalog.open(catalog_copy, create=False) as catalog:
        assert catalog.store.index_key() != key
