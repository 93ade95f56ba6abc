"""Tests for audiodup.index: typed hash and chroma hits, id packing, bucket sizes, shards."""

from __future__ import annotations

import faiss
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from audiodup import Catalog
from audiodup.hashes import KEY_BITS, keys_to_codes
from audiodup.index import (
    HashHits,
    LoadedIndexes,
    bucket_sizes,
    build_shard,
    pack_segment_ids,
    unpack_segment_ids,
)
from audiodup.settings import DEFAULT_SETTINGS


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


def test_chroma_search_of_an_empty_catalog_finds_nothing() -> None:
    assert snapshot().search_chroma(np.zeros((1, 4), dtype=np.float32), k=8) is None


def test_built_shard_holds_every_hash_and_segment(catalog: Catalog) -> None:
    work = catalog.works()[0]
    shard = build_shard([(work.work_id, catalog.fingerprint(work.work_id))], DEFAULT_SETTINGS)
    n_hashes, n_segments, work_id = shard.counts[0]
    assert work_id == work.work_id
    assert (shard.hash_index.ntotal, shard.chroma_index.ntotal) == (n_hashes, n_segments)
    assert (shard.n_hashes, shard.n_segments) == (n_hashes, n_segments) and n_hashes > 0
