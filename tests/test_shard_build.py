"""audiodup.shard_build: a shard's files built through bounded spills are the in-memory build's."""

from __future__ import annotations

import errno
import hashlib
import io
from pathlib import Path

import faiss
import numpy as np
import pytest
from filelock import FileLock

from audiodup import shard_build
from audiodup.catalog import Catalog
from audiodup.errors import CatalogError
from audiodup.hashes import KEY_BITS
from audiodup.index import (
    build_shard,
    chroma_index_of,
    pack_segment_ids,
    write_index,
    write_sorted_hash_shard,
)
from audiodup.quads import write_quad_shard
from audiodup.settings import DEFAULT_SETTINGS
from audiodup.shard_build import KeySpill, RowSpill, SpillFolder, build_shard_files

UPLOADS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"


def written(writer) -> bytes:
    out = io.BytesIO()
    writer(out.write)
    return out.getvalue()


def spill_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spills of a few thousand entries: the fixture's six works go through the partition files."""
    monkeypatch.setattr(shard_build, "SPILL_ENTRIES", 1)
    monkeypatch.setattr(shard_build, "SPILL_ROWS", 40)
    monkeypatch.setattr(shard_build, "CHROMA_CHUNK", 37)


@pytest.fixture(name="spill_small")
def spill_small_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    spill_small(monkeypatch)


def test_spilled_files_are_the_in_memory_build(catalog: Catalog, spill_small, tmp_path) -> None:
    entries = [(w.work_id, catalog.fingerprint(w.work_id)) for w in catalog.works()]
    whole = build_shard(entries, DEFAULT_SETTINGS)
    with SpillFolder(tmp_path) as folder:
        files = build_shard_files(entries, DEFAULT_SETTINGS, folder)
        spilled = sorted(p.name for p in folder.path().iterdir())
        assert any(name.startswith("hashes-") for name in spilled), "the hashes were not spilled"
        assert any(name.startswith("quads-") for name in spilled), "the quads were not spilled"
        assert "rows" in spilled, "the segment vectors were not spilled"
        hash_bytes = written(files.write_hashes)
        quad_bytes = written(files.write_quads)
        chroma = written(files.write_chroma)
        assert written(files.write_hashes) == hash_bytes, "a second write differs"
    assert list(tmp_path.iterdir()) == [], "the spill folder outlived the build"
    assert hash_bytes == written(write_sorted_hash_shard(whole.hash_index))
    assert quad_bytes == written(write_quad_shard(whole.quad_index))
    assert chroma == written(write_index(whole.chroma_index, binary=False))
    assert files.counts == whole.counts
    assert (files.n_hashes, files.n_segments) == (whole.n_hashes, whole.n_segments)


@pytest.mark.parametrize("key_bits", [KEY_BITS, 64])
def test_partitions_read_back_in_key_order_each_key_in_insertion_order(
    key_bits: int, tmp_path: Path
) -> None:
    rng = np.random.default_rng(key_bits)
    high = 1 << key_bits if key_bits < 64 else np.iinfo(np.uint64).max
    keys = rng.integers(0, high, 20_000, dtype=np.uint64, endpoint=key_bits == 64)
    keys[::7] = keys[3]  # one key many times, across spills
    ids = np.arange(len(keys), dtype=np.int64)
    with SpillFolder(tmp_path) as folder:
        spill = KeySpill(folder, "k", key_bits, limit=3_000)
        for start in range(0, len(keys), 1_234):
            spill.add(keys[start : start + 1_234], ids[start : start + 1_234])
        assert spill.spilled and spill.n == len(keys)
        parts = list(spill.partitions())
        assert len(parts) == shard_build.PARTITIONS
        got_keys = np.concatenate([k[np.argsort(k, kind="stable")] for _, _, k, _ in parts])
        got_ids = np.concatenate([i[np.argsort(k, kind="stable")] for _, _, k, i in parts])
        for p, n, k, _ in parts:  # each partition holds its own range of keys
            width = (1 << key_bits) // n
            assert np.all((k >= np.uint64(p * width)) & (k <= np.uint64((p + 1) * width - 1)))
    order = np.argsort(keys, kind="stable")
    assert np.array_equal(got_keys, keys[order]) and np.array_equal(got_ids, ids[order])


