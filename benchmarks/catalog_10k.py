"""A 10,000-work catalog made cheaply from the benchmark's 113 real works (issues #15, #16).

``python -m benchmarks.catalog_10k OUT [--works 10000]`` copies ``catalog-full`` from the
benchmark cache to ``OUT`` and adds distractor works until it holds ``--works``. No audio is
decoded: each distractor is a real work's fingerprint made unrelated to it, committed through
``CatalogStore.commit_batch`` like any added file (so shards, bucket sizes and the ledger are
what ``index add`` writes):

- peaks: the source work's peak times and strengths, with their frequencies permuted inside
  each 30-second window, so the peak density and each passage's register stay realistic while
  the triplets (and their hash keys) are new;
- chroma: the source's frames in 2-second blocks, shuffled, each block rotated by a random
  number of semitones, so the segment vectors are new too.

The catalog's own 113 works stay as they are: an upload of one of them still finds it, and the
distractors cost the search what unrelated works cost it. It is a cost benchmark's catalog, not
an accuracy one: real music repeats hash keys more unevenly than permuted peaks do.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from audiodup.fingerprint import Fingerprint
from audiodup.settings import DEFAULT_SETTINGS
from audiodup.store import CatalogStore, NewWork

from .cpu_cost import _cache_dir

WINDOW_S = 30.0
CHROMA_BLOCK_S = 2.0
BATCH = 1000


def distractor(source: Fingerprint, rng: np.random.Generator) -> Fingerprint:
    """A fingerprint with ``source``'s peak times, strengths and registers, and new triplets."""
    peaks = source.peaks.copy()
    frames_per_window = max(1, int(WINDOW_S * DEFAULT_SETTINGS.frames_per_second))
    window = peaks["frame"] // frames_per_window
    for w in np.unique(window):
        at = np.flatnonzero(window == w)
        peaks["bin"][at] = rng.permutation(peaks["bin"][at])
    block = max(1, int(CHROMA_BLOCK_S * DEFAULT_SETTINGS.chroma_fps))
    pieces = [source.chroma[i : i + block] for i in range(0, len(source.chroma), block)]
    order = rng.permutation(len(pieces))
    chroma = np.concatenate(
        [np.roll(pieces[i], int(rng.integers(12)), axis=1) for i in order]
    ).astype(np.float32)
    return replace(source, peaks=peaks, chroma=chroma)


def build(out: Path, works: int, cache: Path, seed: int = 16) -> dict:
    """Copy ``catalog-full`` to ``out`` and add distractors up to ``works`` works."""
    if out.exists():
        raise SystemExit(f"{out} exists; remove it or choose another folder")
    shutil.copytree(cache / "catalog-full", out)
    rng = np.random.default_rng(seed)
    cpu0, wall0 = time.process_time(), time.monotonic()
    store = CatalogStore(out, DEFAULT_SETTINGS, create=False, write=True)
    try:
        ids = [r[0] for r in store.db.execute("SELECT work_id FROM works WHERE removed = 0")]
        sources = [store.fingerprint(w) for w in ids]
        wanted = works - len(ids)
        for start in range(0, wanted, BATCH):
            items = []
            for n in range(start, min(wanted, start + BATCH)):
                k = int(rng.integers(len(sources)))
                fingerprint = distractor(sources[k], rng)
                items.append(
                    NewWork(
                        path=f"/distractors/{n:05d}-of-work-{ids[k]}.mp3",
                        sha256=hashlib.sha256(f"distractor {seed} {n}".encode()).hexdigest(),
                        duration_s=fingerprint.duration_s,
                        fingerprint=fingerprint,
                    )
                )
            store.commit_batch(items)
            print(f"{min(wanted, start + BATCH) + len(ids)} works", flush=True)
        shards = store.db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
    finally:
        store.close()
    return {
        "works": works,
        "shards": shards,
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.monotonic() - wall0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--works", type=int, default=10_000)
    parser.add_argument("--data", help="benchmark cache (default: $AUDIODUP_BENCH_DATA)")
    args = parser.parse_args(argv)
    print(build(args.out, args.works, _cache_dir(args.data)))


if __name__ == "__main__":
    main()
