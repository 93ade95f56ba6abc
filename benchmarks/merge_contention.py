"""Screening latency in a service worker's process while the service's merger merges shards.
Not run in CI.

    python -m benchmarks.merge_contention run --catalog DIR --merge none|merger --out OUT.json
        [--count N] UPLOAD [UPLOAD ...]
    python -m benchmarks.merge_contention report OUT.json [OUT.json ...]

``run`` copies the catalog (the source is only read), opens it as the service's engine does
(indexes loaded, files warmed), screens three uploads to warm up, then starts the merge and
screens ``--count`` uploads (the list cycled) one after the other, as the engine thread does.
``--merge merger`` hands the merge to :class:`audiodup.service.merger.ShardMerger` with
``max_shards`` 1, so every shard of the copy is merged into one; ``none`` merges nothing. Per
upload: wall seconds and this thread's CPU seconds (``Catalog.screen``: decode, fingerprint,
search). At the end: how long the merge took, the process's peak RSS and the CPU of its
children. ``report`` compares the runs over the uploads screened while every run's merge was
still going.

The merger is whichever ``audiodup`` is imported: run this file as a script with
``PYTHONPATH`` at another checkout to measure that checkout's merger (``benchmarks/SERVICE.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

if not __package__:  # run as a script: the benchmarks package from this checkout, after the
    sys.path.append(str(Path(__file__).resolve().parents[1]))  # audiodup on PYTHONPATH


def run(catalog_dir: Path, uploads: Sequence[Path], merge: str, count: int) -> dict:
    import audiodup
    from audiodup import Catalog
    from benchmarks.runner import git_commit, machine_info

    with tempfile.TemporaryDirectory(prefix="merge-contention-") as scratch:
        work = Path(scratch) / "catalog"
        shutil.copytree(catalog_dir, work)
        with Catalog.open(work, create=False) as catalog:
            catalog.indexes()
            catalog.warm_files()
            shards = _shards(catalog)
            for path in list(uploads)[:3]:
                catalog.screen(path)
            started = time.perf_counter()
            merger, ended = None, {}
            if merge == "merger":
                merger = _start_merger(work, catalog.store.settings, started, ended)
            rows = []
            for i in range(count):
                path = uploads[i % len(uploads)]
                wall, cpu = time.perf_counter(), time.thread_time()
                verdict = catalog.screen(path)
                rows.append(
                    {
                        "upload": str(path),
                        "verdict": verdict.verdict,
                        "start_s": wall - started,
                        "wall_s": time.perf_counter() - wall,
                        "cpu_s": time.thread_time() - cpu,
                    }
                )
            if merger is not None:
                merger.wait_idle()
                while "s" not in ended:
                    time.sleep(0.1)
                merger.close()
            shards_after = _shards(catalog)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "merge": merge,
        "audiodup": str(Path(audiodup.__file__).parent),
        "merger": (
            (sys.modules["audiodup.service.merger"].__doc__ or "").splitlines()[0]
            if merge == "merger"
            else None
        ),
        "shards_before": shards,
        "shards_after": shards_after,
        "merges": None if merger is None else merger.merges,
        "merge_s": ended.get("s"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_cpu_s": children.ru_utime + children.ru_stime,
        "rows": rows,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": "{cpu}, {cores} cores, {ram_gb} GB RAM".format(**machine_info()),
    }


def _start_merger(work: Path, settings, started: float, ended: dict):
    from audiodup.service.merger import ShardMerger

    merger = ShardMerger(work, dataclasses.replace(settings, max_shards=1))
    merger.request()

    def wait() -> None:
        time.sleep(0.5)  # the request is taken up
        merger.wait_idle()
        ended["s"] = time.perf_counter() - started

    threading.Thread(target=wait, daemon=True).start()
    return merger


def _shards(catalog) -> int:
    return catalog.store.db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]


def report(runs: Sequence[dict]) -> str:
    """One row per run over the first uploads that every merging run screened while its merge
    went on (all of them when no run merged)."""
    during = [
        sum(r["start_s"] + r["wall_s"] <= run["merge_s"] for r in run["rows"])
        for run in runs
        if run["merge_s"] is not None
    ]
    n = min([*during, *(len(run["rows"]) for run in runs)])
    lines = [
        f"Over the first {n} uploads of each run.",
        "",
        "| merge | merger | merge wall s | shards | wall p50 / p95 / max s "
        "| thread CPU p50 / p95 s | peak RSS MB | children's CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        rows = run["rows"][:n]
        wall = sorted(r["wall_s"] for r in rows)
        cpu = sorted(r["cpu_s"] for r in rows)
        merge_s = "" if run["merge_s"] is None else f"{run['merge_s']:.1f}"
        lines.append(
            f"| {run['merge']} | {run['merger'] or ''} | {merge_s} | "
            f"{run['shards_before']} -> {run['shards_after']} | "
            f"{statistics.median(wall):.3f} / {_p95(wall):.3f} / {wall[-1]:.3f} | "
            f"{statistics.median(cpu):.3f} / {_p95(cpu):.3f} | {run['peak_rss_mb']:,.0f} | "
            f"{run['children_cpu_s']:.1f} |"
        )
    return "\n".join(lines)


def _p95(values: Sequence[float]) -> float:
    return values[min(len(values) - 1, int(0.95 * len(values)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.merge_contention")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--catalog", type=Path, required=True)
    p_run.add_argument("--merge", choices=("none", "merger"), required=True)
    p_run.add_argument("--count", type=int, default=100, help="uploads screened")
    p_run.add_argument("--out", type=Path, required=True)
    p_run.add_argument("uploads", type=Path, nargs="+")
    p_report = sub.add_parser("report")
    p_report.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.command == "report":
        try:
            print(report([json.loads(p.read_text()) for p in args.runs]))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            print(f"error: not a run of this tool: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 2
        return 0
    if not (args.catalog / "catalog.sqlite").is_file():
        print(f"error: no catalog at {args.catalog}", file=sys.stderr)
        return 2
    result = run(args.catalog, args.uploads, args.merge, args.count)
    args.out.write_text(json.dumps(result))
    print(report([result]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
