"""The hard cases of issue #12 item 3, before and after: recall per variant and stretcher, the
tracks shorter than 60 s apart, the negatives' verdicts and the screening time per query.

    python -m benchmarks.hard_cases BEFORE.jsonl AFTER.jsonl [--corpus corpus.json]
    python -m benchmarks.hard_cases --screen RESULTS.jsonl --catalog DIR --variants "a,b"
        [--role positive|negative|both] [--settings '{"query_view_scales": []}'] [--out NEW.jsonl]

Both files are the ``results.jsonl`` of ``python -m benchmarks run`` (one JSON line per query),
or it gzipped (``.gz``).
Prints a markdown table; variants in only one file show ``-`` on the other side. With
``--screen`` the queries of a run are screened again on an existing catalog (settings changed
by a JSON object of run-time fields): recall, the negatives' verdicts and CPU seconds per query;
``--out`` writes their results as a ``results.jsonl``, so two re-screenings of one catalog (before
and after a change) compare as two runs do.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
from collections import defaultdict
from pathlib import Path

from benchmarks.corpus import cache_dir

# issue #12 item 3: per stretcher where one applies
TARGETS = {
    "tempo 2.00": 0.97,
    "speed 0.50": 0.97,
    "chain: slowed + reverb (speed 0.85)": 0.97,
    "excerpt 5 s": 0.95,
    "excerpt 4 s": 0.85,
}
SHORT_TRACK_S = 60.0


def target(variant: str) -> float | None:
    """The issue's target for ``variant`` (a stretcher's bracketed name shares its base's)."""
    return TARGETS.get(variant.split(" [")[0])


def load(path: Path) -> dict[str, dict[str, list[dict]]]:
    """variant -> role -> the query records of a results.jsonl."""
    runs: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    with gzip.open(path, "rt") if path.suffix == ".gz" else path.open() as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("type") == "query":
                query = record["query"]
                runs[query["variant"]][query["role"]].append(record)
    return runs


def found(record: dict) -> bool:
    """A positive found: verdict ``duplicate`` with its own work on top."""
    engine = record["engine"]
    return (
        engine["verdict"] == "duplicate"
        and bool(engine["matches"])
        and engine["matches"][0]["track_id"] == record["query"]["track_id"]
    )


def summary(records: dict[str, list[dict]], durations: dict[str, float]) -> dict:
    positives, negatives = records.get("positive", []), records.get("negative", [])
    short = [r for r in positives if durations.get(r["query"]["track_id"], 1e9) < SHORT_TRACK_S]
    verdicts = [r["engine"]["verdict"] for r in positives]
    times = [r["engine"]["total_s"] for r in negatives if r["engine"].get("total_s") is not None]
    return {
        "n": len(positives),
        "recall": sum(map(found, positives)) / len(positives) if positives else float("nan"),
        "found": sum(map(found, positives)),
        "short": f"{sum(map(found, short))}/{len(short)}",
        "suspect": verdicts.count("suspect"),
        "clean": verdicts.count("clean"),
        "negatives": len(negatives),
        "negative_duplicates": sum(r["engine"]["verdict"] == "duplicate" for r in negatives),
        "negative_suspects": sum(r["engine"]["verdict"] == "suspect" for r in negatives),
        "negative_median_s": statistics.median(times) if times else float("nan"),
    }


