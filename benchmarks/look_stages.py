"""CPU per stage of screening's look at an upload as it is, over the negatives of a query pickle
(``benchmarks.scaling_prints``): where a clean upload's search time goes at a catalog's size.

    python -m benchmarks.look_stages CATALOG QUERIES.pkl [--negatives 30]

Each negative takes one look (``Settings.without_further_looks``, as ``screen --quick``), in
this process, after two looks to warm up. The stages are the functions of
:mod:`audiodup.screening` that ``gather_evidence`` calls, timed in CPU seconds while they run
(patched for the measurement, then restored); a verified candidate's time is counted in
``_verified_work`` and again in the stage that asked for it (the look-up's candidates, the
voted works). Not run in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

STAGES = (
    "hash_lookup",
    "_verified_work",
    "quad_voted_works",
    "search_chroma_segments",
    "chroma_voted_candidates",
    "aligned_chroma",
    "swept_chroma",
    "peak_checks",
    "score_hashes",
)


@contextlib.contextmanager
def timed_stages(spent: Counter, calls: Counter) -> Iterator[None]:
    """Each of :data:`STAGES` in :mod:`audiodup.screening` adding its CPU seconds to ``spent``."""
    import audiodup.screening as screening

    real = {name: getattr(screening, name) for name in STAGES}

    def timed(name, function):
        def stage(*args, **kwargs):
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - start
                calls[name] += 1

        return stage

    for name, function in real.items():
        setattr(screening, name, timed(name, function))
    try:
        yield
    finally:
        for name, function in real.items():
            setattr(screening, name, function)


def measure(catalog_dir: Path, queries: Path, negatives: int) -> dict:
    from audiodup.catalog import Catalog
    from audiodup.screening import gather_looks
    from audiodup.settings import DEFAULT_SETTINGS

    prints = _negatives(queries)[:negatives]
    if not prints:
        raise ValueError(f"{queries} holds no negatives")
    settings = DEFAULT_SETTINGS.without_further_looks()
    spent, calls = Counter(), Counter()
    with Catalog.open(catalog_dir, create=False, settings=settings) as catalog:
        indexes = catalog.indexes()
        for _, fp in prints[:2]:  # warm up
            gather_looks(fp, indexes, catalog.settings, catalog.store)
        start = time.process_time()
        with timed_stages(spent, calls):
            for _, fp in prints:
                gather_looks(fp, indexes, catalog.settings, catalog.store)
        total = time.process_time() - start
        works = catalog.stats().works
    n = len(prints)
    return {
        "works": works,
        "negatives": n,
        "look_ms": 1000 * total / n,
        "stages_ms": {name: 1000 * spent[name] / n for name in STAGES},
        "calls": dict(calls),
    }


def _negatives(queries: Path) -> list:
    """The ``(Query, Fingerprint)`` pairs of the negatives in a query pickle."""
    items = pickle.loads(queries.read_bytes())
    try:
        return [item for item in items if item[0].role == "negative"]
    except (AttributeError, IndexError, KeyError, TypeError):
        raise ValueError(f"{queries} is not a query pickle of benchmarks.scaling_prints") from None


def report(result: dict) -> str:
    lines = [
        f"{result['works']:,} works, {result['negatives']} negatives, one look each: "
        f"{result['look_ms']:.0f} CPU-ms per look",
    ]
    for name, ms in sorted(result["stages_ms"].items(), key=lambda item: -item[1]):
        lines.append(f"  {name:26s} {ms:7.1f} ms  ({result['calls'].get(name, 0)} calls)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from audiodup.errors import AudiodupError

    parser = argparse.ArgumentParser(prog="python -m benchmarks.look_stages")
    parser.add_argument("catalog", type=Path)
    parser.add_argument("queries", type=Path, help="query pickle of benchmarks.scaling_prints")
    parser.add_argument("--negatives", type=int, default=30)
    args = parser.parse_args(argv)
    try:
        print(report(measure(args.catalog, args.queries, args.negatives)))
    except (AudiodupError, OSError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
