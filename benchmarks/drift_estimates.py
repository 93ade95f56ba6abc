"""Tempo drift estimates of ramped and steady copies (issue #12 item 4), estimator by estimator.

    python -m benchmarks.drift_estimates --catalog DIR --out estimates.jsonl \\
        --variants "tempo drift 1.00-1.08 [rb-r3],speed drift 1.00-1.08,tempo 0.80"
    python -m benchmarks.drift_estimates --summary estimates.jsonl

Each positive query of the variants (from the rendered queries' sidecars in the benchmark cache)
is screened as it is (``screening.gather_evidence``) on an existing catalog; for the work whose
hash lines have the lowest false-match probability (the match screening reports for every
ramped copy: its lines are decisive on the look as it is) the drift of each estimator is
written as one JSON line: ``curve`` (:func:`audiodup.screening.curve_drift`), ``bend`` (one
bending line) and ``sections`` (:func:`audiodup.screening.tempo_drift`); the match reports the
first of them, in this order, that gives one. ``--summary`` prints how many copies each reports
a drift for, and the reported drift's median and 10th-90th percentiles.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.corpus import cache_dir

ESTIMATORS = ("curve", "bend", "sections")  # the order the match takes them in


def estimate(catalog_dir: Path, variants: list[str], out: Path, data: Path | None) -> None:
    """Append one line per positive query of ``variants`` to ``out``."""
    from audiodup.audio import load_audio
    from audiodup.catalog import Catalog
    from audiodup.fingerprint import fingerprint_audio
    from audiodup.screening import _bending_drift, curve_drift, gather_evidence, hash_match
    from audiodup.screening import tempo_drift as section_drift

    sidecars = sorted((cache_dir(data) / "queries-v1" / "s0").glob("*/*.json"))
    with Catalog.open(catalog_dir, create=False) as catalog, out.open("a") as lines:
        s = catalog.settings
        fps = s.frames_per_second
        for sidecar in sidecars:
            query = json.loads(sidecar.read_text())
            if query["variant"] not in variants or query["role"] != "positive":
                continue
            fingerprint = fingerprint_audio(load_audio(query["path"], s), s, query=True)
            evidence = gather_evidence(fingerprint, catalog.indexes(), s, catalog.store)
            row = {"variant": query["variant"], "track": query["track_id"]}
            if evidence.hashes:
                best = min(evidence.hashes.values(), key=lambda f: f.false_match_probability)
                e = best.evidence
                match = hash_match(e, best.false_match_probability, fingerprint, s, catalog.store)
                row |= {
                    "false_match_probability": best.false_match_probability,
                    "sections": section_drift(match.sections),
                    "bend": _bending_drift(e, fps),
                    "curve": curve_drift(e, fps),
                }
            lines.write(json.dumps(row) + "\n")
            lines.flush()


def summary(path: Path) -> str:
    """A markdown table: per variant, the copies each estimator reports a drift for."""
    rows: dict[str, list[dict]] = defaultdict(list)
    for line in path.read_text().splitlines():
        row = json.loads(line)
        rows[row["variant"]].append(row)
    header = "| variant | copies | " + " | ".join(f"{e}: reported" for e in ESTIMATORS)
    header += " | reported by the match (first of the three) | its median (p10-p90) |"
    out = [header, "|---|---:|" + "---:|" * len(ESTIMATORS) + "---:|---|"]
    for variant, found in rows.items():
        counts = [sum(r.get(e) is not None for r in found) for e in ESTIMATORS]
        shown = [next((r[e] for e in ESTIMATORS if r.get(e) is not None), None) for r in found]
        values = np.array([v for v in shown if v is not None])
        spread = (
            "{:.3f} ({:.3f}-{:.3f})".format(*np.percentile(values, [50, 10, 90]))
            if len(values)
            else "-"
        )
        out.append(
            f"| {variant} | {len(found)} | "
            + " | ".join(str(c) for c in counts)
            + f" | {len(values)} | {spread} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=None)
    parser.add_argument("--variants", default="")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None, help="benchmark cache")
    parser.add_argument("--summary", type=Path, default=None, help="an estimates.jsonl")
    args = parser.parse_args()
    if args.summary is not None:
        print(summary(args.summary))
        return
    if args.catalog is None or args.out is None:
        parser.error("give --catalog and --out, or --summary")
    estimate(args.catalog, [v for v in args.variants.split(",") if v], args.out, args.data)


if __name__ == "__main__":
    main()
