"""The guided peak checks screening runs on chance candidates, and what paying only for the checks
run would give (issue #14, item 4: "evidence whose chance rate depends on the candidates
actually retrieved, not on the raw count of works").

A guided peak check's false-match probability is its tail probability times the checks tried on
its work times the works in the catalog (:func:`audiodup.verdict.peak_false_match_probability`).
Paying instead for the checks a look actually ran (a dozen, against 10^5 works) is a valid
union bound only if a check's probability stays a bound on the works screening chose to check,
chosen from the same peaks. ``run`` records every check of every look of each query (every
further look taken), and whether its work is the query's source or a track the corpus groups
with it (shared audio) or a chance candidate; ``table`` counts the chance checks at or below
each probability, and those that would be ``duplicate`` or ``suspect`` under either payment.
Tracks that share audio the corpus does not group count as chance: ``table`` lists the lowest
chance checks so that such a pair can be seen (session 51: ``TechBattle`` and ``AmbientBattle``).

    python -m benchmarks.peak_check_null run CATALOG QUERIES.pkl OUT.jsonl [--queries N] [--seed S]
    python -m benchmarks.peak_check_null table OUT.jsonl

QUERIES.pkl: a query pickle of :mod:`benchmarks.scaling_prints` (its further looks' prints are
made beside it once, ``prepare_views``). ``benchmarks/SCALING.md`` (session 51) quotes a run
at 10^5 works. Not run in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import random
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

LEVELS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12)
LOWEST = 5  # chance checks listed


def related_works(source_path: str, catalog_paths: dict[int, str], groups: dict[str, str]):
    """The catalog works that hold a query's source: the source track itself, or a track the
    corpus groups with it (audio they share); paths compared as given."""
    group = groups.get(source_path)
    return {
        work_id
        for work_id, path in catalog_paths.items()
        if path == source_path or (group is not None and groups.get(path) == group)
    }


def check_records(query_id, role, look, n_works, guesses, checks, related, settings):
    """One record per check that ran (``checks[i]`` of ``guesses[i]``), as
    :func:`audiodup.screening.best_peak_checks` receives them."""
    from audiodup.peakcheck import confirms_recording

    ran = [(g[0], check) for g, check in zip(guesses, checks, strict=True) if check is not None]
    tried = Counter(work_id for work_id, _ in ran)
    return [
        {
            "query_id": query_id,
            "role": role,
            "look": look,
            "work_id": int(work_id),
            "related": int(work_id) in related,
            "probability": float(check.probability),
            "work_checks": tried[work_id],
            "look_checks": len(ran),
            "n_works": n_works,
            "refined": bool(check.refined),
            "confirms": bool(confirms_recording(check, settings)),
            "matched_peaks": int(check.matched_peaks),
            "checked_peaks": int(check.checked_peaks),
            "chance_peaks": float(check.chance_peaks),
        }
        for work_id, check in ran
    ]


@contextlib.contextmanager
def watched_checks(on_checks, on_look=None) -> Iterator[None]:
    """``on_checks(guesses, checks)`` with every set of guided peak checks screening runs, and
    ``on_look()`` before each look's evidence is gathered."""
    import audiodup.screening as screening

    checks_of, gather = screening.best_peak_checks, screening.gather_evidence

    def watching(guesses, checks, *args, **kwargs):
        on_checks(guesses, checks)
        return checks_of(guesses, checks, *args, **kwargs)

    def looking(*args, **kwargs):
        if on_look is not None:
            on_look()
        return gather(*args, **kwargs)

    screening.best_peak_checks, screening.gather_evidence = watching, looking
    try:
        yield
    finally:
        screening.best_peak_checks, screening.gather_evidence = checks_of, gather


def run(catalog_dir: Path, queries: Path, out: Path, n_queries: int, seed: int) -> int:
    """Screen the queries (every look) and write one JSON line per guided peak check; returns
    the number of checks written."""
    from audiodup.catalog import Catalog, _view_from
    from audiodup.screening import gather_looks
    from benchmarks.corpus import read_manifest
    from benchmarks.lookup_stages import prepared_queries
    from benchmarks.scaling_prints import prepare_views

    prepared, source = prepared_queries((catalog_dir, queries), queries)
    groups = {os.path.realpath(t["path"]): t["group"] for t in read_manifest()["tracks"]}
    if n_queries:
        prepared = random.Random(seed).sample(prepared, min(n_queries, len(prepared)))
    views = pickle.loads(prepare_views(queries).read_bytes())
    written = 0
    with Catalog.open(catalog_dir, create=False) as catalog, out.open("w") as fh:
        settings, indexes, store = catalog.settings, catalog.indexes(), catalog.store
        paths = {w.work_id: os.path.realpath(w.path) for w in store.works()}
        n_works = int(indexes.live.sum())
        now: dict = {}

        def next_look() -> None:
            now["look"] += 1

        def on_checks(guesses, checks) -> None:
            nonlocal written
            q = now["query"]
            for record in check_records(
                q.query_id, q.role, now["look"], n_works, guesses, checks, now["related"], settings
            ):
                fh.write(json.dumps(record) + "\n")
                written += 1

        with watched_checks(on_checks, next_look):
            for q, fp in prepared:
                related = related_works(source.get(q.track_id, ""), paths, groups)
                now.update(query=q, related=related, look=-1)
                view = _view_from(views[q.query_id])
                gather_looks(fp, indexes, settings, store, view, every_look=True)
    return written


