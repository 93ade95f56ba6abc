"""Per-work cost of a rescan on a large catalog, from a sample of its works (issue #14).

    python -m benchmarks.rescan_per_work CATALOG [--sample 20] [--seed 0] [--dask-groups N]

A rescan screens every work against the rest of the catalog
(:func:`audiodup.rescan.screen.screen_work`: the work's file re-decoded when it is there, its
stored fingerprint otherwise, then :meth:`audiodup.Catalog.match_fingerprint` without the
work). Screening all 10^5 works takes days on this machine, so this screens a seeded sample of
the live works in one process, after loading the indexes once, and prints the CPU seconds per
work (mean, median, p95). Every sampled work is screened from its stored fingerprint (as a
rescan does when the file is gone: one look), so that every size pays the same: distractor
works of the scaling catalogs have no audio file, and re-decoding one that has costs the same at
any catalog size (0.4 CPU-s per 4-min work, benchmarks/CPU.md).

With ``--dask-groups N`` (a catalog split by ``audiodup index shard --groups N``) each sampled
work is also screened over the shard groups on a LocalCluster of N worker processes, as a
sharded rescan screens it (``ShardedScreening.match_fingerprint`` without the work, every
look), taking turns with the one process: wall time per work, CPU of the client and of the
workers per work, and whether the two found the same matches (as their JSON holds them).
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer


def _summary(name: str, values_s: list[float]) -> str:
    ms = np.array(values_s) * 1000
    return (
        f"{name}: mean {ms.mean():.0f} ms, median {np.median(ms):.0f} ms, "
        f"p95 {np.percentile(ms, 95):.0f} ms"
    )


def one_process(catalog, chosen: list[int]) -> None:
    from audiodup.rescan.screen import screen_work

    spent, sources, matched = [], collections.Counter(), 0
    for work_id in chosen:
        start = time.process_time()
        scan = screen_work(catalog, work_id, file_problem="sampled from its fingerprint")
        spent.append(time.process_time() - start)
        sources[scan.query_source] += 1
        matched += bool(scan.matches)
    print(
        f"{len(spent)} works screened ({dict(sources)}; {matched} with a match): "
        + _summary("CPU per work", spent)
    )


def over_groups(catalog, chosen: list[int], n_groups: int) -> None:
    """Each work screened in this process and over the shard groups, taking turns."""
    from benchmarks.sharded import same_matches, shard_groups, side_by_side

    timings: dict[str, list[float]] = collections.defaultdict(list)
    same = 0
    with shard_groups(catalog, n_groups) as (client, sharded):
        start = time.perf_counter()
        sharded.match_fingerprint(catalog.fingerprint(chosen[0]), without=(chosen[0],))
        opened_s = time.perf_counter() - start
        print(f"shard groups opened and a first work screened in {opened_s:.1f} s")
        for work_id in chosen:
            query = catalog.fingerprint(work_id)
            alone, grouped, spent = side_by_side(
                catalog, client, sharded, query, without=(work_id,), every_look=True
            )
            for name, seconds in spent.items():
                timings[name].append(seconds)
            same += same_matches(alone, grouped)
    print(f"{len(chosen)} works, one look each from the stored fingerprint, over {n_groups} groups")
    for name, values in timings.items():
        print(_summary(name, values))
    print(f"the same matches in one process and over the groups: {same} of {len(chosen)}")


def main(
    catalog_dir: Path,
    sample: Annotated[int, typer.Option(help="works screened")] = 20,
    seed: Annotated[int, typer.Option()] = 0,
    dask_groups: Annotated[
        int, typer.Option(help="also screen over this many shard groups on a LocalCluster")
    ] = 0,
) -> None:
    from audiodup import Catalog
    from audiodup.allocator import keep_freed_memory
    from audiodup.errors import AudiodupError

    keep_freed_memory()  # as the command line and a rescan's workers do
    try:
        with Catalog.open(catalog_dir, create=False) as catalog:
            _measure(catalog, sample, seed, dask_groups)
    except AudiodupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None


def _measure(catalog, sample: int, seed: int, dask_groups: int) -> None:
    works = sorted(w.work_id for w in catalog.works())
    picked = np.random.default_rng(seed).choice(works, min(sample, len(works)), replace=False)
    chosen = sorted(int(w) for w in picked)
    start = time.process_time()
    catalog.indexes()
    print(f"{len(works)} works; indexes loaded in {time.process_time() - start:.1f} CPU-s")
    if dask_groups:
        over_groups(catalog, chosen, dask_groups)
    else:
        one_process(catalog, chosen)


if __name__ == "__main__":
    typer.run(main)
