"""The on-disk hash layout (sorted, memory-mapped shards, issue #14) against FAISS's
IndexBinaryHash: the same hits in the same order, the same verdicts, damage refused, old
catalogs still open, rebuild converts them, interrupted writes leave a readable catalog, and the
entries stay in the page cache rather than in the process's anonymous memory."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiodup import Catalog, CatalogError, shard_build
from audiodup import store as store_module
from audiodup.audio import load_audio
from audiodup.fingerprint import fingerprint_audio, fingerprint_hashes
from audiodup.hashes import KEY_BITS, keys_to_codes
from audiodup.index import (
    HashShard,
    LoadedIndexes,
    SortedHashShard,
    bucket_sizes,
    chroma_dim,
    load_indexes,
    merge_sorted_hash_shards,
    new_chroma_index,
    pack_segment_ids,
    padded_columns,
    read_chroma_index,
    read_hash_shard,
    read_index,
    read_sorted_hash_shard,
    set_nprobe,
    sorted_hash_shard,
    sorted_ids_intact,
    write_index,
    write_sorted_hash_shard,
)
from audiodup.match import chroma_candidates
from audiodup.quads import grouped_quads, read_quad_shard, write_quad_shard
from audiodup.settings import DEFAULT_SETTINGS
from audiodup.store import CatalogStore, NewWork

UPLOADS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"
N_KEYS = 1 << KEY_BITS
_WORK_SHIFT = 38  # hashes.pack_entry_ids


def write(path: Path, writer) -> Path:
    with open(path, "wb") as handle:
        writer(handle.write)
    return path


def faiss_shard(keys: np.ndarray, ids: np.ndarray):
    """An IndexBinaryHash filled as build_shard filled it before issue #14: insertion order."""
    index = faiss.IndexBinaryHash(32, 24)
    if len(keys):
        index.add_with_ids(keys_to_codes(keys), ids)
    return index


