"""Which shards a write merges: at most ``max_shards`` shards stay, and each work is rewritten
only a few times as the catalog grows.

Merging every shard but the largest once there are too many (the plan before this one) rewrites
about half the catalog every ``max_shards - 1`` commits: growing to 10^5 works one upload at a
time rewrote each work about 3,600 times. Here a merge takes a run of the smallest shards: at
least enough of them to leave ``max_shards``, and more where a shard holds fewer than ``r``
times the entries of all smaller shards together, ``r + 1`` being the ``max_shards - 1``-th root
of the catalog's size in smallest shards. The sizes then grow geometrically and the largest
shards are rewritten rarely (``tests/test_compaction.py`` simulates the growth).
"""

from __future__ import annotations

from collections.abc import Sequence


def size_ratio(sizes: Sequence[int], max_shards: int) -> float:
    """``r``: how many times the entries of all smaller shards a shard must hold (at least 1)."""
    weights = [max(1, s) for s in sizes]  # an empty shard counts as one entry
    return max(1.0, (sum(weights) / min(weights)) ** (1.0 / (max_shards - 1)) - 1.0)


def shards_to_merge(sizes: Sequence[int], max_shards: int) -> list[int]:
    """Positions in ``sizes`` (each shard's index entries) of the shards to merge into one,
    smallest last; empty while there are at most ``max_shards``. The run starts at the largest
    shard that holds fewer than ``r`` (:func:`size_ratio`) times the entries of all smaller
    shards together, or where it must to leave ``max_shards``."""
    if len(sizes) <= max(max_shards, 1):
        return []
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    if max_shards <= 1:
        return order
    ratio = size_ratio(sizes, max_shards)
    weights = [max(1, sizes[i]) for i in order]
    start = max_shards - 1
    smaller = 0
    for rank in range(len(order) - 1, 0, -1):
        smaller += weights[rank]
        if weights[rank - 1] < ratio * smaller:
            start = min(start, rank - 1)
    return order[start:]
