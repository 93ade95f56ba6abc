"""The system under test, reached only through the audiodup Catalog API.

Any class with ``open(path, create=True)``, ``add_paths``, ``screen``, ``stats`` and ``close`` can
be benchmarked (``--engine module:Class``); the default is ``audiodup.catalog:Catalog``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import resource
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.queries import Query
from benchmarks.records import EngineResult, MatchRecord

DEFAULT_ENGINE = "audiodup.catalog:Catalog"
KEEP_MATCHES = 3


def load_engine(spec: str = DEFAULT_ENGINE) -> Any:
    """Import ``module:Class``; raises ImportError/AttributeError if it does not exist."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "Catalog")


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB: ``VmHWM``, which starts again at ``exec``
    (``ru_maxrss`` of a process started after a large one carries the parent's peak over the
    fork: a screening process after a 5.5 GB compaction); ``ru_maxrss`` elsewhere than Linux."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _key(path: str | Path) -> str:
    return os.path.realpath(str(path))


@dataclass
class BuiltCatalog:
    catalog: Any
    path_to_track: dict[str, str]  # realpath of indexed file -> track_id
    work_to_track: dict[int, str]
    add_cpu_s: float
    add_wall_s: float
    audio_s: float
    n_added: int
    failed: list[tuple[str, str]]

    def track_of(self, match: Any) -> str | None:
        wid = getattr(match, "work_id", None)
        if wid is not None and wid in self.work_to_track:
            return self.work_to_track[wid]
        p = getattr(match, "path", None)
        return self.path_to_track.get(_key(p)) if p else None


def build_catalog(
    engine_cls: Any,
    directory: Path,
    items: Sequence[tuple[str, Path, float]],
    fresh: bool = True,
    batch: int = 16,
    progress: Callable[[int], None] | None = None,
    existing: BuiltCatalog | None = None,
) -> BuiltCatalog:
    """Index `items` ``(track_id, path, duration_s)``; time CPU and wall around add_paths.

    CPU time is ``time.process_time`` (all threads of this process), summed over batches.
    """
    if existing is None:
        if fresh and directory.exists():
            shutil.rmtree(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        built = BuiltCatalog(engine_cls.open(directory, create=True), {}, {}, 0.0, 0.0, 0.0, 0, [])
    else:
        built = existing
    by_path = {_key(p): (tid, d) for tid, p, d in items}
    paths = [Path(p) for _, p, _ in items]
    for i in range(0, len(paths), batch):
        chunk = paths[i : i + batch]
        c0, w0 = time.process_time(), time.perf_counter()
        results = built.catalog.add_paths(chunk, workers=1)
        built.add_cpu_s += time.process_time() - c0
        built.add_wall_s += time.perf_counter() - w0
        for res in results:
            tid, dur = by_path.get(_key(res.path), (None, 0.0))
            if res.status in ("added", "present") and tid is not None:
                built.path_to_track[_key(res.path)] = tid
                if res.work_id is not None:
                    built.work_to_track[int(res.work_id)] = tid
                if res.status == "added":
                    built.audio_s += dur
                    built.n_added += 1
            else:
                built.failed.append((str(res.path), str(res.error)))
        if progress:
            progress(len(chunk))
    return built


def screen(built: BuiltCatalog, query: Query) -> EngineResult:
    """Screen one query; exceptions become an ``error`` result (counted as a miss)."""
    w0 = time.perf_counter()
    try:
        v = built.catalog.screen(Path(query.path))
    except Exception as e:  # noqa: BLE001 - a crash on one query must not stop the benchmark
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        return EngineResult("error", error=tb, total_s=time.perf_counter() - w0)
    total = time.perf_counter() - w0
    matches = tuple(
        MatchRecord.from_engine(m, built.track_of(m)) for m in list(v.matches)[:KEEP_MATCHES]
    )
    return EngineResult(
        verdict=str(v.verdict) if not getattr(v, "error", None) else "error",
        matches=matches,
        error=getattr(v, "error", None),
        fingerprint_s=_float(getattr(v, "fingerprint_s", None)),
        search_s=_float(getattr(v, "search_s", None)),
        total_s=total,
    )


def _float(x: Any) -> float | None:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


STAT_FIELDS = (
    "works",
    "hours",
    "index_bytes",
    "catalog_bytes",
    "bytes_per_work",
    "bytes_per_hour",
    "hash_entries",
    "chroma_vectors",
    "shards",
)


def stats(built: BuiltCatalog) -> dict[str, float]:
    """``Catalog.stats()`` as a dict; bytes per hour derived if the engine does not say."""
    s = built.catalog.stats()
    out = {k: v for k in STAT_FIELDS if (v := _float(getattr(s, k, None))) is not None}
    size = out.get("catalog_bytes", out.get("index_bytes"))
    if "bytes_per_hour" not in out and size and out.get("hours"):
        out["bytes_per_hour"] = size / out["hours"]
    return out