def random_shards(seed: int, n_shards: int, key_range: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Entries of works in increasing work id, shard after shard, keys crowded into
    ``key_range`` keys so that buckets hold several entries."""
    rng = np.random.default_rng(seed)
    shards, work = [], 1
    for _ in range(n_shards):
        keys, ids = [], []
        for _ in range(int(rng.integers(0, 4))):
            n = int(rng.integers(1, 60))
            keys.append(rng.integers(0, key_range, n))
            ids.append((np.int64(work) << _WORK_SHIFT) | rng.integers(0, 1 << 30, n))
            work += 1
        keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        shards.append((keys.astype(np.int64), ids.astype(np.int64)))
    return shards


def snapshot(shards: list, n_works: int = 1000) -> LoadedIndexes:
    sizes = bucket_sizes(shards)
    has_key = [bucket_sizes([s]) > 0 for s in shards]
    return LoadedIndexes(shards, [], np.ones(n_works, bool), sizes, has_key)


# -- the same hits in the same order --------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 300))
def test_sorted_shards_answer_exactly_as_faiss_did(seed: int, n_shards: int, key_range: int):
    entries = random_shards(seed, n_shards, key_range)
    old = snapshot([faiss_shard(k, i) for k, i in entries])
    new = snapshot([sorted_hash_shard(k, i) for k, i in entries])
    rng = np.random.default_rng(seed + 1)
    # present and absent keys, repeated keys, the last key, in any order
    keys = np.concatenate([rng.integers(0, key_range + 5, 200), [N_KEYS - 1, 0, 0]])
    keys = keys.astype(np.uint32)
    assert np.array_equal(old.bucket_sizes, new.bucket_sizes)
    before, after = old.lookup_hashes(keys), new.lookup_hashes(keys)
    assert (before is None) == (after is None)
    if before is not None:
        assert np.array_equal(before.query_rows, after.query_rows)
        assert np.array_equal(before.entry_ids, after.entry_ids)
        assert after.query_rows.dtype == after.entry_ids.dtype == np.int64


def test_a_sorted_shard_file_answers_as_the_shard_it_was_written_from(tmp_path: Path) -> None:
    keys, ids = random_shards(7, 1, 50)[0]
    built = sorted_hash_shard(keys, ids)
    path = write(tmp_path / "h-0123456789ab.sorted", write_sorted_hash_shard(built))
    stored = read_hash_shard(path)
    assert isinstance(stored.index, SortedHashShard)
    assert np.array_equal(stored.bucket_sizes, np.bincount(keys, minlength=N_KEYS))
    assert np.array_equal(np.asarray(stored.index.ids), built.ids)
    asked = np.arange(60)
    for got, want in zip(stored.index.lookup(asked), built.lookup(asked), strict=True):
        assert np.array_equal(got, want)
    assert sorted_ids_intact(stored.index)


def test_an_empty_sorted_shard_opens_and_finds_nothing(tmp_path: Path) -> None:
    empty = sorted_hash_shard(np.zeros(0, np.int64), np.zeros(0, np.int64))
    path = write(tmp_path / "h-0123456789ab.sorted", write_sorted_hash_shard(empty))
    stored = read_sorted_hash_shard(path)
    assert stored.ntotal == 0 and stored.bucket_sizes.sum() == 0
    rows, ids = stored.lookup(np.array([0, 5, N_KEYS - 1]))
    assert len(rows) == len(ids) == 0


def store_one_work_per_shard(root: Path, catalog: Catalog, layout: str, monkeypatch) -> None:
    """A catalog of the fixture works' stored fingerprints, one batch (one shard) per work,
    its hash shards written in ``layout``."""
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "HASH_LAYOUT", layout)
        store = CatalogStore(root, DEFAULT_SETTINGS)
        try:
            for work in catalog.works():
                item = NewWork(
                    path=work.path,
                    sha256=work.sha256,
                    duration_s=work.duration_s,
                    fingerprint=catalog.fingerprint(work.work_id),
                )
                store.commit_batch([item])
        finally:
            store.db.close()


@pytest.fixture(scope="module")
def uploads() -> list:
    names = sorted(p.name for p in UPLOADS_DIR.iterdir())
    return [load_audio(UPLOADS_DIR / n, DEFAULT_SETTINGS) for n in names]


def without_times(verdict):
    return replace(
        verdict,
        fingerprint_s=0.0,
        search_s=0.0,
        fingerprint_cpu_s=0.0,
        search_cpu_s=0.0,
        index_load_s=0.0,
        index_load_cpu_s=0.0,
    )


def test_a_catalog_built_both_ways_gives_the_same_hits_and_verdicts(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uploads: list
) -> None:
    roots = {layout: tmp_path / layout for layout in ("faiss", "sorted")}
    for layout, root in roots.items():
        store_one_work_per_shard(root, catalog, layout, monkeypatch)
    assert len(list((roots["faiss"] / "shards").glob("h-*.faiss"))) == len(catalog.works()) > 1
    assert len(list((roots["sorted"] / "shards").glob("h-*.sorted"))) == len(catalog.works())
    every_key = np.arange(N_KEYS, dtype=np.uint32)
    observed = {}
    for layout, root in roots.items():
        with Catalog.open(root, create=False) as opened:
            assert opened.verify() == []
            indexes = opened.indexes()
            hits = indexes.lookup_hashes(every_key)
            verdicts = [
                without_times(opened.screen_audio(a, name=str(i))) for i, a in enumerate(uploads)
            ]
            observed[layout] = (indexes.bucket_sizes, hits, verdicts)
    old_sizes, old_hits, old_verdicts = observed["faiss"]
    new_sizes, new_hits, new_verdicts = observed["sorted"]
    assert np.array_equal(old_sizes, new_sizes)
    assert np.array_equal(old_hits.query_rows, new_hits.query_rows)
    assert np.array_equal(old_hits.entry_ids, new_hits.entry_ids)
    assert len(new_hits.entry_ids) == new_sizes.sum() > 0
    assert [v.verdict for v in new_verdicts].count("duplicate") >= 5  # the copies are found
    assert "clean" in [v.verdict for v in new_verdicts]  # and the unrelated uploads are not
    for before, after in zip(old_verdicts, new_verdicts, strict=True):
        assert before.verdict == after.verdict
        assert [m.work_id for m in before.matches] == [m.work_id for m in after.matches]
        assert [m.score for m in before.matches] == [m.score for m in after.matches]
        assert [m.false_match_probability for m in before.matches] == [
            m.false_match_probability for m in after.matches
        ]


# -- old catalogs, rebuild, mixed shards ----------------------------------------------------------
def faiss_layout(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "HASH_LAYOUT", "faiss")
        with Catalog.open(root, create=False) as opened:
            opened.rebuild()
    assert list((root / "shards").glob("h-*.faiss"))
    return root


def test_an_old_layout_catalog_opens_takes_new_sorted_shards_and_rebuild_converts_it(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faiss_layout(catalog_copy, monkeypatch)
    upload = UPLOADS_DIR / "unrelated_a.ogg"
    copy = UPLOADS_DIR / "pitch_-3_work_03.ogg"
    with Catalog.open(catalog_copy, create=False) as opened:
        before = opened.screen(copy)
        assert before.verdict == "duplicate"
        opened.add_paths([upload])  # a new shard, in the sorted layout, beside the FAISS one
        files = {p.suffix for p in (catalog_copy / "shards").glob("h-*")}
        assert files == {".faiss", ".sorted"}
        assert opened.verify() == []
        mixed = opened.indexes()
        assert len(mixed.hash_shards) == 2
        assert opened.screen(upload).verdict == "duplicate"  # found in the sorted shard
        mixed_copy = without_times(opened.screen(copy))
        assert mixed_copy.verdict == "duplicate"
        opened.rebuild()
        assert {p.suffix for p in (catalog_copy / "shards").glob("h-*")} == {".sorted"}
        assert opened.verify() == []
        assert without_times(opened.screen(copy)) == mixed_copy


# -- damage -------------------------------------------------------------------------------------
def sorted_file(root: Path) -> Path:
    return next((root / "shards").glob("h-*.sorted"))


@pytest.mark.parametrize(
    "damage",
    ["truncated", "longer", "magic", "key bits", "sizes length", "sizes", "empty"],
)
def test_a_damaged_sorted_shard_is_refused_at_open(catalog_copy: Path, damage: str) -> None:
    path = sorted_file(catalog_copy)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[:-8]
    elif damage == "longer":
        data += b"\x00" * 8
    elif damage == "magic":
        data[5] ^= 0xFF
    elif damage == "key bits":
        data[32] ^= 0x01
    elif damage == "sizes length":
        data[56] ^= 0x08  # the ids would start 8 bytes off
    elif damage == "sizes":
        data[64 + 20] ^= 0x01  # inside the compressed bucket sizes
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(RuntimeError):
        read_hash_shard(path)
    with Catalog.open(catalog_copy, create=False) as opened:
        with pytest.raises(CatalogError, match="damaged or missing"):
            opened.indexes()
        assert any("unreadable index" in p for p in opened.verify())
        opened.rebuild()
        assert opened.verify() == []
        assert opened.screen(UPLOADS_DIR / "pitch_-3_work_03.ogg").verdict == "duplicate"


def test_damaged_entries_are_found_by_verify_and_repaired_by_rebuild(catalog_copy: Path) -> None:
    path = sorted_file(catalog_copy)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # inside the last entry id: opening cannot tell, the checksum can
    path.write_bytes(bytes(data))
    with Catalog.open(catalog_copy, create=False) as opened:
        assert any("fail their checksum" in p for p in opened.verify())
        opened.rebuild()
        assert opened.verify() == []


# -- interrupted writes ---------------------------------------------------------------------------
def test_a_write_interrupted_inside_a_sorted_shard_leaves_the_catalog_readable(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shard_build.sorted_hash_file

    def full_disk_after_the_header(spill):
        writer, n_entries = real(spill)

        def write_some(sink):
            def failing(data):
                if failing.written > 0:
                    raise OSError(errno.ENOSPC, "No space left on device")
                failing.written += len(data)
                sink(data)

            failing.written = 0
            writer(failing)

        return write_some, n_entries

    with Catalog.open(catalog_copy, create=False) as opened:
        before = without_times(opened.screen(UPLOADS_DIR / "stretch_1.25_work_02.ogg"))
        n_works = len(opened.works())
    monkeypatch.setattr(shard_build, "sorted_hash_file", full_disk_after_the_header)
    with (
        Catalog.open(catalog_copy, create=False) as opened,
        pytest.raises(CatalogError, match="disk is full"),
    ):
        opened.add_paths([UPLOADS_DIR / "unrelated_b.ogg"])
    monkeypatch.undo()
    leftovers = [p.name for p in (catalog_copy / "shards").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []
    with Catalog.open(catalog_copy, create=False) as opened:
        assert opened.verify() == []
        assert len(opened.works()) == n_works
        after = without_times(opened.screen(UPLOADS_DIR / "stretch_1.25_work_02.ogg"))
        assert after == before


# -- bounded memory -------------------------------------------------------------------------------
def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def maps_a_file(array: np.ndarray) -> bool:
    """Whether ``array``'s memory is a file's map (np.frombuffer over an mmap)."""
    base = array.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def test_opened_entries_are_memory_mapped_not_copied(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 6_000_000  # 48 MB of entry ids
    keys = rng.integers(0, N_KEYS, n)
    ids = rng.integers(0, 1 << 62, n)
    path = write(
        tmp_path / "h-0123456789ab.sorted", write_sorted_hash_shard(sorted_hash_shard(keys, ids))
    )
    del keys, ids
    anon_before = rss_kib("RssAnon")
    shard = read_sorted_hash_shard(path)
    # the ids are a view of the file's map: the process holds only the offsets (4 MB)
    assert maps_a_file(shard.ids)
    assert not shard.ids.flags.writeable
    anon_opened = rss_kib("RssAnon") - anon_before
    assert anon_opened < 16 * 1024, anon_opened
    rows, found = shard.lookup(np.arange(0, N_KEYS, 64))
    assert len(found) > 0
    # a look-up copies out only the hits it returns, never the whole array
    assert rss_kib("RssAnon") - anon_before < 16 * 1024 + 3 * found.nbytes // 1024


def test_a_catalog_hands_readers_memory_mapped_shards(catalog: Catalog) -> None:
    shards = catalog.indexes().hash_shards
    assert shards and all(isinstance(s, SortedHashShard) for s in shards)
    assert all(maps_a_file(s.ids) for s in shards if s.ntotal)


# -- merging ------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(1, 200))
def test_merging_sorted_shards_equals_building_from_the_live_works(
    seed: int, n_shards: int, key_range: int
) -> None:
    entries = random_shards(seed, n_shards, key_range)
    # shards of interleaved work ranges, as compaction leaves them (each in work-id order)
    rng = np.random.default_rng(seed)
    rng.shuffle(entries)
    removed = set(rng.integers(1, 20, 3).tolist())

    def is_live(works: np.ndarray) -> np.ndarray:
        return ~np.isin(works, list(removed))

    writer, n = merge_sorted_hash_shards([sorted_hash_shard(k, i) for k, i in entries], is_live)
    chunks = []
    writer(chunks.append)
    merged = b"".join(chunks)
    # the reference: every live work's entries, works in id order, built at once
    keys = np.concatenate([k for k, _ in entries] + [np.zeros(0, np.int64)])
    ids = np.concatenate([i for _, i in entries] + [np.zeros(0, np.int64)])
    works = ids >> _WORK_SHIFT
    order = np.argsort(works, kind="stable")
    live = is_live(works[order])
    expected = sorted_hash_shard(keys[order][live], ids[order][live])
    chunks = []
    write_sorted_hash_shard(expected)(chunks.append)
    assert merged == b"".join(chunks)
    assert n == expected.ntotal


def test_a_merged_shard_file_opens_and_checks(tmp_path: Path) -> None:
    entries = random_shards(11, 3, 100)
    shards = [sorted_hash_shard(k, i) for k, i in entries]
    writer, n = merge_sorted_hash_shards(shards, lambda works: np.ones(len(works), bool))
    merged = read_sorted_hash_shard(write(tmp_path / "h-0123456789ab.sorted", writer))
    assert merged.ntotal == n == sum(s.ntotal for s in shards)
    assert sorted_ids_intact(merged)
    assert np.array_equal(merged.bucket_sizes, sum(s.bucket_sizes for s in shards))


# -- chroma shards, memory-mapped by FAISS ------------------------------------------------------
def chroma_file(tmp_path: Path, name: str, n_vectors: int) -> Path:
    """A chroma shard file as the store writes it: the recipe's index for ``n_vectors``."""
    rng = np.random.default_rng(n_vectors)
    vectors = rng.normal(size=(n_vectors, chroma_dim(DEFAULT_SETTINGS))).astype(np.float32)
    index = new_chroma_index(vectors, DEFAULT_SETTINGS)
    index.add_with_ids(padded_columns(vectors, index.d), pack_segment_ids(1, n_vectors))
    return write(tmp_path / name, write_index(index, binary=False))


@pytest.mark.parametrize("n_vectors", [300, 6000])  # exhaustive SQ8, then IVF lists
def test_memory_mapped_chroma_shards_search_as_shards_read_into_ram(
    tmp_path: Path, n_vectors: int
) -> None:
    path = chroma_file(tmp_path, "c-0123456789ab.faiss", n_vectors)
    in_ram, mapped = read_index(path, binary=False), read_chroma_index(path)
    for index in (in_ram, mapped):
        set_nprobe(index, DEFAULT_SETTINGS.chroma_nprobe)
    queries = np.random.default_rng(1).normal(size=(40, in_ram.d)).astype(np.float32)
    found_in_ram, found_mapped = in_ram.search(queries, 8), mapped.search(queries, 8)
    assert mapped.ntotal == in_ram.ntotal == n_vectors
    assert np.array_equal(found_in_ram[0], found_mapped[0])
    assert np.array_equal(found_in_ram[1], found_mapped[1])


def test_a_chroma_shard_whose_path_faiss_cannot_open_is_read_through_python(
    tmp_path: Path,
) -> None:
    folder = tmp_path / os.fsdecode(b"not-utf8-\xff")
    folder.mkdir()
    path = chroma_file(folder, "c-0123456789ab.faiss", 300)
    assert read_chroma_index(path).ntotal == 300


# -- compaction merges sorted shards --------------------------------------------------------------
def compacted(root: Path, merge: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, list]:
    """Remove one work, compact every shard into one (merging the sorted hash files, or
    regenerating them from the fingerprints), and return the hash file and the verdicts."""
    merges = []
    real_merge = CatalogStore._write_merged_shard

    def merging(self, entries, shards):
        merges.append(len(shards))
        return real_merge(self, entries, shards)

    with monkeypatch.context() as patch:
        patch.setattr(CatalogStore, "_write_merged_shard", merging)
        if not merge:
            patch.setattr(CatalogStore, "_mergeable_hashes", lambda self, old, ids: None)
        with Catalog.open(root, create=False) as opened:
            removed = [w for w in opened.works() if Path(w.path).stem == "work_02"]
            assert opened.remove(removed[0].work_id)
            store = opened.store
            with store._writing("compact"):
                store.compact()
            assert opened.verify() == []
            assert len(opened.indexes().hash_shards) == 1
            verdicts = [
                without_times(opened.screen(UPLOADS_DIR / name))
                for name in ("pitch_-3_work_03.ogg", "stretch_1.25_work_02.ogg", "unrelated_a.ogg")
            ]
    assert merges == ([6] if merge else [])
    return sorted_file(root).read_bytes(), verdicts


def test_compaction_merges_sorted_shards_into_what_regenerating_writes(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = tmp_path / "built"
    store_one_work_per_shard(built, catalog, "sorted", monkeypatch)
    for name in ("merged", "regenerated"):
        shutil.copytree(built, tmp_path / name)
    merged = compacted(tmp_path / "merged", True, monkeypatch)
    regenerated = compacted(tmp_path / "regenerated", False, monkeypatch)
    assert merged[0] == regenerated[0]
    assert merged[1] == regenerated[1]
    # the removed work's entries are gone: its copy is clean, the other copy still found
    assert [v.verdict for v in merged[1]] == ["duplicate", "clean", "clean"]


def test_compaction_regenerates_when_a_shard_is_not_sorted(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faiss_layout(catalog_copy, monkeypatch)
    with Catalog.open(catalog_copy, create=False) as opened:
        opened.add_paths([UPLOADS_DIR / "unrelated_a.ogg"])  # a sorted shard beside a FAISS one
        with opened.store._writing("compact"):
            opened.store.compact()
        assert opened.verify() == []
        assert {p.suffix for p in (catalog_copy / "shards").glob("h-*")} == {".sorted"}
        assert opened.screen(UPLOADS_DIR / "unrelated_a.ogg").verdict == "duplicate"


@pytest.mark.parametrize("merge", [True, False])
def test_compaction_decodes_the_stored_fingerprints_one_at_a_time(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, merge: bool
) -> None:
    """A compaction (hash files merged, or regenerated) holds one or two decoded fingerprints
    at a time, not every merged work's (12 GB when the 10^5-work scaling catalog was compacted
    into one shard); the compacted catalog verifies and still finds a copy."""
    import weakref

    root = tmp_path / "c"
    store_one_work_per_shard(root, catalog, "sorted", monkeypatch)
    alive = [0]
    most = []
    real = CatalogStore._stored_fingerprint

    def tracked(self, work_id: int):
        found = real(self, work_id)
        if not isinstance(found, str):
            alive[0] += 1
            weakref.finalize(found, lambda: alive.__setitem__(0, alive[0] - 1))
            most.append(alive[0])
        return found

    with monkeypatch.context() as patch:
        patch.setattr(CatalogStore, "_stored_fingerprint", tracked)
        if not merge:
            patch.setattr(CatalogStore, "_mergeable_hashes", lambda self, old, ids: None)
        with Catalog.open(root, create=False) as opened:
            n_works = len(opened.works())
            with opened.store._writing("compact"):
                opened.store.compact()
            during = list(most)
            assert opened.verify() == []
            assert len(opened.indexes().hash_shards) == 1
            found = opened.screen(UPLOADS_DIR / "stretch_1.25_work_02.ogg")
    assert len(during) >= 2 * n_works  # checked first, then decoded again to build
    assert max(during) <= 2
    assert found.verdict == "duplicate"


_LARGE_CHROMA_SHARD = """
import sys, faiss, numpy as np
vectors = np.random.default_rng(2).normal(size=(400_000, 42)).astype(np.float32)
index = faiss.index_factory(42, "IVF64,SQ8", faiss.METRIC_INNER_PRODUCT)
index.train(vectors[:5000])
index.add_with_ids(vectors, (np.int64(1) << 20) | np.arange(len(vectors), dtype=np.int64))
faiss.write_index(index, sys.argv[1])
"""


def trimmed_anon_kib() -> int:
    """RssAnon once the allocator has handed back what earlier tests freed (glibc), so that
    a later read into RAM cannot reuse it unseen."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
    return rss_kib("RssAnon")


# -- bounded resident memory at scale (issue #14) ------------------------------------------------
def test_looked_up_hash_pages_leave_the_process_after_each_shard(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 6_000_000  # 48 MB of entry ids
    path = write(
        tmp_path / "h-0123456789ab.sorted",
        write_sorted_hash_shard(sorted_hash_shard(rng.integers(0, N_KEYS, n), np.arange(n))),
    )
    shard = read_sorted_hash_shard(path)
    indexes = load_indexes([HashShard(shard, None)], [], np.ones(1, bool), nprobe=1)
    keys = np.arange(0, N_KEYS, 64, dtype=np.uint32)  # a hit every few KB: every page is read
    file_before = rss_kib("RssFile")
    hits = indexes.lookup_hashes(keys)
    assert hits is not None and len(hits.entry_ids) > 50_000
    assert rss_kib("RssFile") - file_before < 8 * 1024
    # the same look-up without the release keeps the pages: the measure can see them
    shard.lookup(keys)
    assert rss_kib("RssFile") - file_before > 24 * 1024


def test_a_quad_look_up_releases_the_record_pages_and_keeps_the_directory(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    n = 4_000_000  # 40 MB of records, an 8 MB directory
    shard = grouped_quads([(rng.integers(0, 1 << 40, n), np.arange(n))])
    path = write(tmp_path / "q-0123456789ab.quads", write_quad_shard(shard))
    mapped = read_quad_shard(path)
    file_before = rss_kib("RssFile")
    mapped.buckets(np.arange(0, 1 << mapped.bits, 256))  # a word in every directory page
    directory = rss_kib("RssFile") - file_before
    assert directory > 6 * 1024  # resident: a look-up reads a word of most of its pages
    rows = np.arange(0, n, 200)  # a row every 2 KB: every record page is read
    passed, ids = mapped.entries(rows, shard.checks[rows])
    assert passed.all() and np.array_equal(ids, shard.ids[rows])
    assert rss_kib("RssFile") - file_before - directory < 8 * 1024
    # the same rows read without the release keep their pages: the measure can see them
    assert np.array_equal(mapped.records[rows]["id"], shard.ids[rows])
    assert rss_kib("RssFile") - file_before - directory > 24 * 1024


def test_a_chroma_shard_opens_with_its_codes_mapped_not_read(tmp_path: Path) -> None:
    path = tmp_path / "c-0123456789ab.faiss"
    # written by another process, so that no memory this one freed can hide a read into RAM
    subprocess.run([sys.executable, "-c", _LARGE_CHROMA_SHARD, str(path)], check=True)
    anon_before = trimmed_anon_kib()
    mapped = read_chroma_index(path)
    assert rss_kib("RssAnon") - anon_before < 4 * 1024
    in_ram = read_index(path, binary=False)  # 17 MB of codes and 3 MB of ids in the file
    assert rss_kib("RssAnon") - anon_before > 16 * 1024
    dim = chroma_dim(DEFAULT_SETTINGS)
    queries = np.random.default_rng(3).normal(size=(30, dim)).astype(np.float32)
    for opened in (mapped, in_ram):
        set_nprobe(opened, 8)
    found_mapped, found_in_ram = mapped.search(queries, 8), in_ram.search(queries, 8)
    assert np.array_equal(found_mapped[0], found_in_ram[0])
    assert np.array_equal(found_mapped[1], found_in_ram[1])


def test_a_catalog_opened_memory_mapped_searches_as_one_read_into_ram(catalog: Catalog) -> None:
    """The hash ids and chroma codes a catalog maps give the hits of the same shards read whole
    into RAM (int64 offsets, copied ids, FAISS read through a Python file)."""
    mapped = catalog.indexes()
    store = catalog.store
    files = store.db.execute("SELECT hash_file, chroma_file FROM shards ORDER BY shard_id")
    hash_shards, chroma_shards = [], []
    for hash_file, chroma_file in files.fetchall():
        shard = read_sorted_hash_shard(store._shard_path(hash_file))
        copied = SortedHashShard(shard.offsets.astype(np.int64), np.array(shard.ids), shard.ids_crc)
        hash_shards.append(HashShard(copied, None))
        chroma_shards.append(read_index(store._shard_path(chroma_file), binary=False))
    in_ram = load_indexes(hash_shards, chroma_shards, mapped.live, DEFAULT_SETTINGS.chroma_nprobe)
    assert np.array_equal(in_ram.bucket_sizes, mapped.bucket_sizes)
    for name in ("pitch_-3_work_03.ogg", "stretch_1.25_work_02.ogg", "unrelated_a.ogg"):
        query = fingerprint_audio(load_audio(UPLOADS_DIR / name))
        keys = fingerprint_hashes(query, DEFAULT_SETTINGS, query=True).keys
        a, b = mapped.lookup_hashes(keys), in_ram.lookup_hashes(keys)
        assert a is not None and b is not None
        assert np.array_equal(a.query_rows, b.query_rows)
        assert np.array_equal(a.entry_ids, b.entry_ids)
        assert chroma_candidates(query, mapped, DEFAULT_SETTINGS) == chroma_candidates(
            query, in_ram, DEFAULT_SETTINGS
        )
