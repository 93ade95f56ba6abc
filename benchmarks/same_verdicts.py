"""Whether two codes give the same verdicts: screen benchmark queries with the audiodup on
``PYTHONPATH`` and write one JSON line per query (its verdict entry without the timings), or
compare two such files.

    PYTHONPATH=BEFORE python -m benchmarks.same_verdicts screen CATALOG RESULTS OUT [--variants a,b]
    PYTHONPATH=AFTER python -m benchmarks.same_verdicts screen CATALOG RESULTS OUT2 [--limit N]
    python -m benchmarks.same_verdicts compare OUT OUT2

``RESULTS`` is the ``results.jsonl`` (or ``.gz``) of a ``python -m benchmarks run``: its queries
are screened in its order. ``compare`` counts the entries that differ in any field (label,
matches, every number) and the verdicts of the second file by role. A change meant to keep
every value (issue #16) must show 0.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import time
from pathlib import Path


def queries(results: Path, variants: set[str] | None) -> list[dict]:
    """The query records of a results file, in order, of ``variants`` (None: all)."""
    with gzip.open(results, "rt") if results.suffix == ".gz" else results.open() as lines:
        found = [json.loads(line) for line in lines]
    return [
        r["query"]
        for r in found
        if r.get("type") == "query" and (variants is None or r["query"]["variant"] in variants)
    ]


def screen(
    catalog_dir: Path, results: Path, out: Path, variants: set[str] | None, limit: int | None
) -> str:
    from audiodup import Catalog
    from audiodup.results import TIMING_FIELDS, to_jsonable, verdict_to_dict

    todo = queries(results, variants)[:limit]
    cpu = 0.0
    with Catalog.open(catalog_dir, create=False) as catalog, out.open("w") as lines:
        for query in todo:
            start = time.process_time()
            verdict = catalog.screen(query["path"])
            cpu += time.process_time() - start
            entry = to_jsonable(verdict_to_dict(verdict))
            for name in TIMING_FIELDS:
                entry.pop(name, None)
            record = {"variant": query["variant"], "role": query["role"], "verdict": entry}
            lines.write(json.dumps(record, sort_keys=True) + "\n")
    return f"{len(todo)} queries, {cpu / max(len(todo), 1):.3f} CPU-s per query"


def compare(first: Path, second: Path) -> str:
    a = [json.loads(line) for line in first.open()]
    b = [json.loads(line) for line in second.open()]
    if len(a) != len(b):
        return f"not the same queries: {len(a)} and {len(b)} lines"
    differ = sum(x != y for x, y in zip(a, b, strict=True))
    labels = collections.Counter((y["role"], y["verdict"]["verdict"]) for y in b)
    shown = ", ".join(f"{role} {label}: {n}" for (role, label), n in sorted(labels.items()))
    return f"{len(a)} queries, {differ} differ; second file: {shown}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("screen", help="screen the queries of a results file")
    run.add_argument("catalog", type=Path)
    run.add_argument("results", type=Path)
    run.add_argument("out", type=Path)
    run.add_argument("--variants", default="", help="comma-separated (default: all)")
    run.add_argument("--limit", type=int, default=None, help="the first N queries only")
    both = sub.add_parser("compare", help="compare two files of verdicts")
    both.add_argument("first", type=Path)
    both.add_argument("second", type=Path)
    args = parser.parse_args()
    if args.command == "screen":
        variants = {v for v in args.variants.split(",") if v} or None
        print(screen(args.catalog, args.results, args.out, variants, args.limit))
    else:
        print(compare(args.first, args.second))


if __name__ == "__main__":
    main()
