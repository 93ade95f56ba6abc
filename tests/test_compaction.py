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
