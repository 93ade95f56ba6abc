"""Render and cache altered uploads ("queries") with their ground truth.

Every query is a 22050 Hz mono FLAC under ``<cache>/queries-v<RENDER_VERSION>/s<seed>/``, keyed
by (track, variant, seed), with a JSON sidecar holding its :class:`Query` record. Re-runs only
read the sidecars.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks import SAMPLE_RATE_HZ
from benchmarks.alterations import (
    BY_NAME,
    FULL_SOURCE_CAP_S,
    SOURCE_EXCERPT_S,
    Truth,
    Variant,
    apply,
)
from benchmarks.corpus import load_mono

RENDER_VERSION = 1  # bump when alterations change, so stale renders are not reused


@dataclass(frozen=True)
class Query:
    """One rendered upload and the truth about it (times in seconds)."""

    query_id: str
    track_id: str
    role: str  # "positive" (source is a catalog work) or "negative" (never indexed)
    variant: str
    family: str
    path: str
    duration_s: float
    tempo_ratio: float
    pitch_shift_semitones: float
    ref_start_s: float
    ref_end_s: float
    query_offset_s: float
    contiguous: bool
    notes: tuple[str, ...] = ()

    @staticmethod
    def from_json(d: dict) -> Query:
        d = dict(d)
        d["notes"] = tuple(d.get("notes", ()))
        return Query(**d)


@dataclass(frozen=True)
class RenderJob:
    track_id: str
    role: str
    source_path: str
    variant: str
    seed: int
    out_dir: str
    source_cache: str
    other_path: str | None = None


def _crc(s: str) -> int:
    return zlib.crc32(s.encode())


def query_paths(job: RenderJob) -> tuple[Path, Path]:
    v = BY_NAME[job.variant]
    d = Path(job.out_dir) / job.track_id
    return d / f"{v.slug}.flac", d / f"{v.slug}.json"


def source_excerpt(
    y: np.ndarray, sr: int, variant: Variant, track_id: str, seed: int
) -> tuple[np.ndarray, Truth]:
    """The audio a variant starts from: a seeded 60-s excerpt, or the track capped at 3 min."""
    if variant.source == "full":
        n = min(y.size, int(FULL_SOURCE_CAP_S * sr))
        return y[:n], Truth(ref_start_s=0.0, ref_end_s=n / sr)
    n = int(SOURCE_EXCERPT_S * sr)
    if y.size <= n:
        return y, Truth(ref_start_s=0.0, ref_end_s=y.size / sr)
    # Same excerpt for every variant of a track: one rng per (seed, track).
    start = int(np.random.default_rng([seed, _crc(track_id)]).integers(0, y.size - n + 1))
    return y[start : start + n], Truth(ref_start_s=start / sr, ref_end_s=(start + n) / sr)


def write_flac(path: Path, y: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.flac")
    sf.write(str(tmp), np.clip(y, -1.0, 1.0), sr, subtype="PCM_16")
    tmp.replace(path)


def render(job: RenderJob) -> Query:
    """Render one query (or read it from the cache)."""
    flac, meta = query_paths(job)
    if flac.exists() and meta.exists():
        return Query.from_json(json.loads(meta.read_text()))
    sr = SAMPLE_RATE_HZ
    variant = BY_NAME[job.variant]
    cache = Path(job.source_cache)
    y = load_mono(job.source_path, sr, cache)
    base, truth = source_excerpt(y, sr, variant, job.track_id, job.seed)
    other = load_mono(job.other_path, sr, cache) if job.other_path else None
    rng = np.random.default_rng([job.seed, _crc(job.track_id), _crc(job.variant)])
    out, truth, notes = apply(variant, base, sr, truth, rng, other=other)
    write_flac(flac, out, sr)
    q = Query(
        query_id=f"{job.track_id}|{variant.name}|s{job.seed}",
        track_id=job.track_id,
        role=job.role,
        variant=variant.name,
        family=variant.family,
        path=str(flac),
        duration_s=out.size / sr,
        notes=tuple(notes),
        **dataclasses.asdict(truth),
    )
    tmp = meta.with_name(f".{meta.stem}.{os.getpid()}.tmp.json")
    tmp.write_text(json.dumps(dataclasses.asdict(q)))
    tmp.replace(meta)
    return q


def _decode(args: tuple[str, int, str]) -> None:
    path, sr, cache = args
    load_mono(path, sr, Path(cache))


def render_all(
    jobs: list[RenderJob],
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> list[Query]:
    """Render `jobs` (sources are decoded first, once each), in `workers` processes."""
    sources = sorted(
        {(j.source_path, SAMPLE_RATE_HZ, j.source_cache) for j in jobs}
        | {(j.other_path, SAMPLE_RATE_HZ, j.source_cache) for j in jobs if j.other_path}
    )
    todo = [j for j in jobs if not all(p.exists() for p in query_paths(j))]
    results: dict[int, Query] = {}
    if workers <= 1 or len(todo) < 4:
        for s in sources:
            _decode(s)
        for i, j in enumerate(jobs):
            results[i] = render(j)
            if progress:
                progress(1)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_decode, sources))
            for i, q in enumerate(pool.map(render, jobs, chunksize=2)):
                results[i] = q
                if progress:
                    progress(1)
    return [results[i] for i in range(len(jobs))]


def make_jobs(
    tracks: Iterable[tuple[str, str, str]],
    variants: list[Variant],
    seed: int,
    cache: Path,
    prepend_pool: list[tuple[str, str]],
) -> list[RenderJob]:
    """One job per (track, variant). `tracks` holds (track_id, role, path) triples;
    `prepend_pool` the (track_id, path) of never-indexed tracks used for "prepend"."""
    out_dir = cache / f"queries-v{RENDER_VERSION}" / f"s{seed}"
    jobs = []
    for track_id, role, path in tracks:
        pool = [p for t, p in prepend_pool if t != track_id]
        for v in variants:
            other = None
            if any(s.op == "prepend" for s in v.steps):
                if not pool:
                    continue
                rng = np.random.default_rng([seed, _crc(track_id), _crc("prepend-source")])
                other = pool[int(rng.integers(0, len(pool)))]
            jobs.append(
                RenderJob(
                    track_id, role, path, v.name, seed, str(out_dir), str(cache / "sources"), other
                )
            )
    return jobs
