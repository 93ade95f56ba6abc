"""The hard cases of issue #12 item 3, before and after: recall per variant and stretcher, the
tracks shorter than 60 s apart, the negatives' verdicts and the screening time per query.

    python -m benchmarks.hard_cases BEFORE.jsonl AFTER.jsonl [--corpus corpus.json]

Both files are the ``results.jsonl`` of ``python -m benchmarks run`` (one JSON line per query).
Prints a markdown table; variants in only one file show ``-`` on the other side.
"""

from __future__ import annotations

import argparse
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
    with path.open() as lines:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--corpus", type=Path, default=None, help="corpus.json of the cache")
    args = parser.parse_args()
    print(table(args.before, args.after, args.corpus or cache_dir() / "corpus.json"))


if __name__ == "__main__":
    main()
