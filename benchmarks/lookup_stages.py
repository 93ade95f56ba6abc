"""Where a large catalog loses a copy: the hash look-up stage by stage, per positive query.

For each hard-variant positive of a prepared query pickle (``benchmarks.scaling_prints``), one
JSON line: the query's hashes and usable hits, the copy's own work's hits with and without the
hit budget, its rank and support in :func:`audiodup.match.candidate_works` (every work, min
support 1) and the 30th candidate's support, its verified line (inliers, false-match
probability, works in competition) from each set of hits, and its rank among the chroma
candidates (the look at the upload as it is only).

    python -m benchmarks.lookup_stages CATALOG QUERIES.pkl > stages.jsonl

docs/scaling.md quotes a run at 10^4 works with the code of 5e85e7b (ties then went to the
lowest work id).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    from audiodup.catalog import Catalog
    from audiodup.errors import AudiodupError
    from benchmarks.corpus import add_corpus_option

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.lookup_stages",
        description="Where a large catalog loses a copy: one JSON line per positive query.",
    )
    parser.add_argument("catalog", type=Path, help="catalog folder")
    parser.add_argument("queries", type=Path, help="query pickle of benchmarks.scaling_prints")
    add_corpus_option(parser)
    args = parser.parse_args(argv)
    catalog_dir, queries = args.catalog, args.queries
    try:
        prepared, source = prepared_queries((catalog_dir, queries), queries, args.corpus)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _stages(Catalog.open(catalog_dir, create=False), prepared, source)
    except AudiodupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


class InputError(Exception):
    """A tool's input is missing or unreadable: its one-line message."""


def prepared_queries(
    paths: Sequence[Path], queries: Path, corpus_name: str = "tuning"
) -> tuple[list, dict[str, str]]:
    """The prepared ``queries`` pickle (``benchmarks.scaling_prints``) and each track of the
    corpus ``corpus_name``'s real path by track id, once every one of ``paths`` exists;
    :class:`InputError` says which is missing or what could not be read."""
    from benchmarks.corpus import read_manifest

    for path in paths:
        if not path.exists():
            raise InputError(f"{path} does not exist")
    try:
        prepared = pickle.loads(queries.read_bytes())
        corpus = read_manifest(corpus_name)
    except (OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise InputError(f"cannot read the queries or the benchmark corpus: {exc}") from None
    return prepared, {t["track_id"]: os.path.realpath(t["path"]) for t in corpus["tracks"]}


def _stages(catalog, prepared, source: dict[str, str]) -> int:
    from audiodup.fingerprint import fingerprint_hashes
    from audiodup.match import candidate_works, chroma_candidates, lookup_hashes
    from audiodup.screening import _max_bucket_hits, _verify, score_hashes

    with catalog:
        s = catalog.settings
        indexes = catalog.indexes()
        work_of = {os.path.realpath(w.path): w.work_id for w in catalog.works()}
        n_works = int(indexes.live.sum())
        cap = _max_bucket_hits(indexes, s)
        for q, fp in prepared:
            if q.role != "positive":
                continue
            true = work_of.get(source[q.track_id])
            hashes = fingerprint_hashes(fp, s, query=True)
            size = indexes.bucket_sizes[hashes.keys]
            usable = (size > 0) & (size <= cap)
            bps = s.bins_per_semitone
            whole = lookup_hashes(hashes, indexes, cap, 1 << 40, bps)
            budget = lookup_hashes(hashes, indexes, cap, s.max_query_hits, bps)
            row = {
                "variant": q.variant,
                "duration_s": round(fp.duration_s, 1),
                "query_hashes": len(hashes.keys),
                "usable_hits": int(size[usable].sum()),
                "true_hits_all": int((whole.work == true).sum()),
                "true_hits_budget": int((budget.work == true).sum()),
                "works_with_hits_budget": len(np.unique(budget.work)),
            }
            for name, votes in (("all", whole), ("budget", budget)):
                ranked = candidate_works(votes, 10**6, s.frames_per_second, 1)
                support = dict(ranked)
                order = [w for w, _ in ranked]
                row[f"{name}_rank"] = order.index(true) if true in support else None
                row[f"{name}_support"] = support.get(true)
                row[f"{name}_30th_support"] = ranked[29][1] if len(ranked) > 29 else None
                evidence = _verify(votes, true, s)
                if evidence is not None:
                    hits = np.unique(votes.work, return_counts=True)[1]
                    found = score_hashes([evidence], n_works, s, hits)[true]
                    row[f"{name}_inliers"] = evidence.main_inliers
                    row[f"{name}_fmp"] = found.false_match_probability
                    row[f"{name}_competing"] = int((hits >= evidence.main_inliers).sum())
            chroma = [w for w, _, _ in chroma_candidates(fp, indexes, s)]
            row["chroma_rank"] = chroma.index(true) if true in chroma else None
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
