"""Chroma retrieval at scale: FAISS index choices on the scaling catalog's chroma vectors.

    python -m benchmarks.chroma_index [--every 3] [--factory "IVF256,SQ8" ...]

Puts every stored chroma segment vector of the scaling catalog (``catalog-scaling`` in the
benchmark cache, built by ``python -m benchmarks run --scale``) into one index per variant: the
one audiodup builds for a shard that size, an exact inner-product search and each ``--factory``.
The queries are every ``--every``-th hard positive of the last full run (``results.jsonl``):
variants where hashes often fail and the chroma channel has to bring the work in. Reports, per
variant, how often the source work is among the chroma candidates and the search time per query.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import faiss
import numpy as np
import typer

from audiodup.audio import load_audio
from audiodup.catalog import Catalog
from audiodup.errors import AudiodupError
from audiodup.fingerprint import fingerprint_audio
from audiodup.index import (
    CHROMA_DIM,
    LoadedIndexes,
    new_chroma_index,
    pack_segment_ids,
    padded_columns,
    reference_segments,
    set_nprobe,
    set_probes,
    with_ids,
)
from audiodup.match import chroma_candidates

from .calibrate import fail, open_run
from .engine import _key

app = typer.Typer(add_completion=False)
REPO = Path(__file__).resolve().parent.parent
HARD = (
    "chain: slowed + reverb (speed 0.85)",
    "chain: tempo 0.93 + pitch -1.5 + eq + noise 20 dB",
    "speed 0.50",
    "tempo 0.60",
    "tempo 1.40",
    "tempo 2.00",
    "excerpt 8 s",
)


def stored_vectors(catalog: Catalog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every live work's chroma segment vectors, their FAISS ids, and the live-work mask."""
    vectors, ids, work_ids = [], [], []
    for work in catalog.works():
        segments = reference_segments(catalog.fingerprint(work.work_id), catalog.settings)
        vectors.append(segments)
        ids.append(pack_segment_ids(work.work_id, len(segments)))
        work_ids.append(work.work_id)
    live = np.zeros(max(work_ids) + 1, dtype=bool)
    live[work_ids] = True
    return np.concatenate(vectors).astype(np.float32), np.concatenate(ids), live


def exact_or_factory(factory: str, vectors: np.ndarray, ids: np.ndarray, nprobe: int):
    try:
        index = faiss.index_factory(CHROMA_DIM, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError:
        fail(f"--factory {factory!r}: not a FAISS index factory string")
    if not index.is_trained:
        index.train(vectors)
    index = with_ids(index)
    set_nprobe(index, nprobe)
    index.add_with_ids(vectors, ids)
    return index


@app.command()
def main(
    every: Annotated[int, typer.Option(min=1, help="Use every n-th hard positive query.")] = 3,
    factory: Annotated[
        list[str] | None, typer.Option(help="Also test this FAISS factory string.")
    ] = None,
    nprobe: Annotated[
        int | None, typer.Option(min=1, help="Lists probed (default: the catalog setting).")
    ] = None,
    data: Path | None = None,
    results: Path = REPO / "benchmarks" / "results.jsonl",
) -> None:
    corpus, catalog, records = open_run(
        data, results, "catalog-scaling", "needs a full and a scaling run: python -m benchmarks run"
    )
    settings = catalog.settings
    if nprobe is not None:
        settings = replace(settings, chroma_nprobe=nprobe)
    faiss.omp_set_num_threads(settings.faiss_threads)
    track_of_path = {_key(t.path): t.track_id for t in corpus.tracks}
    source_of = {
        w.work_id: track_of_path[_key(w.path)]
        for w in catalog.works()
        if _key(w.path) in track_of_path
    }
    hard = [q for q in records if q["role"] == "positive" and q["variant"] in HARD][::every]
    queries = []
    for q in hard:
        try:
            audio = load_audio(q["path"], settings)
        except AudiodupError as exc:
            typer.echo(f"error: {q['path']}: {exc}; skipped", err=True)
            continue
        queries.append((q["track_id"], fingerprint_audio(audio, settings, query=True)))
    vectors, ids, live = stored_vectors(catalog)
    own = new_chroma_index(vectors, settings)
    set_probes(own, settings)
    try:
        own_name = f"audiodup's shard index (IVF{faiss.extract_index_ivf(own).nlist},SQ8)"
    except RuntimeError:
        own_name = "audiodup's shard index (SQ8)"
    own.add_with_ids(padded_columns(vectors, own.d), ids)
    variants = {own_name: own}
    variants["exact (Flat)"] = exact_or_factory("Flat", vectors, ids, settings.chroma_nprobe)
    for extra in factory or []:
        variants[extra] = exact_or_factory(extra, vectors, ids, settings.chroma_nprobe)
    print(f"{len(vectors):,} chroma vectors of {int(live.sum()):,} works; {len(queries)} queries")
    print(f"(every {every}th positive of: {', '.join(HARD)}); nprobe {settings.chroma_nprobe}\n")
    print("| index | source among candidates | search p50 / p95 (ms) |\n|---|---:|---:|")
    for name, index in variants.items():
        loaded = LoadedIndexes([], [index], live, np.zeros(0, dtype=np.int64))
        found, seconds = 0, []
        for track_id, query in queries:
            started = time.perf_counter()
            candidates = chroma_candidates(query, loaded, settings)
            seconds.append(time.perf_counter() - started)
            found += any(source_of.get(w) == track_id for w, _, _ in candidates)
        ms = np.percentile(seconds, [50, 95]) * 1e3
        print(f"| {name} | {found}/{len(queries)} | {ms[0]:.1f} / {ms[1]:.1f} |")


if __name__ == "__main__":
    app()
