"""Tests for audiodup.index: typed hash and chroma hits, id packing, bucket sizes, shards."""

from __future__ import annotations

import zlib
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiodup import Catalog, CatalogError
from audiodup import index as index_module
from audiodup import store as store_module
from audiodup.audio import load_audio
from audiodup.fingerprint import Fingerprint, fingerprint_audio, fingerprint_hashes
from audiodup.hashes import KEY_BITS, keys_to_codes
from audiodup.index import (
    HashHits,
    HashShard,
    LoadedIndexes,
    bucket_sizes,
    build_shard,
    count_keys,
    faiss_hash_index,
    pack_segment_ids,
    read_hash_shard,
    unpack_segment_ids,
    write_hash_shard,
    write_index,
)
from audiodup.settings import DEFAULT_SETTINGS

UPLOADS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"


def hash_shard(keys: list[int], ids: list[int]):
    shard = faiss.IndexBinaryHash(32, 24)
    if keys:
        shard.add_with_ids(keys_to_codes(np.array(keys)), np.array(ids, dtype=np.int64))
    return shard


def snapshot(hash_shards=(), chroma_shards=(), live=(True, True, True)) -> LoadedIndexes:
    hash_shards = list(hash_shards)
    live = np.array(live, dtype=bool)
    return LoadedIndexes(hash_shards, list(chroma_shards), live, bucket_sizes(hash_shards))


@given(st.integers(0, 2**24), st.integers(0, (1 << 20) - 1))
def test_segment_ids_round_trip(work_id: int, n_segments: int) -> None:
    works, segments = unpack_segment_ids(pack_segment_ids(work_id, min(n_segments, 50)))
    assert (works == work_id).all()
    assert segments.tolist() == list(range(min(n_segments, 50)))


def test_hash_lookup_returns_every_entry_under_each_key_as_typed_hits() -> None:
    indexes = snapshot(
        [hash_shard([5, 5, 7], [10, 11, 12]), hash_shard([], []), hash_shard([7], [13])]
    )
    hits = indexes.lookup_hashes(np.array([7, 5, 9], dtype=np.uint32))
    assert isinstance(hits, HashHits)
    pairs = sorted(zip(hits.query_rows.tolist(), hits.entry_ids.tolist(), strict=True))
    assert pairs == [(0, 12), (0, 13), (1, 10), (1, 11)]
    assert indexes.n_hash_entries == 4


@given(
    st.lists(st.lists(st.integers(0, 40), max_size=30), min_size=1, max_size=5),
    st.lists(st.integers(0, 45), max_size=60),
)
def test_hash_lookup_asks_only_the_shards_holding_a_key_and_finds_the_same(
    shard_keys: list[list[int]], query: list[int]
) -> None:
    """With load_indexes' per-shard key masks the hits are those of asking every shard for
    every key, in the same order (issue #16)."""
    shards = [
        hash_shard(keys, list(range(100 * i, 100 * i + len(keys))))
        for i, keys in enumerate(shard_keys)
    ]
    every = snapshot(shards)
    masked = index_module.load_indexes(
        [HashShard(s, None) for s in shards], [], np.ones(3, dtype=bool), nprobe=1
    )
    assert masked.shard_has_key is not None
    a, b = every.lookup_hashes(np.array(query)), masked.lookup_hashes(np.array(query))
    assert (a is None) == (b is None)
    if a is not None:
        assert a.query_rows.tolist() == b.query_rows.tolist()
        assert a.entry_ids.tolist() == b.entry_ids.tolist()


def test_hash_lookup_of_an_empty_catalog_finds_nothing() -> None:
    assert snapshot([hash_shard([], [])]).lookup_hashes(np.array([1], dtype=np.uint32)) is None


def test_bucket_sizes_equal_a_brute_force_count(catalog: Catalog) -> None:
    rng = np.random.default_rng(0)
    keys = [rng.integers(0, 1 << KEY_BITS, 200), rng.integers(0, 50, 300)]
    shards = [hash_shard(k.tolist(), list(range(len(k)))) for k in keys]
    expected = np.bincount(np.concatenate(keys), minlength=1 << KEY_BITS)
    assert np.array_equal(bucket_sizes(shards), expected)
    # and in a real catalog, the sizes loaded with the shards count every stored entry
    indexes = catalog.indexes()
    assert indexes.bucket_sizes.sum() == indexes.n_hash_entries > 0


