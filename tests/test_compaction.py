"""audiodup.compaction: the merge plan keeps at most max_shards shards and rewrites each work a few
times, not once per few commits, as a catalog grows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import UPLOADS_DIR

from audiodup.catalog import Catalog
from audiodup.compaction import shards_to_merge, size_ratio
from audiodup.settings import Settings
from audiodup.synth import synthesize_work


def grow(total: int, batch: int, max_shards: int = 8) -> tuple[float, int, list[int]]:
    """Commit ``batch``-entry shards until ``total``, merging as planned: entries rewritten per
    entry added, the most shards ever held, and the final sizes."""
    sizes: list[int] = []
    rewritten = most = 0
    for _ in range(total // batch):
        sizes.append(batch)
        plan = shards_to_merge(sizes, max_shards)
        if plan:
            merged = sum(sizes[i] for i in plan)
            rewritten += merged
            sizes = [s for i, s in enumerate(sizes) if i not in set(plan)] + [merged]
            assert shards_to_merge(sizes, max_shards) == [], "one merge per commit"
        most = max(most, len(sizes))
    return rewritten / total, most, sorted(sizes, reverse=True)


@pytest.mark.parametrize("batch", [1, 32, 1_250])
def test_growth_rewrites_each_work_a_few_times(batch: int) -> None:
    per_work, most, sizes = grow(100_000, batch)
    assert most <= 8
    # merging all but the largest shard rewrote each work 3,572 (batch 1), 112 (32) and 4 (1,250)
    # times on the way to 10^5 works, ten times more per tenfold catalog
    assert per_work <= 20
    if batch <= 32:  # a tenth of the catalog, still many commits
        tenth, _, _ = grow(10_000, batch)
        assert per_work <= 2 * tenth
    assert sizes[0] >= size_ratio(sizes, 8) * sum(sizes[1:])  # the largest stays apart


def test_a_merge_takes_a_run_of_the_smallest_shards() -> None:
    sizes = [400_000, 30, 9_000, 20, 1_500, 10]
    assert shards_to_merge(sizes, 6) == []  # no more shards than allowed: nothing merged
    # r = 13.2 for 5 shards: 9,000 < r x (1,500 + 30 + 20 + 10), 400,000 > r x 10,560
    assert sorted(shards_to_merge(sizes, 5)) == [1, 2, 3, 4, 5]
    assert sorted(shards_to_merge(sizes, 4)) == [1, 2, 3, 4, 5]  # r = 33.5
    assert sorted(shards_to_merge([40_000, *sizes[1:]], 5)) == [0, 1, 2, 3, 4, 5]  # r = 7.4
    rng = np.random.default_rng(7)
    for _ in range(200):
        sizes = list(rng.integers(0, 10**6, size=int(rng.integers(2, 20))))
        plan = shards_to_merge(sizes, 8)
        assert len(sizes) - len(plan) + bool(plan) <= 8
        assert sorted(sizes[i] for i in plan) == sorted(sizes)[: len(plan)]


def test_too_many_shards_are_always_merged() -> None:
    sizes = [10**6 // 4**k for k in range(10)]  # geometric: the ratio rule alone would keep them
    plan = shards_to_merge(sizes, 8)
    assert len(sizes) - len(plan) + 1 <= 8
    assert shards_to_merge(sizes[:1], 8) == [] and shards_to_merge([], 8) == []
    assert sorted(shards_to_merge([5, 0, 7], 1)) == [0, 1, 2]  # max_shards 1: everything, empty too


def test_adding_one_work_at_a_time_keeps_the_planned_layout(tmp_path: Path) -> None:
    def work(seed: int, seconds: float) -> Path:
        path = tmp_path / f"work-{seed}.wav"
        sf.write(path, synthesize_work(seed, seconds, 22050), 22050)
        return path

    with Catalog.open(tmp_path / "db", settings=Settings(max_shards=3)) as catalog:
        catalog.add_paths([work(seed, 60.0) for seed in (900, 901, 902)])
        ((first,),) = catalog.store.db.execute("SELECT shard_id FROM shards").fetchall()
        seen = {first}
        for seed in range(910, 914):
            assert [r.status for r in catalog.add_paths([work(seed, 8.0)])] == ["added"]
            rows = catalog.store.db.execute("SELECT shard_id, n_hashes FROM shards").fetchall()
            sizes = [n for _, n in rows]
            assert len(sizes) <= 3 and shards_to_merge(sizes, 3) == []
            assert first in {shard for shard, _ in rows}, "the large shard was rewritten"
            seen |= {shard for shard, _ in rows}
        assert len(seen) > len(rows) + 1, "no merge happened"
        indexed = catalog.store.db.execute("SELECT SUM(n_hashes) FROM works").fetchone()[0]
        assert indexed == sum(sizes)  # every work in exactly one shard
        assert catalog.verify() == []
        for entry in catalog.works():
            verdict = catalog.screen(entry.path)
            assert verdict.verdict == "duplicate" and verdict.matches[0].work_id == entry.work_id
        for chance in ("unrelated_a.ogg", "unrelated_b.ogg"):  # merged shards accuse no one
            assert catalog.screen(UPLOADS_DIR / chance).verdict == "clean", chance


def _catalog_of_small_shards(root: Path, tmp_path: Path, n: int) -> Catalog:
    """A catalog of ``n`` one-work shards, max_shards 3, its merges left undone."""
    catalog = Catalog.open(root, settings=Settings(max_shards=3))
    catalog.store.merge_after_commit = False
    for seed in range(920, 920 + n):
        path = tmp_path / f"work-{seed}.wav"
        sf.write(path, synthesize_work(seed, 10.0, 22050), 22050)
        assert [r.status for r in catalog.add_paths([path])] == ["added"]
    return catalog


def _one_shard_per_work(catalog: Catalog) -> None:
    """Every live work in exactly one existing shard, whose entries are its works'."""
    db = catalog.store.db
    assert db.execute(
        "SELECT COUNT(*) FROM works WHERE removed = 0 AND shard_id NOT IN "
        "(SELECT shard_id FROM shards)"
    ).fetchone() == (0,)
    for shard_id, n_hashes in db.execute("SELECT shard_id, n_hashes FROM shards").fetchall():
        held = db.execute("SELECT SUM(n_hashes) FROM works WHERE shard_id = ?", (shard_id,))
        assert held.fetchone()[0] == n_hashes
    assert catalog.verify() == []