def payments(record: dict) -> tuple[float, float]:
    """``(every work, checks run)``: a check's false-match probability paid for every work of
    the catalog, as screening pays it, and paid only for the checks its look ran."""
    tail = record["probability"] * record["work_checks"]
    return min(1.0, tail * record["n_works"]), min(1.0, tail * record["look_checks"])


def summarise(records: Sequence[dict], duplicate: float = 1e-6, suspect: float = 1e-3) -> dict:
    """The chance checks' probabilities: share at or below each of :data:`LEVELS`, the lowest,
    checks per look, and how many would be ``duplicate`` or ``suspect`` under either payment
    (left out: a further look's factor, which multiplies both alike, and the combination with
    a chroma alignment, which can only lower a probability)."""
    chance = [r for r in records if not r["related"]]
    p = np.array([r["probability"] for r in chance])
    per_look = Counter((r["query_id"], r["look"]) for r in records)
    paid = np.array([payments(r) for r in chance]).reshape(-1, 2)
    return {
        "checks": len(records),
        "chance_checks": len(chance),
        "queries": len({r["query_id"] for r in records}),
        "looks": len(per_look),
        "checks_per_look": {
            "median": float(np.median(list(per_look.values()))) if per_look else 0.0,
            "p95": float(np.percentile(list(per_look.values()), 95)) if per_look else 0.0,
            "max": max(per_look.values(), default=0),
        },
        "confirming": int(sum(r["confirms"] for r in chance)),
        "at_or_below": {f"{level:.0e}": int((p <= level).sum()) for level in LEVELS},
        "lowest": sorted(chance, key=lambda r: r["probability"])[:LOWEST],
        "duplicate": {
            "every work": int((paid[:, 0] <= duplicate).sum()),
            "checks run": int((paid[:, 1] <= duplicate).sum()),
        },
        "suspect": {
            "every work": int((paid[:, 0] <= suspect).sum()),
            "checks run": int((paid[:, 1] <= suspect).sum()),
        },
    }


def table(summary: dict) -> str:
    """``summarise`` as Markdown."""
    per_look = summary["checks_per_look"]
    lines = [
        f"{summary['checks']:,} guided peak checks of {summary['looks']:,} looks at "
        f"{summary['queries']} queries; {summary['chance_checks']:,} on chance candidates "
        f"({summary['confirming']} of them clearing the floors of a recording); checks per look "
        f"median {per_look['median']:.0f}, p95 {per_look['p95']:.0f}, max {per_look['max']}.",
        "",
        "| probability p | chance checks at or below p | share |",
        "|---:|---:|---:|",
    ]
    n = max(summary["chance_checks"], 1)
    for level, count in summary["at_or_below"].items():
        lines.append(f"| {level} | {count} | {count / n:.2e} |")
    lines += [
        "",
        "| paid for | chance checks `duplicate` (<= 1e-6) | `suspect` (<= 1e-3) |",
        "|---|---:|---:|",
    ]
    for payment in ("every work", "checks run"):
        lines.append(
            f"| {payment} | {summary['duplicate'][payment]} | {summary['suspect'][payment]} |"
        )
    lines += ["", "Lowest chance checks:", ""]
    for r in summary["lowest"]:
        lines.append(
            f"- `{r['query_id']}` look {r['look']}: work {r['work_id']}, p {r['probability']:.2g}, "
            f"{r['matched_peaks']} of {r['checked_peaks']} peaks (chance {r['chance_peaks']:.2f}), "
            f"{r['look_checks']} checks in the look"
        )
    return "\n".join(lines)


FIELDS = ("query_id", "look", "related", "probability", "work_checks", "look_checks", "n_works")


def read_records(path: Path) -> list[dict]:
    """The check records ``run`` wrote to ``path``; ``ValueError`` naming the line when one is
    not such a record, or when there is none."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not text: no peak check records of `run`") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or any(name not in record for name in FIELDS):
            raise ValueError(f"{path} line {number} is not a peak check record of `run`")
        records.append(record)
    if not records:
        raise ValueError(f"{path} holds no peak check records")
    return records


def main(argv: Sequence[str] | None = None) -> int:
    from audiodup.errors import AudiodupError
    from benchmarks.lookup_stages import InputError

    parser = argparse.ArgumentParser(prog="python -m benchmarks.peak_check_null")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="screen the queries, one JSON line per peak check")
    p_run.add_argument("catalog", type=Path)
    p_run.add_argument("queries", type=Path, help="query pickle of benchmarks.scaling_prints")
    p_run.add_argument("out", type=Path)
    p_run.add_argument("--queries", dest="n_queries", type=int, default=0, help="0: all")
    p_run.add_argument("--seed", type=int, default=0)
    p_table = sub.add_parser("table", help="the chance checks of a run, as Markdown")
    p_table.add_argument("records", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            n = run(args.catalog, args.queries, args.out, args.n_queries, args.seed)
            print(f"{n} checks -> {args.out}")
        else:
            print(table(summarise(read_records(args.records))))
    except (AudiodupError, InputError, OSError, ValueError, KeyError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
