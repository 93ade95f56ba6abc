"""Screening and rescan on a catalog split into shard groups, on a Dask LocalCluster.

``python -m benchmarks.sharded [--queries 40] [--synthetic 887] [--workers 2] [--out FILE]``

1. **Catalog**: the 113 catalog tracks of the benchmark corpus (:mod:`benchmarks.corpus`), a
   copy of ``~/.cache/audiodup-bench/catalog-full`` when that holds them, else indexed afresh
   into the work folder; split into as many shard groups as workers.
2. **Screening**: queries of ``queries-v1`` (altered copies of catalog tracks, and tracks of
   the corpus that are in no catalog), screened in one process and over the shard groups on a
   LocalCluster of ``--workers`` processes (one thread each); the verdict documents without
   their timing fields must be identical. Search time is ``Verdict.search_s``.
3. **Rescan per work**: a rescan over the shard groups (``run_rescan(dask=...)``: workers decode,
   the groups screen) of the 113-work catalog, then of it plus ``--synthetic`` synthetic works
   (:func:`audiodup.synth.synthesize_work`, 30 s each), and the search alone per work (stored
   fingerprints of 30 works as queries).

Writes ``benchmarks/SHARDED.md`` (date, commit, machine, load average).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated

import soundfile as sf
import typer

from audiodup import Catalog
from audiodup.rescan import run_rescan
from audiodup.results import TIMING_FIELDS, to_jsonable
from audiodup.sharded import ShardedScreening
from audiodup.synth import synthesize_work
from benchmarks.runner import git_commit, machine_info

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = Path.home() / ".cache" / "audiodup-bench"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "SHARDED.md"
TIMING = set(TIMING_FIELDS)
SR = 22050


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def catalog_tracks() -> list[Path]:
    corpus = json.loads((BENCH / "corpus.json").read_text())
    return [Path(t["path"]) for t in corpus["tracks"] if t["role"] == "catalog"]


def build_real_catalog(root: Path, workers: int) -> None:
    """The 113 real works: the cached benchmark catalog when it holds them, else indexed."""
    if root.exists():
        return
    cached = BENCH / "catalog-full"
    tracks = catalog_tracks()
    if cached.exists():
        shutil.copytree(cached, root)
        with Catalog.open(root, create=False) as catalog:
            if len(catalog.works()) == len(tracks):
                return
        shutil.rmtree(root)
    with Catalog.open(root) as catalog:
        catalog.add_paths(tracks, workers=workers)


def pick_queries(n: int) -> list[Path]:
    """Every k-th query of ``queries-v1``, positives and negatives alike."""
    every = sorted((BENCH / "queries-v1").glob("s0/*/*.flac"))
    step = max(1, len(every) // n)
    return every[::step][:n]


def document(verdict) -> dict:
    return {k: v for k, v in to_jsonable(verdict).items() if k not in TIMING}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def screening(root: Path, queries: list[Path], client) -> dict:
    with Catalog.open(root, create=False) as catalog:
        catalog.indexes()
        alone = [catalog.screen(q) for q in queries]
        with ShardedScreening(catalog.store, catalog.settings, client) as sharded:
            catalog.screen_with(sharded.match_fingerprint)
            catalog.screen(queries[0])  # the groups open their shards once
            spread = [catalog.screen(q) for q in queries]
    identical = sum(document(a) == document(b) for a, b in zip(alone, spread, strict=True))
    verdicts = [a.verdict for a in alone]
    return {
        "queries": len(queries),
        "identical": identical,
        "verdicts": {v: verdicts.count(v) for v in sorted(set(map(str, verdicts)))},
        "alone_search_s": [a.search_s for a in alone],
        "sharded_search_s": [b.search_s for b in spread],
    }


def add_synthetic(root: Path, folder: Path, n: int, workers: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(n):
        path = folder / f"synthetic_{seed:05d}.wav"
        if not path.exists():
            sf.write(path, synthesize_work(100_000 + seed, 30.0, SR), SR)
    with Catalog.open(root, create=False) as catalog:
        catalog.add_paths([folder], workers=workers)


def rescan_cost(root: Path, client, n_groups: int) -> dict:
    """A sharded rescan from no stored results, and the search alone on 30 stored prints."""
    for name in ("rescan.sqlite", "rescan.sqlite-wal", "rescan.sqlite-shm"):
        (root / name).unlink(missing_ok=True)
    with Catalog.open(root, create=False) as catalog:
        if catalog.store.shard_groups() != n_groups:
            catalog.store.split_shards(n_groups)
        n_works = len(catalog.works())
        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), time.process_time()
        summary = run_rescan(catalog, dask=client)
        wall, client_cpu = time.perf_counter() - start, time.process_time() - cpu
        with ShardedScreening(catalog.store, catalog.settings, client) as sharded:
            ids = [w.work_id for w in catalog.works()][:: max(1, n_works // 30)][:30]
            prints = [catalog.fingerprint(w) for w in ids]
            sharded.match_fingerprint(prints[0])
            searches = []
            for query in prints:
                t0 = time.perf_counter()
                sharded.match_fingerprint(query)
                searches.append(time.perf_counter() - t0)
    return {
        "works": n_works,
        "screened": summary.screened,
        "wall_s": wall,
        "client_cpu_s": client_cpu,
        "search_s": searches,
        "load_before": load,
        "load_after": os.getloadavg()[0],
    }


def main(
    queries: Annotated[int, typer.Option(help="Queries screened both ways.")] = 40,
    synthetic: Annotated[
        int, typer.Option(help="Synthetic works added for the larger rescan.")
    ] = 887,
    workers: Annotated[int, typer.Option(help="LocalCluster worker processes = shard groups.")] = 2,
    work: Annotated[Path, typer.Option(help="Work folder (catalog copies).")] = Path(
        "/tmp/audiodup-sharded-bench"
    ),
    out: Annotated[Path, typer.Option(help="Markdown file written.")] = DEFAULT_OUT,
    search_only: Annotated[
        bool,
        typer.Option(
            "--search-only",
            help="Only time the search of the same 30 real works against the catalogs already "
            "built in --work, in one process and sharded, and append that section to --out.",
        ),
    ] = False,
) -> None:
    from distributed import Client, LocalCluster

    if search_only:
        roots = sorted(work.glob("catalog-*"), key=lambda p: int(p.name.split("-")[1]))
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            rows = [same_queries(root, client) for root in roots]
        text = search_report(rows, workers)
        print(text)
        with out.open("a") as handle:
            handle.write(text)
        return
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    commit = git_commit()  # the code this run measures (the report is written much later)
    load_start = os.getloadavg()
    work.mkdir(parents=True, exist_ok=True)
    real = work / "catalog-113"
    log("building the 113-work catalog")
    build_real_catalog(real, workers)
    with Catalog.open(real, create=False) as catalog:
        catalog.store.split_shards(workers)
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        log(f"screening {queries} queries in one process and over {workers} shard groups")
        screened = screening(real, pick_queries(queries), client)
        log(f"identical verdict documents: {screened['identical']}/{screened['queries']}")
        log("rescan of the 113-work catalog")
        rescans = [rescan_cost(real, client, workers)]
        big = work / f"catalog-{113 + synthetic}"
        if synthetic:
            if not big.exists():
                shutil.copytree(real, big)
                for name in ("rescan.sqlite", "rescan.sqlite-wal", "rescan.sqlite-shm"):
                    (big / name).unlink(missing_ok=True)
                log(f"adding {synthetic} synthetic works")
                add_synthetic(big, work / "synthetic", synthetic, workers)
            log(f"rescan of the {113 + synthetic}-work catalog")
            rescans.append(rescan_cost(big, client, workers))
    text = report(started, commit, load_start, workers, screened, rescans)
    print(text)
    out.write_text(text)
    log(f"written {out}")


@contextlib.contextmanager
def shard_groups(catalog: Catalog, n_groups: int) -> Iterator[tuple[object, ShardedScreening]]:
    """``(client, sharded screening)`` over a LocalCluster of ``n_groups`` worker processes (one
    thread each), for a catalog already split into that many groups."""
    from distributed import Client, LocalCluster

    if catalog.store.shard_groups() != n_groups:
        raise SystemExit(
            f"the catalog is split into {catalog.store.shard_groups()} shard groups, not "
            f"{n_groups}: run `audiodup index shard --groups {n_groups} --db {catalog.root}`"
        )
    with (
        LocalCluster(
            n_workers=n_groups, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
        ShardedScreening(catalog.store, catalog.settings, client) as sharded,
    ):
        yield client, sharded


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def side_by_side(
    catalog: Catalog,
    client,
    sharded: ShardedScreening,
    query,
    view=None,
    without: Sequence[int] = (),
    every_look: bool = False,
) -> tuple[list, list, dict[str, float]]:
    """One query's matches in this process and over the shard groups, one after the other, and
    their wall and CPU seconds (the workers' CPU read from each worker before and after)."""
    options = {"without": tuple(without), "every_look": every_look}
    timings = {}
    start, cpu = time.perf_counter(), time.process_time()
    alone = catalog.match_fingerprint(query, view, **options)
    timings["one process, wall"] = time.perf_counter() - start
    timings["one process, CPU"] = time.process_time() - cpu
    workers = sum(client.run(_process_cpu_s).values())
    start, cpu = time.perf_counter(), time.process_time()
    grouped = sharded.match_fingerprint(query, view, **options)
    timings["shard groups, wall"] = time.perf_counter() - start
    timings["shard groups, client CPU"] = time.process_time() - cpu
    timings["shard groups, workers' CPU"] = sum(client.run(_process_cpu_s).values()) - workers
    return alone, grouped, timings


def same_matches(alone: list, grouped: list) -> bool:
    """Whether two match lists are the same, field by field as their JSON holds them (floats to
    6 significant digits, :func:`audiodup.results.to_jsonable`)."""
    return [to_jsonable(m) for m in alone] == [to_jsonable(m) for m in grouped]


def same_queries(root: Path, client, n: int = 30) -> dict:
    """Search time of the stored fingerprints of the same ``n`` real works (the first 113 work
    ids are the real tracks in every catalog here), in one process and over the shard groups."""
    with Catalog.open(root, create=False) as catalog:
        ids = [w.work_id for w in catalog.works()][:113][:: 113 // n][:n]
        prints = [catalog.fingerprint(w) for w in ids]
        catalog.indexes()
        timings: dict[str, list[float]] = {"one process": [], "shard groups": []}
        with ShardedScreening(catalog.store, catalog.settings, client) as sharded:
            sharded.match_fingerprint(prints[0])  # the groups open their shards
            for query in prints:
                for name, match in (
                    ("one process", catalog.match_fingerprint),
                    ("shard groups", sharded.match_fingerprint),
                ):
                    t0 = time.perf_counter()
                    match(query)
                    timings[name].append(time.perf_counter() - t0)
        return {"works": len(catalog.works()), "load": os.getloadavg()[0], **timings}


def search_report(rows: list[dict], workers: int) -> str:
    lines = [
        "",
        "## Search alone, the same 30 queries at every size",
        "",
        f"`python -m benchmarks.sharded --search-only` run "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {git_commit()}: the "
        "stored fingerprints of the same 30 real works as queries (catalog density, so every "
        "query finds its own work), one process against the catalog's loaded indexes and over "
        f"{workers} shard groups, interleaved.",
        "",
        "| works | one process median ms | shard groups median ms | shard groups p90 ms | "
        "load (1 min) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['works']:,} | {1000 * statistics.median(r['one process']):.0f} | "
            f"{1000 * statistics.median(r['shard groups']):.0f} | "
            f"{1000 * percentile(r['shard groups'], 0.9):.0f} | {r['load']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def report(
    started: str, commit: str, load_start, workers: int, screened: dict, rescans: list[dict]
) -> str:
    m = machine_info()
    alone, spread = screened["alone_search_s"], screened["sharded_search_s"]
    lines = [
        "# Sharded screening and rescan on Dask",
        "",
        f"`python -m benchmarks.sharded` run {started}, commit {commit}, on {m['cpu']} "
        f"({m['cores']} cores, {m['ram_gb']} GB RAM, Python {m['python']}), shared with other "
        f"engineers' jobs: load average (1/5/15 min) {' / '.join(f'{x:.2f}' for x in load_start)} "
        f"at the start, {' / '.join(f'{x:.2f}' for x in os.getloadavg())} at the end. "
        f"LocalCluster of {workers} worker processes (1 thread each), the catalog split into "
        f"{workers} shard groups (`audiodup index shard --groups {workers}`).",
        "",
        "## Screening: one process vs. shard groups",
        "",
        f"{screened['queries']} queries of `queries-v1` (every k-th, altered copies and corpus "
        f"tracks in no catalog; one-process verdicts {screened['verdicts']}) against the 113 "
        "real works. Verdict documents compared without their timing fields: "
        f"**{screened['identical']} of {screened['queries']} identical**.",
        "",
        "| search (`Verdict.search_s`) | median ms | p90 ms | max ms |",
        "|---|---:|---:|---:|",
    ]
    for name, values in (("one process", alone), (f"{workers} shard groups", spread)):
        lines.append(
            f"| {name} | {1000 * statistics.median(values):.0f} | "
            f"{1000 * percentile(values, 0.9):.0f} | {1000 * max(values):.0f} |"
        )
    lines += [
        "",
        "## Rescan over shard groups, per work",
        "",
        "Each rescan starts from no stored results: the workers decode and fingerprint every "
        "work (Dask tasks), the client sends each query to the shard groups (scatter-gather). "
        "*search ms / work*: `ShardedScreening.match_fingerprint` alone, on the stored "
        "fingerprints of 30 works as queries.",
        "",
        "| works | rescan s | ms / work | client CPU ms / work | search ms / work (median) | "
        "load before / after |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in rescans:
        lines.append(
            f"| {r['works']:,} | {r['wall_s']:.1f} | {1000 * r['wall_s'] / r['works']:.0f} | "
            f"{1000 * r['client_cpu_s'] / r['works']:.0f} | "
            f"{1000 * statistics.median(r['search_s']):.0f} | "
            f"{r['load_before']:.2f} / {r['load_after']:.2f} |"
        )
    lines += [""]
    return "\n".join(lines)


if __name__ == "__main__":
    typer.run(main)