def test_a_large_chroma_shard_trains_on_a_sample_and_holds_every_vector(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shard_build, "CHROMA_TRAINING_VECTORS", 3_000)
    dim = shard_build.chroma_dim(DEFAULT_SETTINGS)
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((6_000, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(len(vectors), dtype=np.int64) * 3
    with SpillFolder(tmp_path) as folder:
        spill = RowSpill(folder, dim, limit=1_000)
        for start in range(0, len(vectors), 700):
            spill.add(vectors[start : start + 700], ids[start : start + 700])
        sample = spill.sample(3_000)
        assert sample.shape == (3_000, dim) and np.array_equal(sample, spill.sample(3_000))
        row_of = {row.tobytes(): i for i, row in enumerate(vectors)}
        rows = np.array([row_of[row.tobytes()] for row in sample])
        assert len(set(rows)) == 3_000 and np.all(np.diff(rows) > 0), "rows drawn in order, once"
        assert 0.4 < (rows < 3_000).mean() < 0.6, "the sample is not spread over the rows"
        trained_on = []
        real_index = shard_build.new_chroma_index
        monkeypatch.setattr(
            shard_build,
            "new_chroma_index",
            lambda training, settings: (
                trained_on.append(training) or real_index(training, settings)
            ),
        )
        index = shard_build.chroma_index(spill, DEFAULT_SETTINGS, has_works=True)
        assert np.array_equal(trained_on[0], sample), "not trained on the sample"
    assert index.ntotal == len(vectors)
    assert faiss.extract_index_ivf(index).nlist > 1
    faiss.extract_index_ivf(index).nprobe = 64
    padded = np.zeros((200, index.d), np.float32)
    padded[:, :dim] = vectors[:200]
    _, found = index.search(padded, 1)
    assert (found[:, 0] == ids[:200]).mean() > 0.95, "a stored vector does not find itself"


def test_an_inverted_chroma_index_filled_in_chunks_is_the_one_filled_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shard_build, "CHROMA_CHUNK", 37)
    dim = shard_build.chroma_dim(DEFAULT_SETTINGS)
    vectors = np.random.default_rng(2).random((5_000, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    segments = [(w, vectors[w * 500 : (w + 1) * 500]) for w in range(10)]
    whole, _ = chroma_index_of(segments, DEFAULT_SETTINGS)
    with SpillFolder(tmp_path) as folder:
        spill = RowSpill(folder, dim, limit=700)
        for work_id, rows in segments:
            spill.add(rows, pack_segment_ids(work_id, len(rows)))
        assert spill.spilled
        index = shard_build.chroma_index(spill, DEFAULT_SETTINGS, has_works=True)
    assert faiss.extract_index_ivf(index).nlist > 1
    assert written(write_index(index, binary=False)) == written(write_index(whole, binary=False))


def shard_digests(root: Path) -> dict[str, str]:
    """Each shard file's content by its kind (h, c, q): names differ by a random token."""
    return {
        p.name[0]: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (root / "shards").iterdir()
        if p.is_file()
    }


def test_a_rebuild_through_spills_writes_the_same_files(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Catalog.open(catalog_copy) as catalog:
        catalog.rebuild()  # nothing spilled: six works are far below the limits
        held = shard_digests(catalog_copy)
        spill_small(monkeypatch)
        catalog.rebuild()
        assert catalog.verify() == []
        verdict = catalog.screen(UPLOADS_DIR / "stretch_1.25_work_02.ogg")
    assert verdict.verdict == "duplicate"
    assert shard_digests(catalog_copy) == held
    assert [p.name for p in (catalog_copy / "shards").iterdir() if p.is_dir()] == []


def test_a_build_that_fails_leaves_the_catalog_and_no_spill(
    catalog_copy: Path, spill_small, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = shard_digests(catalog_copy)

    def full_disk(spill):
        assert spill.spilled and spill.folder.path().is_dir(), "the test needs a spill to exist"
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shard_build, "quad_file", full_disk)
    with Catalog.open(catalog_copy) as catalog:
        with pytest.raises(CatalogError) as caught:
            catalog.rebuild()
        assert "\n" not in str(caught.value) and "disk" in str(caught.value).lower()
        assert catalog.verify() == []
    assert shard_digests(catalog_copy) == before
    assert [p for p in (catalog_copy / "shards").iterdir() if p.is_dir()] == []


def test_a_spill_folder_left_by_a_crash_is_swept_and_others_stay(catalog_copy: Path) -> None:
    shards = catalog_copy / "shards"
    left = shards / f"{shard_build.SPILL_PREFIX}k3x_9a0q"
    left.mkdir()
    (left / "hashes-3.keys").write_bytes(b"\x00" * 64)
    mine = shards / "spill-notes"  # not the catalog's name: left alone, and reported
    mine.mkdir()
    interrupted = (
        "1 spill folder of an interrupted shard build; "
        "the next index add, rebuild or upgrade removes them"
    )
    with Catalog.open(catalog_copy) as catalog:
        notes = catalog.check().notes
        assert interrupted in notes
        assert any("spill-notes/ is not the catalog's" in note for note in notes)
        assert not any(shard_build.SPILL_PREFIX in note for note in notes)
        # removing a work leaves shards/ as it is, as the note says
        assert catalog.remove(catalog.works()[0].work_id)
        assert left.exists() and interrupted in catalog.check().notes
        catalog.add_paths([UPLOADS_DIR / "unrelated_a.ogg"])
    assert not left.exists() and mine.exists()


def test_a_write_in_progress_is_not_called_interrupted(catalog_copy: Path) -> None:
    shards = catalog_copy / "shards"
    (shards / f"{shard_build.SPILL_PREFIX}live0001").mkdir()
    (shards / "h-0123456789ab.sorted").write_bytes(b"being written")
    writer = FileLock(str(catalog_copy / "catalog.lock"))  # another writer's descriptor
    with Catalog.open(catalog_copy) as catalog:
        with writer:
            notes = catalog.check().notes
            assert (
                "1 unreferenced index file and 1 spill folder of the write in progress "
                "(another process holds the writer lock)"
            ) in notes
            assert not any("interrupted" in note for note in notes)
        notes = catalog.check().notes
        assert any("interrupted shard build" in note for note in notes)
        assert any("left by an interrupted write" in note for note in notes)


def disk_use(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("n_groups", [0, 3])
def test_the_disk_estimate_covers_a_rebuild_and_not_many_times_over(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch, n_groups: int
) -> None:
    from audiodup import store as store_module

    spill_small(monkeypatch)
    estimates: list[int] = []
    real_estimate = store_module.regeneration_bytes

    def recorded(*args, **kwargs) -> int:
        estimates.append(real_estimate(*args, **kwargs))
        return estimates[-1]

    monkeypatch.setattr(store_module, "regeneration_bytes", recorded)
    with Catalog.open(catalog_copy) as catalog:
        catalog.store.split_shards(n_groups)
        start = disk_use(catalog_copy / "shards")
        peaks = []
        real_put = catalog.store._put_file

        def measured_put(name, write, folder=None) -> None:
            real_put(name, write, folder)  # after each file: every file so far, and the spill
            peaks.append(disk_use(catalog_copy / "shards") - start)

        monkeypatch.setattr(catalog.store, "_put_file", measured_put)
        estimates.clear()
        catalog.rebuild()
    assert len(estimates) == 1 and len(peaks) == 3 * max(n_groups, 1)
    assert max(peaks) <= estimates[0] <= 3 * max(peaks) + (1 << 16), (max(peaks), estimates)


def test_a_rebuild_the_free_disk_cannot_hold_is_refused_before_it_starts(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audiodup import store as store_module
    from audiodup.errors import DiskFullError

    estimates: list[int] = []
    real_estimate = store_module.regeneration_bytes
    monkeypatch.setattr(
        store_module,
        "regeneration_bytes",
        lambda *a, **k: estimates.append(real_estimate(*a, **k)) or estimates[-1],
    )
    before = shard_digests(catalog_copy)
    with Catalog.open(catalog_copy) as catalog:
        monkeypatch.setattr(store_module, "_free_bytes", lambda path: 1 << 40)
        catalog.rebuild()
        needed = estimates[-1]
        monkeypatch.setattr(store_module, "_free_bytes", lambda path: needed - 1)
        with pytest.raises(DiskFullError) as refused:
            catalog.rebuild()
        assert "\n" not in str(refused.value) and "free disk" in str(refused.value)
        assert catalog.verify() == []
        monkeypatch.setattr(store_module, "_free_bytes", lambda path: needed)
        catalog.rebuild()
        assert catalog.verify() == []
    assert shard_digests(catalog_copy).keys() == before.keys()


def test_a_writer_called_after_its_build_is_refused(
    catalog: Catalog, spill_small, tmp_path: Path
) -> None:
    entries = [(w.work_id, catalog.fingerprint(w.work_id)) for w in catalog.works()]
    with SpillFolder(tmp_path) as folder:
        files = build_shard_files(entries, DEFAULT_SETTINGS, folder)
    for write in (files.write_hashes, files.write_quads, files.write_chroma):
        with pytest.raises(RuntimeError, match="inside its build"):
            written(write)
    assert list(tmp_path.iterdir()) == [], "a late writer made a spill folder"
