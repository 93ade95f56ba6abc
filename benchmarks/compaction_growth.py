"""Growing a catalog by small commits: what its compaction costs under each merge plan (#14).

    python -m benchmarks.compaction_growth --source-catalog CATALOG --works 10000 --batch 32 \\
        [--plans tiered,all-but-largest] [--work DIR] [--out FILE]

A distributor's catalog grows by small commits: ``audiodup index add`` commits 32 works at a
time, the service one accepted upload at a time, and each commit writes a shard. Past
``max_shards`` shards the store merges some (``CatalogStore.merge_due_shards``). For each merge
plan this starts from a copy of ``CATALOG`` (the benchmark's real works) and commits distractor
works (``benchmarks/distractor_prints.py``) ``--batch`` at a time until ``--works``, in this
process, and measures: the CPU and wall time of the growth, the CPU the merges took, the works
they rewrote (per work added), the merges and the largest, how long merges held the writer
lock (the longest hold and in all: they build outside it), the CPU of one commit (p50 / p95 /
max, its merge included), the final shards and peak RSS; then checks the catalog (``verify``,
every work in one shard). Each plan runs in a process of its own. ``tiered`` is
:func:`audiodup.compaction.shards_to_merge`; ``all-but-largest`` the plan before it.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from audiodup.errors import CatalogError
from benchmarks.distractor_prints import distractor_works, material_sources
from benchmarks.engine import peak_rss_mb
from benchmarks.runner import git_commit, machine_info


def all_but_largest(sizes: Sequence[int], max_shards: int) -> list[int]:
    """The plan before ``audiodup.compaction``: past ``max_shards``, every shard but the largest."""
    if len(sizes) <= max_shards:
        return []
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    return order[1:] if len(order) > 2 else []


def plans() -> dict[str, Callable[[Sequence[int], int], list[int]]]:
    from audiodup.compaction import shards_to_merge

    return {"tiered": shards_to_merge, "all-but-largest": all_but_largest}


def grow(source: Path, catalog_dir: Path, plan: str, works: int, batch: int, seed: int = 0) -> dict:
    """Grow a copy of ``source`` to ``works`` works ``batch`` at a time under ``plan``."""
    import audiodup.store as store_module
    from audiodup.catalog import Catalog

    if catalog_dir.exists():
        shutil.rmtree(catalog_dir)
    shutil.copytree(source, catalog_dir)
    _, material = material_sources(catalog_dir, seed)
    if not material:
        raise CatalogError(f"{source} holds too few real works to cut distractors from")
    merges: list[dict] = []
    merge = store_module.CatalogStore._merge
    due_merge, put_merged = (
        store_module.CatalogStore._due_merge,
        store_module.CatalogStore._put_merged,
    )
    lock_held: list[float] = []  # wall s of each hold of the writer lock by a merge

    def timed(method):
        def holding(self, *args):
            t0 = time.perf_counter()
            try:
                return method(self, *args)
            finally:
                lock_held.append(time.perf_counter() - t0)

        return holding

    def measured_merge(self, planned) -> bool:
        c0 = time.process_time()
        made = merge(self, planned)
        merges.append(
            {
                "shards": len(planned.old),
                "works": sum(len(group) for group in planned.groups),
                "cpu_s": time.process_time() - c0,
            }
        )
        return made

    planner = store_module.shards_to_merge
    store_module.shards_to_merge = plans()[plan]
    store_module.CatalogStore._merge = measured_merge
    store_module.CatalogStore._due_merge = timed(due_merge)
    store_module.CatalogStore._put_merged = timed(put_merged)
    commit_cpu: list[float] = []
    try:
        c0, w0 = time.process_time(), time.perf_counter()
        with Catalog.open(catalog_dir, create=False) as catalog:
            have = start = len(catalog.works())
            while have < works:
                take = min(batch, works - have)
                items = list(distractor_works(material, range(have, have + take), seed))
                c1 = time.process_time()
                catalog.store.commit_batch(items)
                commit_cpu.append(time.process_time() - c1)
                have += take
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            problems = catalog.verify()
            store = catalog.store
            shard_works = store.db.execute(
                "SELECT shard_id, COUNT(*) FROM works WHERE removed = 0 GROUP BY shard_id "
                "ORDER BY 2 DESC"
            ).fetchall()
            unindexed = store.db.execute(
                "SELECT COUNT(*) FROM works WHERE removed = 0 AND shard_id IS NULL"
            ).fetchone()[0]
            max_shards = store.settings.max_shards
    finally:
        store_module.shards_to_merge = planner
        store_module.CatalogStore._merge = merge
        store_module.CatalogStore._due_merge = due_merge
        store_module.CatalogStore._put_merged = put_merged
    added = have - start
    merge_cpu = sum(m["cpu_s"] for m in merges)
    percentiles = np.percentile(commit_cpu, [50, 95]) if commit_cpu else [0.0, 0.0]
    return {
        "plan": plan,
        "batch": batch,
        "works_before": start,
        "works": have,
        "max_shards": max_shards,
        "growth_cpu_s": round(cpu, 1),
        "growth_wall_s": round(wall, 1),
        "merge_cpu_s": round(merge_cpu, 1),
        "merges": len(merges),
        "rewritten_per_work_added": round(sum(m["works"] for m in merges) / max(added, 1), 2),
        "largest_merge_works": max((m["works"] for m in merges), default=0),
        "largest_merge_cpu_s": round(max((m["cpu_s"] for m in merges), default=0.0), 1),
        "merge_lock_max_s": round(max(lock_held, default=0.0), 4),
        "merge_lock_total_s": round(sum(lock_held), 3),
        "commit_cpu_p50_s": round(float(percentiles[0]), 3),
        "commit_cpu_p95_s": round(float(percentiles[1]), 3),
        "commit_cpu_max_s": round(max(commit_cpu, default=0.0), 1),
        "shard_works": [int(n) for _, n in shard_works],
        "unindexed_works": int(unindexed),
        "verify_problems": problems,
        "peak_rss_mb": round(peak_rss_mb()),
    }


def report(rows: list[dict], command: str) -> str:
    """A markdown section of the measured rows."""
    machine = machine_info()
    lines = [
        f"## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit `{git_commit()}`, "
        f"{machine['cpu']}, {machine['cores']} cores, {machine['ram_gb']} GB RAM",
        "",
        f"`{command}`",
        "",
        "| plan | batch | works | growth CPU / wall s | merge CPU s | merges | works rewritten "
        "per work added | largest merge: works, CPU s | writer lock held by merges: longest, "
        "total s | commit CPU p50 / p95 / max s | shards at the end (works) | peak RSS MB | "
        "verify |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['plan']} | {r['batch']} | {r['works_before']:,} -> {r['works']:,} | "
            f"{r['growth_cpu_s']:,} / {r['growth_wall_s']:,} | {r['merge_cpu_s']:,} | "
            f"{r['merges']} | {r['rewritten_per_work_added']} | "
            f"{r['largest_merge_works']:,}, {r['largest_merge_cpu_s']} | "
            f"{r['merge_lock_max_s']}, {r['merge_lock_total_s']} | "
            f"{r['commit_cpu_p50_s']} / {r['commit_cpu_p95_s']} / {r['commit_cpu_max_s']} | "
            f"{', '.join(f'{n:,}' for n in r['shard_works'])} | {r['peak_rss_mb']:,} | "
            f"{'OK' if not r['verify_problems'] and not r['unindexed_works'] else 'PROBLEMS'} |"
        )
    return "\n".join(lines) + "\n"


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(2)


def main(
    source_catalog: Annotated[Path, typer.Option(help="A catalog of real works to start from.")],
    works: Annotated[int, typer.Option(help="Works to grow to.")] = 10_000,
    batch: Annotated[int, typer.Option(help="Works per commit (index add: 32).")] = 32,
    plan: Annotated[str, typer.Option("--plans", help="Comma-separated.")] = "tiered",
    work: Annotated[Path, typer.Option(help="Scratch folder.")] = Path(
        "/tmp/audiodup-compaction-growth"
    ),
    out: Annotated[Path | None, typer.Option(help="Append the table to this file.")] = None,
) -> None:
    rows = []
    for name in plan.split(","):
        if name not in plans():
            _fail(f"unknown plan {name!r}: one of {', '.join(plans())}")
    if not (source_catalog / "catalog.sqlite").is_file():
        _fail(f"{source_catalog} is not a catalog (no catalog.sqlite)")
    if batch < 1 or works < 1:
        _fail("--works and --batch must be at least 1")
    for name in plan.split(","):
        # each plan in a fresh process of its own: its peak RSS is its own
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            try:
                row = pool.submit(grow, source_catalog, work / name, name, works, batch).result()
            except CatalogError as exc:  # a damaged or empty source catalog
                _fail(str(exc).replace("\n", " "))
        print(json.dumps(row), flush=True)
        (work / f"{name}-{batch}.json").write_text(json.dumps(row, indent=1))
        rows.append(row)
    command = (
        f"python -m benchmarks.compaction_growth --source-catalog {source_catalog} "
        f"--works {works} --batch {batch} --plans {plan}"
    )
    table = report(rows, command)
    print(table)
    if out is not None:
        with open(out, "a") as handle:
            handle.write("\n" + table)


if __name__ == "__main__":
    typer.run(main)
