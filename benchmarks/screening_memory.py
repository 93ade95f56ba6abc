"""Resident memory and search CPU of one screening process on a large catalog (issue #14).

    python -m benchmarks.screening_memory screen CATALOG UPLOAD... [--out FILE.jsonl]
    python -m benchmarks.screening_memory chroma-io CATALOG [--queries N] [--repeats R]

``screen`` opens the catalog in this process, loads its indexes and screens each upload with
:meth:`audiodup.Catalog.screen` (the production path: decode, fingerprint, every look), printing
after the load and after every upload the process's resident memory from ``/proc/self/status``:
``VmHWM`` (the peak so far, what ``ru_maxrss`` reports), ``RssAnon`` (the process's own memory)
and ``RssFile`` (pages of mapped files: the page cache's, counted while mapped). Each upload's
verdict entry (without timings) goes to ``--out`` so that two codes' runs can be compared
line by line (``cmp``).

``chroma-io`` times :meth:`audiodup.index.LoadedIndexes.search_chroma` (CPU seconds) over the
catalog's chroma shards opened two ways: as the store opens them (:func:`read_chroma_index`)
and with FAISS's ``IO_FLAG_MMAP`` (on-disk inverted lists, what it used before), on the same
random query vectors, and checks that both find the same hits.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


def memory_mb() -> dict[str, int]:
    """``VmHWM``, ``VmRSS``, ``RssAnon`` and ``RssFile`` of this process, in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) // 1024
    return fields


@app.command()
def screen(
    catalog_dir: Path,
    uploads: list[Path],
    out: Annotated[Path | None, typer.Option(help="verdict entries, one JSON line each")] = None,
) -> None:
    """Screen ``uploads`` in one process, printing its memory after the load and each upload."""
    from audiodup import Catalog
    from audiodup.results import TIMING_FIELDS, to_jsonable, verdict_to_dict

    wall, cpu = time.perf_counter(), time.process_time()
    with Catalog.open(catalog_dir, create=False) as catalog:
        catalog.indexes()
        load = f"wall {time.perf_counter() - wall:.1f} s, CPU {time.process_time() - cpu:.1f} s"
        print(f"loaded ({load}): {memory_mb()}", flush=True)
        entries = []
        for path in uploads:
            verdict = catalog.screen(path)
            entry = to_jsonable(verdict_to_dict(verdict))
            for name in TIMING_FIELDS:
                entry.pop(name, None)
            entries.append(json.dumps(entry, sort_keys=True))
            print(
                f"{path.name}: {verdict.verdict}, search CPU {verdict.search_cpu_s * 1000:.0f} ms,"
                f" {memory_mb()}",
                flush=True,
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"after {len(uploads)} uploads: {memory_mb()}, ru_maxrss {peak} MB")
    if out is not None:
        out.write_text("".join(e + "\n" for e in entries))


@app.command("chroma-io")
def chroma_io(
    catalog_dir: Path,
    queries: Annotated[int, typer.Option(help="query vectors per search (a look: 88)")] = 88,
    repeats: Annotated[int, typer.Option()] = 5,
) -> None:
    """CPU seconds of one chroma search over every shard, shards opened in place or on-disk."""
    import faiss

    from audiodup import Catalog
    from audiodup.index import chroma_dim, set_probes

    with Catalog.open(catalog_dir, create=False) as catalog:
        in_place = catalog.indexes()
        rows = catalog.store.db.execute("SELECT chroma_file FROM shards ORDER BY shard_id")
        on_disk = []
        for (name,) in rows.fetchall():
            flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
            shard = faiss.read_index(str(catalog.store._shard_path(name)), flags)
            set_probes(shard, catalog.settings)
            on_disk.append(shard)
        on_disk = dataclasses.replace(in_place, chroma_shards=on_disk)
        rng = np.random.default_rng(0)
        vectors = rng.random((queries, chroma_dim(catalog.settings)), dtype=np.float32)
        times: dict[str, list[float]] = {"in place (IO_FLAG_MMAP_IFC)": [], "IO_FLAG_MMAP": []}
        found = {}
        for _ in range(repeats):  # interleaved: the machine's load hits both alike
            for label, indexes in zip(times, (in_place, on_disk), strict=True):
                start = time.process_time()
                found[label] = indexes.search_chroma(vectors, k=8)
                times[label].append(time.process_time() - start)
    a, b = found.values()
    same = np.array_equal(a.similarities, b.similarities) and np.array_equal(a.work_ids, b.work_ids)
    print(f"{len(in_place.chroma_shards)} chroma shards, {queries} vectors, same hits: {same}")
    for label, spent in times.items():
        print(f"{label}: CPU min {min(spent):.3f} s, median {np.median(spent):.3f} s")


if __name__ == "__main__":
    app()