def test_a_merge_is_built_while_other_writers_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merged shard is built without the writer lock: meanwhile another process's commit
    gets the lock at once (no wait allowed), its sweep spares the merge's folder and it does not
    merge too (the merge lock is taken); then the merge is put in place and every work, the one
    committed meanwhile included, is in exactly one shard and screens as itself."""
    from audiodup.store import CatalogStore

    root = tmp_path / "db"
    catalog = _catalog_of_small_shards(root, tmp_path, 5)
    late = tmp_path / "late.wav"
    sf.write(late, synthesize_work(990, 10.0, 22050), 22050)
    put_files, seen = CatalogStore._put_files, []

    def meanwhile(self, names, files, folder=None):
        put_files(self, names, files, folder)
        if folder is None or seen:  # only the merge's own build, once
            return
        seen.append(folder)
        with Catalog.open(root, create=False, settings=Settings(max_shards=3)) as other:
            other.store.lock_timeout_s = 0.0
            assert [r.status for r in other.add_paths([late])] == ["added"]
            assert folder.is_dir() and all((folder / name).is_file() for name in names)
            assert other.store.merge_due_shards() == 0  # the merge lock is held
            notes = other.check().notes
            assert any("merge in progress" in note for note in notes), notes

    monkeypatch.setattr(CatalogStore, "_put_files", meanwhile)
    with catalog:
        before = catalog.store.db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
        assert before == 5 and catalog.store.merge_due_shards() >= 1
        assert seen and not seen[0].exists()  # the merge's folder is gone
        shards = catalog.store.db.execute("SELECT n_hashes FROM shards").fetchall()
        assert len(shards) <= 3 and shards_to_merge([n for (n,) in shards], 3) == []
        _one_shard_per_work(catalog)
        for entry in catalog.works():  # the late work (its own shard) included
            verdict = catalog.screen(entry.path)
            assert verdict.verdict == "duplicate" and verdict.matches[0].work_id == entry.work_id
        assert catalog.screen(UPLOADS_DIR / "unrelated_a.ogg").verdict == "clean"


def test_a_merge_whose_shards_were_rebuilt_meanwhile_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild that replaces the shards a merge is building from: the merge puts nothing in
    place (its shard would hold what the rebuild's already do) and leaves no file behind."""
    from audiodup.store import CatalogStore

    root = tmp_path / "db"
    catalog = _catalog_of_small_shards(root, tmp_path, 5)
    put_files = CatalogStore._put_files

    def rebuilt_meanwhile(self, names, files, folder=None):
        put_files(self, names, files, folder)
        if folder is not None:
            with Catalog.open(root, create=False) as other:
                other.store.rebuild()

    monkeypatch.setattr(CatalogStore, "_put_files", rebuilt_meanwhile)
    with catalog:
        assert catalog.store.merge_due_shards() == 0
        assert catalog.store.db.execute("SELECT COUNT(*) FROM shards").fetchone() == (1,)
        _one_shard_per_work(catalog)
        shards = root / "shards"
        assert sorted(p.name[0] for p in shards.iterdir()) == ["c", "h", "q"]


