"""Latency and false positives as the catalog grows (100, 1,000, 10,000 works, ...).

The real catalog works are indexed first; generated distractor works (see
:mod:`benchmarks.distractors`) pad the catalog up to each size. One catalog grows through the
sizes; at each size a fixed sample of positive and negative queries is screened.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import SAMPLE_RATE_HZ
from benchmarks.distractors import generated_works
from benchmarks.engine import BuiltCatalog, build_catalog, screen, stats
from benchmarks.queries import Query
from benchmarks.records import QueryResult

Bar = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else math.nan


def run_scaling(
    engine_cls: Any,
    directory: Path,
    real_items: list[tuple[str, Path, float]],
    positives: list[Query],
    negatives: list[Query],
    sizes: list[int],
    duration_s: float,
    bar: Bar,
    max_positives: int = 100,
    max_negatives: int = 300,
    seed: int = 0,
    workers: int = 1,
) -> tuple[list[dict], list[str]]:
    """Rows (one per size) and notes for the report."""
    rng = np.random.default_rng([seed, 0x5CA1E])
    sizes = sorted(set(sizes))
    n_distractors = max(0, sizes[-1] - len(real_items))
    with bar(f"generating {n_distractors} distractor works", n_distractors) as advance:
        paths, desc = generated_works(
            directory.parent / "distractors",
            range(n_distractors),
            duration_s,
            SAMPLE_RATE_HZ,
            workers=workers,
            progress=advance,
        )
    notes = [
        f"Catalogs above {len(real_items)} works are padded with generated distractor works "
        f"({duration_s:g} s each, from {desc}); they are synthetic, not real music."
    ]
    distractors = [(None, p, duration_s) for p in paths]
    neg_sample = [negatives[i] for i in sorted(rng.permutation(len(negatives))[:max_negatives])]
    built: BuiltCatalog | None = None
    n_real = n_dist = 0
    rows = []
    for size in sizes:
        want_real = min(size, len(real_items))
        want_dist = size - want_real
        add = real_items[n_real:want_real] + distractors[n_dist:want_dist]
        with bar(f"scaling: indexing up to {size} works", len(add)) as advance:
            built = build_catalog(
                engine_cls,
                directory,
                [(t or f"distractor:{p.name}", p, d) for t, p, d in add],
                fresh=built is None,
                batch=32,
                progress=advance,
                existing=built,
            )
        n_real, n_dist = want_real, want_dist
        indexed = {t for t, _, _ in real_items[:n_real]}
        pos_pool = [q for q in positives if q.track_id in indexed]
        pos_sample = [pos_pool[i] for i in sorted(rng.permutation(len(pos_pool))[:max_positives])]
        results: list[QueryResult] = []
        with bar(
            f"scaling: screening at {size} works", len(pos_sample) + len(neg_sample)
        ) as advance:
            for q in pos_sample + neg_sample:
                results.append(QueryResult(q, screen(built, q)))
                advance(1)
        search = [r.engine.search_s for r in results if r.engine.search_s is not None]
        total = [r.engine.total_s for r in results if r.engine.total_s is not None]
        neg_r = [r for r in results if r.query.role == "negative"]
        pos_r = [r for r in results if r.query.role == "positive"]
        fp = sum(1 for r in neg_r if r.engine.verdict == "duplicate")
        hit = sum(
            1
            for r in pos_r
            if r.engine.verdict == "duplicate"
            and r.engine.matches
            and r.engine.matches[0].track_id == r.query.track_id
        )
        st = stats(built)
        rows.append(
            {
                "size": size,
                "works": int(st.get("works") or size),
                "real_works": n_real,
                "distractors": n_dist,
                "hours": st.get("hours"),
                "index_bytes": st.get("index_bytes"),
                "bytes_per_hour": st.get("bytes_per_hour"),
                "search_p50_ms": _p(search, 50),
                "search_p95_ms": _p(search, 95),
                "total_p50_ms": _p(total, 50),
                "total_p95_ms": _p(total, 95),
                "negatives": len(neg_r),
                "false_positives": fp,
                "suspect_rate": (
                    sum(1 for r in neg_r if r.engine.verdict == "suspect") / len(neg_r)
                )
                if neg_r
                else None,
                "positives": len(pos_r),
                "recall": hit / len(pos_r) if pos_r else None,
                "index_cpu_s": built.add_cpu_s,
            }
        )
    if built is not None:
        built.catalog.close()
    return rows, notes
