"""Where each candidate channel ranks a lost copy's work, look by look (issue #14).

For every hard-variant positive of a prepared query pickle (``benchmarks.scaling_prints``) that
a screening run (its JSON lines, ``scaling_prints screen``) did not find, and for each look that
screening may take at it (the upload as it is, then :func:`audiodup.screening.planned_views`),
one JSON line: the true work's rank and support among the sampled look-up's cells
(``candidate_works`` with rarity weights, every work), among the chroma votes
(``chroma_voted_scales``, the vote search's density) and among the four-peak votes
(``quad_works``), each ``DEPTH`` deep, and whether a rank fusion of the three would put it
among the ``FUSED`` works verified besides those the channels verify now. A last line sums
the lost copies up.

    python -m benchmarks.channel_ranks CATALOG QUERIES.pkl SCREEN.jsonl > ranks.jsonl

``benchmarks/SCALING.md`` (session 12) quotes a run at 10^5 works.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from collections import defaultdict
from pathlib import Path

DEPTH = 2_000  # ranks looked at in each channel
FUSED = 8  # works a fusion would add to those verified
FUSION_K = 20  # reciprocal-rank fusion: score = sum of 1 / (FUSION_K + rank)


def main(argv: list[str]) -> int:
    from audiodup.catalog import Catalog
    from audiodup.errors import AudiodupError
    from benchmarks.corpus import add_corpus_option
    from benchmarks.lookup_stages import InputError, prepared_queries

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.channel_ranks",
        description="Each candidate channel's rank of a lost copy's work: one JSON line a look.",
    )
    parser.add_argument("catalog", type=Path, help="catalog folder")
    parser.add_argument("queries", type=Path, help="query pickle of benchmarks.scaling_prints")
    parser.add_argument("screen", type=Path, help="JSON lines of scaling_prints screen")
    add_corpus_option(parser)
    args = parser.parse_args(argv)
    try:
        inputs = (args.catalog, args.queries, args.screen)
        prepared, source = prepared_queries(inputs, args.queries, args.corpus)
        lines = args.screen.read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        if not all(isinstance(r, dict) for r in records):
            raise ValueError("a line is not a JSON object")
        lost = _lost(records, source)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: cannot read the screening: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with Catalog.open(args.catalog, create=False) as catalog:
            rows = _ranks(catalog, args.queries, prepared, lost, source)
    except AudiodupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"summary": summary(rows)}))
    return 0


def _lost(records: list[dict], source: dict[str, str]) -> set[str]:
    """The positives a screening did not find (``scaling_prints.outcome``)."""
    from benchmarks.scaling_prints import outcome

    return {
        r["query_id"]
        for r in records
        if "query_id" in r and r.get("role") == "positive" and outcome(r, source) != "found"
    }


def _ranks(catalog, queries: Path, prepared, lost: set[str], source: dict[str, str]) -> list:
    from audiodup.catalog import _view_from
    from audiodup.fingerprint import fingerprint_hashes
    from audiodup.match import (
        candidate_works,
        chroma_voted_scales,
        rarity_weights,
        search_chroma_segments,
    )
    from audiodup.quads import query_quads
    from audiodup.screening import hash_lookup, planned_views
    from benchmarks.scaling_prints import prepare_views

    settings = catalog.settings
    indexes = catalog.indexes()
    work_of = {os.path.realpath(w.path): w.work_id for w in catalog.store.works()}
    views = pickle.loads(prepare_views(queries).read_bytes())
    rows = []
    for q, fp in prepared:
        if q.query_id not in lost:
            continue
        true = work_of.get(source.get(q.track_id))
        view = _view_from(views[q.query_id])
        looks = [(1.0, 0.0, fp)]
        looks += [(s, p, view(s, p)) for s, p in planned_views(fp, settings)]
        for scale, phase, seen in looks:
            found = hash_lookup(fingerprint_hashes(seen, settings, query=True), indexes, settings)
            weights = rarity_weights(found.votes, indexes.bucket_sizes)
            cells = candidate_works(
                found.votes, DEPTH, settings.frames_per_second, 1, weights, (0.0, 0.5)
            )
            density = settings.chroma_vote_density
            search = search_chroma_segments(seen, indexes, settings, scale, density)
            chroma = [w for w, _ in chroma_voted_scales(search, DEPTH)]
            voted = indexes.quad_works(query_quads(seen, settings), settings, DEPTH)
            quads = [(v.work_id, v.support) for v in voted]
            row = {
                "query_id": q.query_id,
                "variant": q.variant,
                "time_scale": scale,
                "hop_phase": phase,
                **_channel("hash", [w for w, _ in cells], dict(cells), true),
                **_channel("chroma", chroma, {}, true),
                **_channel("quad", [w for w, _ in quads], dict(quads), true),
                "verified": _verified_now(cells, chroma, quads, true, settings),
                "fused": true in fused_extra(cells, chroma, quads, settings),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _channel(name: str, order: list[int], support: dict, true: int | None) -> dict:
    rank = order.index(true) if true in order else None
    value = support.get(true)
    return {f"{name}_rank": rank, f"{name}_support": None if value is None else float(value)}


def _verified_now(cells, chroma, quads, true, settings) -> bool:
    """Whether the channels as screening uses them verify the true work on this look."""
    return true in _verified_set(cells, chroma, quads, settings)


def _verified_set(cells, chroma, quads, settings) -> set[int]:
    return (
        {w for w, _ in cells[: settings.candidate_works]}
        | set(chroma[: settings.chroma_voted_works])
        | {w for w, _ in quads[: settings.quad_voted_works]}
    )


def fused_extra(cells, chroma, quads, settings) -> list[int]:
    """The ``FUSED`` works a reciprocal-rank fusion of the three channels ranks first among
    those they do not verify now."""
    score: dict[int, float] = defaultdict(float)
    for order in ([w for w, _ in cells], chroma, [w for w, _ in quads]):
        for rank, work_id in enumerate(order):
            score[work_id] += 1.0 / (FUSION_K + rank)
    have = _verified_set(cells, chroma, quads, settings)
    ranked = sorted((w for w in score if w not in have), key=lambda w: -score[w])
    return ranked[:FUSED]


def summary(rows: list[dict]) -> dict:
    """Per lost copy, over its looks: verified now on some look, brought in by the fusion on
    some look, and its best rank in any channel."""
    by_query: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_query[row["query_id"]].append(row)
    best = {}
    for query_id, looks in by_query.items():
        ranks = [
            r[f"{c}_rank"]
            for r in looks
            for c in ("hash", "chroma", "quad")
            if r[f"{c}_rank"] is not None
        ]
        best[query_id] = min(ranks) if ranks else None
    return {
        "lost": len(by_query),
        "verified_on_some_look": sum(any(r["verified"] for r in v) for v in by_query.values()),
        "fused_on_some_look": sum(any(r["fused"] for r in v) for v in by_query.values()),
        "best_rank": best,
    }


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