def test_an_interrupted_merge_is_named_then_swept(tmp_path: Path) -> None:
    """A merge folder its merger left (the process died: the merge lock is free) is named by
    verify and removed by the next write; a running merge's (the lock held) is spared."""
    from filelock import FileLock

    root = tmp_path / "db"
    with _catalog_of_small_shards(root, tmp_path, 2) as catalog:
        left = root / "shards" / ".merge-0123456789ab"
        left.mkdir()
        (left / "h-0123456789ab.sorted").write_bytes(b"partial")
        notes = catalog.check().notes
        assert any("1 merge folder of an interrupted merge" in note for note in notes), notes
        with FileLock(str(root / "merge.lock")):
            catalog.store.rebuild()
            assert left.is_dir()
        catalog.store.rebuild()
        assert not left.exists() and catalog.verify() == []


def test_a_split_catalog_merges_on_after_a_removed_work_s_shard_is_merged_away(
    tmp_path: Path,
) -> None:
    """A removed work keeps the id of its shard, which a merge then replaces: the next merges
    of its group, and loading the group alone (a Dask worker's view), count only the shards
    that exist."""
    paths = []
    for seed in range(7):
        paths.append(tmp_path / f"work-{seed}.wav")
        sf.write(paths[-1], synthesize_work(950 + seed, 8.0, 22050), 22050)
    with Catalog.open(tmp_path / "db", settings=Settings(max_shards=2)) as catalog:
        catalog.add_paths(paths[:2])
        catalog.store.split_shards(2)
        for path in paths[2:4]:
            assert [r.status for r in catalog.add_paths([path])] == ["added"]
        assert catalog.remove(1)  # group 1, in a shard that merges next
        for path in paths[4:]:
            assert [r.status for r in catalog.add_paths([path])] == ["added"]
        store = catalog.store
        gone = store.db.execute(
            "SELECT COUNT(*) FROM works WHERE shard_id NOT IN (SELECT shard_id FROM shards)"
        ).fetchone()[0]
        assert gone == 1  # the removed work's shard was merged away
        for group, shard_ids in store.group_shards(2).items():
            assert 0 < len(shard_ids) <= 2
            loaded = store.load_indexes(group=(group, 2))
            assert len(loaded.chroma_shards) == len(shard_ids)
        assert store.merge_due_shards() == 0 and catalog.verify() == []
        for entry in catalog.works():
            assert catalog.screen(entry.path).matches[0].work_id == entry.work_id


def test_with_no_merge_due_the_writer_lock_is_not_taken(tmp_path: Path) -> None:
    """The service asks for merges after every upload it records: when none is due the answer
    comes from a read, without waiting for a writer; when one is, the merge waits for the lock."""
    from filelock import FileLock

    from audiodup.errors import CatalogBusyError

    root = tmp_path / "db"
    with _catalog_of_small_shards(root, tmp_path, 3) as catalog:
        catalog.store.lock_timeout_s = 0.0
        with FileLock(str(root / "catalog.lock")):  # another writer
            assert catalog.store.merge_due_shards() == 0
        sf.write(tmp_path / "more.wav", synthesize_work(940, 10.0, 22050), 22050)
        assert [r.status for r in catalog.add_paths([tmp_path / "more.wav"])] == ["added"]
        with FileLock(str(root / "catalog.lock")), pytest.raises(CatalogBusyError):
            catalog.store.merge_due_shards()  # 4 shards of at most 3: one is due
        assert catalog.store.merge_due_shards() == 1


def test_verify_names_a_merge_that_cannot_run(tmp_path: Path) -> None:
    """A ``merge.lock`` that is a folder: every merge is refused, each commit still lands, and
    verify says why the shards pile up; with the lock usable the next commit merges them."""
    root = tmp_path / "db"
    with _catalog_of_small_shards(root, tmp_path, 3) as catalog:
        catalog.store.merge_after_commit = True
        (root / "merge.lock").unlink(missing_ok=True)
        (root / "merge.lock").mkdir()
        sf.write(tmp_path / "more.wav", synthesize_work(941, 10.0, 22050), 22050)
        assert [r.status for r in catalog.add_paths([tmp_path / "more.wav"])] == ["added"]
        assert catalog.store.db.execute("SELECT COUNT(*) FROM shards").fetchone() == (4,)
        notes = catalog.check().notes
        assert notes == ("merge.lock is not a file: no shard merge can run (remove it)",)
        (root / "merge.lock").rmdir()
        (note,) = catalog.check().notes
        assert note.startswith("a merge of ") and "more than 3 in a shard group" in note
        assert catalog.store.merge_due_shards() >= 1
        assert catalog.check().notes == () and catalog.verify() == []