class _Shard:
    """A chroma shard that answers with fixed labels, -1 where FAISS found no neighbour."""

    def __init__(self, labels: np.ndarray):
        self.labels = labels
        self.ntotal = 10
        self.d = 42

    def search(self, vectors: np.ndarray, k: int):
        sims = np.linspace(1, 0, self.labels.size, dtype=np.float32).reshape(self.labels.shape)
        return sims[:, :k], self.labels[:, :k]


def test_chroma_search_marks_missing_and_removed_works_invalid() -> None:
    ids = np.concatenate([pack_segment_ids(1, 2), pack_segment_ids(2, 1), pack_segment_ids(9, 1)])
    labels = np.array([[ids[0], -1, ids[2]], [ids[1], ids[3], -1]])
    indexes = snapshot(chroma_shards=[_Shard(labels)], live=(False, True, False))
    hits = indexes.search_chroma(np.zeros((2, 4), dtype=np.float32), k=3)
    assert hits.work_ids.shape == hits.similarities.shape == (2, 3)
    # work 1 is live, work 2 removed, work 9 beyond the catalog, -1 no neighbour
    assert hits.valid.tolist() == [[True, False, False], [True, False, False]]
    assert hits.work_ids[0, 0] == 1 and hits.segment_indexes[1, 0] == 1


def test_chroma_hits_rank_each_shards_answer_apart() -> None:
    """Shards side by side, each hit ranked within its own shard's answer, a shard of fewer
    segments than asked for answering with fewer columns: the nearest 8 of a deeper search are
    told apart per shard."""
    big = _Shard(np.tile(pack_segment_ids(1, 10), (2, 1)))
    small = _Shard(np.tile(pack_segment_ids(2, 3), (2, 1)))
    small.ntotal = 3
    indexes = snapshot(chroma_shards=[big, small], live=(True, True, True))
    hits = indexes.search_chroma(np.zeros((2, 4), dtype=np.float32), k=5)
    assert hits.ranks.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]] * 2
    assert hits.work_ids[0].tolist() == [1] * 5 + [2] * 3


def test_indexes_without_a_work_treat_it_as_removed_and_leave_the_snapshot_alone() -> None:
    ids = np.concatenate([pack_segment_ids(0, 1), pack_segment_ids(1, 2), pack_segment_ids(2, 1)])
    labels = np.array([[ids[0], ids[1], ids[3]]])
    indexes = snapshot(chroma_shards=[_Shard(labels)], live=(True, True, True))
    rest = indexes.without([1, 7, -1])  # ids outside the catalog are ignored
    assert rest.live.tolist() == [True, False, True]
    assert indexes.live.tolist() == [True, True, True], "the loaded snapshot is not changed"
    assert rest.is_live(np.array([0, 1, 2])).tolist() == [True, False, True]
    hits = rest.search_chroma(np.zeros((1, 4), dtype=np.float32), k=3)
    assert hits.valid.tolist() == [[True, False, True]]
    assert indexes.without([]) is indexes and indexes.without([5]) is indexes


def test_chroma_search_of_an_empty_catalog_finds_nothing() -> None:
    assert snapshot().search_chroma(np.zeros((1, 4), dtype=np.float32), k=8) is None


def test_built_shard_holds_every_hash_and_segment(catalog: Catalog) -> None:
    work = catalog.works()[0]
    shard = build_shard([(work.work_id, catalog.fingerprint(work.work_id))], DEFAULT_SETTINGS)
    n_hashes, n_segments, work_id = shard.counts[0]
    assert work_id == work.work_id
    assert (shard.hash_index.ntotal, shard.chroma_index.ntotal) == (n_hashes, n_segments)
    assert (shard.n_hashes, shard.n_segments) == (n_hashes, n_segments) and n_hashes > 0


# -- bucket sizes saved with FAISS hash shards (the layout before issue #14) ----------------------
def hash_files(root: Path) -> list[Path]:
    return sorted((root / "shards").glob("h-*.faiss"))