def table(before: Path, after: Path, corpus: Path) -> str:
    durations = {t["track_id"]: t["duration_s"] for t in json.loads(corpus.read_text())["tracks"]}
    old, new = load(before), load(after)
    rows = [
        "| variant | target | recall before | recall after | found after | suspect / clean "
        "after | tracks < 60 s found before / after | negatives: duplicate, suspect before / "
        "after | negatives: median s per query before / after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant in sorted(set(old) | set(new), key=lambda v: (target(v) is None, v)):
        b = summary(old[variant], durations) if variant in old else None
        a = summary(new[variant], durations) if variant in new else None
        goal = target(variant)
        mark = "" if goal is None or a is None else (" ✓" if a["recall"] >= goal else " ✗")

        def cell(s: dict | None, fmt: str) -> str:
            return fmt.format(**s) if s else "-"

        rows.append(
            f"| {variant} | {goal if goal is not None else '-'} "
            f"| {cell(b, '{recall:.3f}')} | {cell(a, '{recall:.3f}')}{mark} "
            f"| {cell(a, '{found}/{n}')} | {cell(a, '{suspect} / {clean}')} "
            f"| {cell(b, '{short}')} / {cell(a, '{short}')} "
            f"| {cell(b, '{negative_duplicates}, {negative_suspects}')} / "
            f"{cell(a, '{negative_duplicates}, {negative_suspects}')} of "
            f"{cell(a or b, '{negatives}')} "
            f"| {cell(b, '{negative_median_s:.2f}')} / {cell(a, '{negative_median_s:.2f}')} |"
        )
    return "\n".join(rows)


def rescreen(
    results: Path,
    catalog_dir: Path,
    variants: list[str],
    role: str,
    overrides: dict,
    corpus: Path,
    out: Path | None = None,
) -> str:
    """Screen the ``role`` queries (``"both"``: positives and negatives) of ``variants`` in
    ``results`` on the catalog at ``catalog_dir`` with run-time ``overrides``; one line per
    variant and role. With ``out``, each query's result is written there as a line of a
    ``results.jsonl`` (the matches' ``track_id`` from the corpus), so two re-screenings of one
    catalog compare with :func:`table`."""
    import dataclasses
    import os
    import time

    from audiodup.catalog import Catalog
    from audiodup.settings import DEFAULT_SETTINGS
    from benchmarks.engine import BuiltCatalog, screen
    from benchmarks.queries import Query

    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    settings = dataclasses.replace(DEFAULT_SETTINGS, **values)
    runs = load(results)
    roles = ("positive", "negative") if role == "both" else (role,)
    tracks = json.loads(corpus.read_text())["tracks"]
    path_to_track = {os.path.realpath(t["path"]): t["track_id"] for t in tracks}
    lines, written = [], []
    with Catalog.open(catalog_dir, create=False, settings=settings) as catalog:
        built = BuiltCatalog(catalog, path_to_track, {}, 0.0, 0.0, 0.0, 0, [])
        for variant in variants:
            for each_role in roles:
                found_n, labels, cpu = 0, [], 0.0
                records = runs[variant][each_role]
                for record in records:
                    query = Query.from_json(record["query"])
                    start = time.process_time()
                    result = screen(built, query)
                    cpu += time.process_time() - start
                    engine = dataclasses.asdict(result)
                    written.append({"type": "query", "query": record["query"], "engine": engine})
                    labels.append(result.verdict)
                    found_n += found(written[-1])
                n = max(len(records), 1)
                summary_text = (
                    f"found {found_n}/{len(records)} ({found_n / n:.3f})"
                    if each_role == "positive"
                    else f"duplicate {labels.count('duplicate')}, "
                    f"suspect {labels.count('suspect')} of {len(records)}"
                )
                lines.append(
                    f"{variant}: {each_role} {summary_text}; CPU {cpu / n:.2f} s per query"
                )
    if out is not None:
        out.write_text("".join(json.dumps(r) + "\n" for r in written))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, nargs="?")
    parser.add_argument("after", type=Path, nargs="?")
    parser.add_argument("--corpus", type=Path, default=None, help="corpus.json of the cache")
    parser.add_argument("--screen", type=Path, default=None, help="a results.jsonl to re-screen")
    parser.add_argument("--catalog", type=Path, default=None)
    parser.add_argument("--variants", default="")
    parser.add_argument("--role", choices=("positive", "negative", "both"), default="positive")
    parser.add_argument("--out", type=Path, default=None, help="write the re-screened results")
    parser.add_argument("--settings", default="{}", help="JSON object of run-time settings")
    args = parser.parse_args()
    if args.screen is not None:
        if args.catalog is None:
            parser.error("--screen needs --catalog")
        variants = [v for v in args.variants.split(",") if v]
        settings = json.loads(args.settings)
        corpus = args.corpus or cache_dir() / "corpus.json"
        print(rescreen(args.screen, args.catalog, variants, args.role, settings, corpus, args.out))
        return
    if args.before is None or args.after is None:
        parser.error("give BEFORE and AFTER results, or --screen")
    print(table(args.before, args.after, args.corpus or cache_dir() / "corpus.json"))


if __name__ == "__main__":
    main()
