"""Per-work cost of a rescan on a large catalog, from a sample of its works (issue #14).

    python -m benchmarks.rescan_per_work CATALOG [--sample 20] [--seed 0]

A rescan screens every work against the rest of the catalog
(:func:`audiodup.rescan.screen.screen_work`: the work's file re-decoded when it is there, its
stored fingerprint otherwise, then :meth:`audiodup.Catalog.match_fingerprint` without the
work). Screening all 10^5 works takes days on this machine, so this screens a seeded sample of
the live works in one process, after loading the indexes once, and prints the CPU seconds per
work (mean, median, p95). Every sampled work is screened from its stored fingerprint (as a
rescan does when the file is gone: one look), so that every size pays the same: distractor
works of the scaling catalogs have no audio file, and re-decoding one that has costs the same at
any catalog size (0.4 CPU-s per 4-min work, benchmarks/CPU.md).
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer


def main(
    catalog_dir: Path,
    sample: Annotated[int, typer.Option(help="works screened")] = 20,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    from audiodup import Catalog
    from audiodup.allocator import keep_freed_memory
    from audiodup.rescan.screen import screen_work

    keep_freed_memory()  # as the command line and a rescan's workers do
    with Catalog.open(catalog_dir, create=False) as catalog:
        works = sorted(w.work_id for w in catalog.works())
        chosen = np.random.default_rng(seed).choice(works, min(sample, len(works)), replace=False)
        start = time.process_time()
        catalog.indexes()
        print(f"{len(works)} works; indexes loaded in {time.process_time() - start:.1f} CPU-s")
        spent, sources, matched = [], collections.Counter(), 0
        for work_id in sorted(int(w) for w in chosen):
            start = time.process_time()
            scan = screen_work(catalog, work_id, file_problem="sampled from its fingerprint")
            spent.append(time.process_time() - start)
            sources[scan.query_source] += 1
            matched += bool(scan.matches)
    spent_ms = np.array(spent) * 1000
    print(
        f"{len(spent)} works screened ({dict(sources)}; {matched} with a match): CPU per work "
        f"mean {spent_ms.mean():.0f} ms, median {np.median(spent_ms):.0f} ms, "
        f"p95 {np.percentile(spent_ms, 95):.0f} ms"
    )


if __name__ == "__main__":
    typer.run(main)