@pytest.fixture
def faiss_catalog_copy(catalog_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixture catalog with its hash shards in the FAISS layout, as catalogs were written
    before the sorted layout (rebuilt by the store writing that layout)."""
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "HASH_LAYOUT", "faiss")
        with Catalog.open(catalog_copy, create=False) as catalog:
            catalog.rebuild()
    assert hash_files(catalog_copy)
    assert not list((catalog_copy / "shards").glob("h-*.sorted"))
    return catalog_copy


def strip_saved_sizes(root: Path) -> None:
    """Rewrite every hash file of ``root`` as catalogs wrote them before sizes were saved: the
    FAISS index alone (the SQLite layout did not change)."""
    for path in hash_files(root):
        index = read_hash_shard(path).index
        with open(path, "wb") as handle:
            write_index(index, binary=True)(handle.write)


def query_fingerprints() -> list[Fingerprint]:
    names = ["stretch_1.25_work_02.ogg", "pitch_-3_work_03.ogg", "unrelated_a.ogg"]
    return [
        fingerprint_audio(
            load_audio(UPLOADS_DIR / n, DEFAULT_SETTINGS), DEFAULT_SETTINGS, query=True
        )
        for n in names
    ]


def test_built_shard_saves_the_sizes_its_hashes_give(catalog: Catalog, tmp_path: Path) -> None:
    entries = [(w.work_id, catalog.fingerprint(w.work_id)) for w in catalog.works()[:3]]
    shard = build_shard(entries, DEFAULT_SETTINGS)
    keys = np.concatenate([fingerprint_hashes(fp, DEFAULT_SETTINGS).keys for _, fp in entries])
    expected = np.bincount(keys.astype(np.int64), minlength=1 << KEY_BITS)
    assert shard.bucket_sizes.dtype == np.int64
    assert np.array_equal(shard.bucket_sizes, expected)
    faiss_index = faiss_hash_index(shard.hash_index)
    assert np.array_equal(shard.bucket_sizes, bucket_sizes([faiss_index]))
    # and they come back from the file exactly, next to an index that answers as before
    path = tmp_path / "h-0123456789ab.faiss"
    with open(path, "wb") as handle:
        write_hash_shard(faiss_index, shard.bucket_sizes)(handle.write)
    stored = read_hash_shard(path)
    assert np.array_equal(stored.bucket_sizes, expected)
    assert stored.index.ntotal == shard.n_hashes == expected.sum()
    # the file is still a plain FAISS file: FAISS reads its index and ignores the sizes after it
    assert faiss.read_index_binary(str(path)).ntotal == shard.n_hashes


def test_catalog_hash_files_carry_the_sizes_of_their_index(faiss_catalog_copy: Path) -> None:
    files = hash_files(faiss_catalog_copy)
    assert files
    for path in files:
        stored = read_hash_shard(path)
        assert stored.bucket_sizes is not None
        assert np.array_equal(stored.bucket_sizes, bucket_sizes([stored.index]))


def test_loading_reads_saved_sizes_and_counts_only_old_files(
    faiss_catalog_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog_copy = faiss_catalog_copy
    counted: list[int] = []
    real = index_module.bucket_sizes

    def counting(shards: list) -> np.ndarray:
        counted.append(len(shards))
        return real(shards)

    monkeypatch.setattr(index_module, "bucket_sizes", counting)
    with Catalog.open(catalog_copy, create=False) as catalog:
        saved = catalog.indexes().bucket_sizes
    assert counted == []  # every shard had its sizes saved
    strip_saved_sizes(catalog_copy)
    with Catalog.open(catalog_copy, create=False) as catalog:
        old = catalog.indexes().bucket_sizes
    assert counted == [1] * len(hash_files(catalog_copy))
    assert np.array_equal(old, saved)


def test_a_catalog_without_saved_sizes_loads_and_screens_identically(
    faiss_catalog_copy: Path,
) -> None:
    catalog_copy = faiss_catalog_copy
    queries = query_fingerprints()
    keys = np.arange(0, 1 << KEY_BITS, 97, dtype=np.uint32)

    def observe() -> tuple:
        with Catalog.open(catalog_copy, create=False) as catalog:
            indexes = catalog.indexes()
            hits = indexes.lookup_hashes(keys)
            pairs = sorted(zip(hits.query_rows.tolist(), hits.entry_ids.tolist(), strict=True))
            assert catalog.verify() == []
            return indexes.bucket_sizes, pairs, [catalog.match_fingerprint(q) for q in queries]

    sizes, pairs, matches = observe()
    strip_saved_sizes(catalog_copy)
    assert all(read_hash_shard(p).bucket_sizes is None for p in hash_files(catalog_copy))
    old_sizes, old_pairs, old_matches = observe()
    assert np.array_equal(old_sizes, sizes)
    assert old_pairs == pairs and len(pairs) > 0
    assert old_matches == matches
    assert matches[0] and matches[1]  # the copies were found, so the comparison means something
    # a rebuild writes the current layout: sorted shards, which answer the same
    with Catalog.open(catalog_copy, create=False) as catalog:
        catalog.rebuild()
        assert catalog.verify() == []
    assert not hash_files(catalog_copy)
    assert list((catalog_copy / "shards").glob("h-*.sorted"))
    assert observe()[2] == matches


def _rewrite_sizes(path: Path, original: HashShard, change) -> None:
    with open(path, "wb") as handle:
        sizes = change(original.bucket_sizes.copy())
        write_hash_shard(original.index, sizes)(handle.write)


def test_damaged_saved_sizes_are_refused_and_reported(faiss_catalog_copy: Path) -> None:
    catalog_copy = faiss_catalog_copy
    path = hash_files(catalog_copy)[0]
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside the compressed sizes: zlib's checksum fails
    path.write_bytes(bytes(data))
    with Catalog.open(catalog_copy, create=False) as catalog:
        with pytest.raises(CatalogError, match="damaged"):
            catalog.indexes()
        assert any("unreadable index" in p for p in catalog.verify())
        catalog.rebuild()
        assert catalog.verify() == []
        assert catalog.indexes().bucket_sizes.sum() == catalog.indexes().n_hash_entries


def test_saved_sizes_that_miscount_the_index_are_reported(faiss_catalog_copy: Path) -> None:
    catalog_copy = faiss_catalog_copy
    path = hash_files(catalog_copy)[0]
    original = read_hash_shard(path)

    def one_more(sizes: np.ndarray) -> np.ndarray:
        sizes[int(np.argmax(sizes))] += 1
        return sizes

    _rewrite_sizes(path, original, one_more)  # no longer the index's total: refused at load
    with Catalog.open(catalog_copy, create=False) as catalog, pytest.raises(CatalogError):
        catalog.indexes()

    def moved(sizes: np.ndarray) -> np.ndarray:
        sizes[int(np.argmax(sizes))] -= 1
        sizes[int(np.argmax(sizes == 0))] += 1
        return sizes

    # the right total in the wrong buckets: loading cannot tell, verify counts every key
    _rewrite_sizes(path, original, moved)
    with Catalog.open(catalog_copy, create=False) as catalog:
        assert any("saved bucket sizes differ" in p for p in catalog.verify())


def _trailer_variants() -> dict[str, bytes]:
    sizes = np.zeros(1 << KEY_BITS, dtype="<i8")
    sizes[3] = 2
    good = zlib.compress(sizes.tobytes())
    negative = sizes.copy()
    negative[[3, 4]] = [3, -1]
    return {
        "no magic": b"garbage after the index",
        "truncated": index_module._SIZES_MAGIC + good[:-3],
        "short": index_module._SIZES_MAGIC + zlib.compress(sizes[:-1].tobytes()),
        "too long": index_module._SIZES_MAGIC + zlib.compress(bytes(64 << KEY_BITS)),
        "data after": index_module._SIZES_MAGIC + good + b"\x00",
        "negative": index_module._SIZES_MAGIC + zlib.compress(negative.tobytes()),
        "wrong total": index_module._SIZES_MAGIC + zlib.compress((sizes * 2).tobytes()),
    }


@pytest.mark.parametrize("variant", list(_trailer_variants()))
def test_a_hash_file_with_damaged_sizes_is_refused(tmp_path: Path, variant: str) -> None:
    shard = hash_shard([3, 3], [1, 2])
    path = tmp_path / "h-0123456789ab.faiss"
    with open(path, "wb") as handle:
        write_hash_shard(shard, count_keys(np.array([3, 3])))(handle.write)
    assert read_hash_shard(path).bucket_sizes[3] == 2
    with open(path, "wb") as handle:
        write_index(shard, binary=True)(handle.write)
        handle.write(_trailer_variants()[variant])
    with pytest.raises(RuntimeError, match="bucket sizes"):
        read_hash_shard(path)
