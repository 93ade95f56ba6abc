"""Run the benchmark end to end: corpus -> queries -> engine + peer -> results.jsonl -> report."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks import peer_chromaprint, stretchers
from benchmarks.alterations import (
    QUICK_VARIANTS,
    SMOKE_VARIANTS,
    select,
    verify_pedalboard_conventions,
)
from benchmarks.corpus import (
    CORPORA,
    Corpus,
    Track,
    corpus_cache,
    prepare_corpus,
    summary,
)
from benchmarks.distractors import generated_works
from benchmarks.engine import (
    DEFAULT_ENGINE,
    BuiltCatalog,
    build_catalog,
    load_engine,
    peak_rss_mb,
    screen,
    stats,
)
from benchmarks.queries import Query, make_jobs, render_all
from benchmarks.records import EngineResult, PeerResult, QueryResult, RunMeta, write_jsonl
from benchmarks.report import render as render_report
from benchmarks.scaling import Bar, run_scaling

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_CATALOG = REPO_ROOT / "fixtures" / "audio" / "catalog"
QUICK_CATALOG, QUICK_NEGATIVES = 12, 6
SMOKE_NEGATIVES, SMOKE_NEGATIVE_S = 3, 40.0


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on. ``mode`` is ``full``, ``quick`` or ``smoke``."""

    mode: str = "full"
    corpus: str = "tuning"  # benchmarks.corpus.CORPORA: "heldout" was never used for tuning
    out: Path = REPO_ROOT / "benchmarks" / "RESULTS.md"
    data: Path | None = None
    seed: int = 0
    engine: str = DEFAULT_ENGINE
    peer: bool = True
    workers: int = max(1, os.cpu_count() or 1)
    variants: tuple[str, ...] | None = None
    max_catalog: int | None = None
    max_negatives: int | None = None
    scale: bool = False
    scale_sizes: tuple[int, ...] = (100, 1000, 10000)
    scale_duration_s: float = 30.0
    scale_positives: int = 100
    scale_negatives: int = 300
    fixtures: Path = FIXTURE_CATALOG  # smoke mode: the catalog works
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def cache(self) -> Path:
        """The data cache: the held-out corpus, its queries and catalogs in their own folder."""
        return corpus_cache(self.corpus, self.data)

    @property
    def results_path(self) -> Path:
        return self.out.parent / "results.jsonl"


# --------------------------------------------------------------------------- small helpers


def machine_info() -> dict:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": ram_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "uncommitted"
    except (OSError, subprocess.SubprocessError):
        return "uncommitted"


def make_bar(console: Console) -> Bar:
    """A rich progress bar factory: ``with bar("what", total) as advance: advance(1)``."""

    @contextmanager
    def bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task(description, total=total)
            yield lambda k=1: progress.advance(task, k)

    return bar


def _subset(tracks: list[Track], k: int | None, seed: int, salt: int) -> list[Track]:
    if k is None or k >= len(tracks):
        return tracks
    idx = np.random.default_rng([seed, salt]).permutation(len(tracks))[:k]
    return [tracks[i] for i in sorted(idx)]


# --------------------------------------------------------------------------- sources


def smoke_corpus(cache: Path, seed: int, fixture_dir: Path = FIXTURE_CATALOG) -> tuple[Corpus, str]:
    """Fixture works (``*.ogg``, else ``*.flac``/``*.wav``) as catalog, generated negatives."""
    import soundfile as sf

    fixtures = sorted(fixture_dir.glob("*.ogg")) or sorted(
        p for p in fixture_dir.glob("*") if p.suffix.lower() in (".flac", ".wav")
    )
    if not fixtures:
        raise FileNotFoundError(f"no fixture audio in {fixture_dir}")
    negs, desc = generated_works(
        cache / "smoke-negatives",
        range(10_000 + seed, 10_000 + seed + SMOKE_NEGATIVES),
        SMOKE_NEGATIVE_S,
    )
    tracks = []
    for role, paths in (("catalog", fixtures), ("negative", negs)):
        for p in paths:
            info = sf.info(str(p))
            tracks.append(
                Track(
                    f"{role[:3]}__{p.stem}",
                    "fixtures" if role == "catalog" else "generated",
                    str(p),
                    info.duration,
                    info.samplerate,
                    info.channels,
                    "",
                    p.stem,
                    role,
                )
            )
    return Corpus(tuple(tracks), seed), desc


def chromaprint_overlaps(cache: Path, workers: int):
    """Callable for :func:`prepare_corpus`: track pairs that share audio, by Chromaprint."""

    def find(tracks: list[Track]) -> list[tuple[str, str]]:
        with ThreadPoolExecutor(workers) as pool:
            fps = list(
                pool.map(
                    lambda t: peer_chromaprint.cached_fingerprint(t.path, cache / "chromaprint"),
                    tracks,
                )
            )
        return peer_chromaprint.overlapping_pairs(
            {t.track_id: f for t, f in zip(tracks, fps, strict=True)}
        )

    return find


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Sources:
    corpus: Corpus
    description: str
    catalog: list[Track]  # indexed in this run
    negatives: list[Track]  # never indexed in this run


def load_sources(cfg: RunConfig, cache: Path, peer_on: bool, console: Console) -> Sources:
    """The corpus (or the smoke fixtures) and this run's subset of it."""
    if cfg.mode == "smoke":
        corpus, neg_desc = smoke_corpus(cache, cfg.seed, cfg.fixtures)
        desc = (
            f"Smoke run: {len(corpus.catalog)} bundled fixture works "
            f"(`fixtures/audio/catalog/*.ogg`) as catalog; {len(corpus.negatives)} "
            f"generated works ({neg_desc}) as negatives."
        )
    else:
        corpus = prepare_corpus(
            cache,
            cfg.seed,
            overlap_pairs=chromaprint_overlaps(cache, cfg.workers) if peer_on else None,
            log=console.print,
            name=cfg.corpus,
        )
        packages = ", ".join(CORPORA[cfg.corpus])
        held_out = " (held out: never used to build or tune the detector)"
        desc = (
            f"Debian game-music packages{held_out if cfg.corpus == 'heldout' else ''}: "
            f"{packages}, unpacked in the cache (`{cache}`): music files >= 20 s, "
            f"{'only in folders named `music`, ' if cfg.corpus == 'heldout' else ''}"
            f"sound-effect folders skipped, byte-identical copies removed; {len(corpus.tracks)} "
            f"tracks, {sum(t.duration_s for t in corpus.tracks) / 3600:.1f} h. Seeded split "
            f"(seed {corpus.seed}, by package, related tracks kept together): "
            f"{len(corpus.catalog)} catalog works, {len(corpus.negatives)} negatives."
        )
    quick = cfg.mode == "quick"
    k_cat = cfg.max_catalog or (QUICK_CATALOG if quick else None)
    k_neg = cfg.max_negatives or (QUICK_NEGATIVES if quick else None)
    return Sources(
        corpus,
        desc,
        _subset(corpus.catalog, k_cat, cfg.seed, 1),
        _subset(corpus.negatives, k_neg, cfg.seed, 2),
    )


def variant_names(cfg: RunConfig) -> list[str] | None:
    if cfg.variants:
        return list(cfg.variants)
    return {"quick": QUICK_VARIANTS, "smoke": SMOKE_VARIANTS}.get(cfg.mode)


def check_stretchers(cfg: RunConfig) -> dict[str, float]:
    """Fail before any rendering when a selected variant needs a stretcher that is missing;
    otherwise measure the conventions of every installed one."""
    needed = {v.stretcher for v in select(variant_names(cfg))} & set(stretchers.STRETCHERS)
    missing = [stretchers.missing_message(s) for s in sorted(needed) if not stretchers.available(s)]
    if missing:
        raise SystemExit("cannot render the variants: " + "; ".join(missing))
    return stretchers.measure_conventions() if needed else {}


def render_queries(cfg: RunConfig, cache: Path, src: Sources, bar: Bar) -> list[Query]:
    variants = select(variant_names(cfg))
    jobs = make_jobs(
        [(t.track_id, "positive", t.path) for t in src.catalog]
        + [(t.track_id, "negative", t.path) for t in src.negatives],
        variants,
        cfg.seed,
        cache,
        [(t.track_id, t.path) for t in src.negatives],
    )
    with bar(f"rendering {len(jobs)} queries ({len(variants)} variants)", len(jobs)) as advance:
        return render_all(jobs, workers=cfg.workers, progress=advance)


def screen_all(built: BuiltCatalog, queries: list[Query], bar: Bar) -> list[EngineResult]:
    out = []
    with bar(f"screening {len(queries)} queries", len(queries)) as advance:
        for q in queries:
            out.append(screen(built, q))
            advance(1)
    return out


def performance(built: BuiltCatalog) -> dict:
    """Index speed, size and peak memory, measured right after screening."""
    return {
        **stats(built),
        "fingerprint_x_realtime": built.audio_s / built.add_cpu_s if built.add_cpu_s else math.nan,
        "add_cpu_s": built.add_cpu_s,
        "add_wall_s": built.add_wall_s,
        "audio_hours": built.audio_s / 3600,
        "peak_rss_mb": peak_rss_mb(),
    }


def prepare(cfg: RunConfig, console: Console | None = None) -> list[Query]:
    """Everything that does not need the engine: corpus, rendered queries, Chromaprint
    fingerprints. All cached, so a later ``run`` only indexes and screens."""
    console = console or Console()
    bar = make_bar(console)
    cache = cfg.cache
    cache.mkdir(parents=True, exist_ok=True)
    peer_on = cfg.peer and peer_chromaprint.available()
    src = load_sources(cfg, cache, peer_on, console)
    console.print(src.description)
    queries = render_queries(cfg, cache, src, bar)
    if peer_on:
        paths = [t.path for t in src.catalog] + [q.path for q in queries]
        fingerprint_files(paths, cache / "chromaprint", cfg.workers, bar)
    return queries


def run(cfg: RunConfig, console: Console | None = None) -> Path:
    """Run the benchmark described by `cfg`; returns the report path."""
    console = console or Console()
    bar = make_bar(console)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> None:
        timings[name] = time.perf_counter() - t0

    cache = cfg.cache
    cache.mkdir(parents=True, exist_ok=True)
    peer_on = cfg.peer and peer_chromaprint.available()
    notes = list(cfg.notes)
    if cfg.peer and not peer_on:
        notes.append("fpcalc not found: Chromaprint column is n/a.")
    engine_cls = load_engine(cfg.engine)  # fail early, before minutes of rendering
    commit = git_commit()  # the engine code this run measures
    load_start = os.getloadavg()
    conventions = verify_pedalboard_conventions() | check_stretchers(cfg)
    console.print(f"stretcher conventions: {conventions}")

    t0 = time.perf_counter()
    src = load_sources(cfg, cache, peer_on, console)
    lap("corpus", t0)
    console.print(src.description)
    console.print(f"this run: {len(src.catalog)} catalog works, {len(src.negatives)} negatives")

    t0 = time.perf_counter()
    queries = render_queries(cfg, cache, src, bar)
    lap("render", t0)

    t0 = time.perf_counter()
    items = [(t.track_id, Path(t.path), t.duration_s) for t in src.catalog]
    with bar(f"indexing {len(items)} catalog works", len(items)) as advance:
        built = build_catalog(engine_cls, cache / f"catalog-{cfg.mode}", items, progress=advance)
    lap("index", t0)
    if built.failed:
        notes.append(f"{len(built.failed)} catalog files failed to index: {built.failed[:3]}")
    t0 = time.perf_counter()
    engine_results = screen_all(built, queries, bar)
    lap("screen", t0)
    perf = performance(built)
    load_after = os.getloadavg()
    built.catalog.close()

    peer_results: list[PeerResult | None] = [None] * len(queries)
    peer_meta: dict = {}
    if peer_on:
        t0 = time.perf_counter()
        peer_results, peer_meta = run_peer(src.catalog, queries, cache, cfg.workers, bar)
        lap("chromaprint", t0)

    results = [
        QueryResult(q, e, p) for q, e, p in zip(queries, engine_results, peer_results, strict=True)
    ]
    timings["total"] = time.perf_counter() - t_start
    meta = RunMeta(
        mode=cfg.mode,
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        commit=commit,
        machine={
            **machine_info(),
            "loadavg_start": load_start,
            "loadavg_after_screening": load_after,
        },
        seed=cfg.seed,
        engine=cfg.engine,
        corpus={
            "name": cfg.corpus,
            "description": src.description,
            "packages": summary(src.corpus),
            "catalog_used": len(src.catalog),
            "negatives_used": len(src.negatives),
            "notes": list(src.corpus.notes),
            "catalog_tracks": [t.track_id for t in src.catalog],
            "negative_tracks": [t.track_id for t in src.negatives],
        },
        conventions=conventions,
        performance=perf,
        peer=peer_meta,
        notes=notes,
        timings_s=timings,
    )
    write_jsonl(cfg.results_path, meta, results)
    render_report(meta, results, cfg.out)
    console.print(f"wrote {cfg.out} and {cfg.results_path}")

    # Scaling is slow and optional: the main results are already on disk if it fails.
    if cfg.scale and cfg.mode != "smoke":
        t0 = time.perf_counter()
        try:
            meta.scaling, meta.scaling_notes = run_scaling(
                engine_cls,
                cache / "catalog-scaling",
                items,
                [q for q in queries if q.role == "positive"],
                [q for q in queries if q.role == "negative"],
                list(cfg.scale_sizes),
                cfg.scale_duration_s,
                bar,
                max_positives=cfg.scale_positives,
                max_negatives=cfg.scale_negatives,
                seed=cfg.seed,
                workers=cfg.workers,
            )
        except Exception as e:  # noqa: BLE001 - report the failure instead of losing the run
            meta.scaling_notes = [f"scaling run failed: {type(e).__name__}: {e}"]
            console.print_exception()
        lap("scaling", t0)
        timings["total"] = time.perf_counter() - t_start
        meta.machine["loadavg_end"] = os.getloadavg()
        write_jsonl(cfg.results_path, meta, results)
        render_report(meta, results, cfg.out)
    console.print(f"wrote {cfg.out} and {cfg.results_path} in {timings['total']:.0f} s")
    return cfg.out


def fingerprint_files(
    paths: list[str], fp_cache: Path, workers: int, bar: Bar
) -> dict[str, np.ndarray | None]:
    """Chromaprint fingerprints of `paths` (cached); None where fpcalc failed."""
    with bar(f"Chromaprint: fingerprinting {len(paths)} files", len(paths)) as advance:

        def fingerprint(p: str) -> tuple[str, np.ndarray | None]:
            try:
                return p, peer_chromaprint.cached_fingerprint(p, fp_cache)
            except Exception:  # noqa: BLE001 - one bad file is one failed query
                return p, None
            finally:
                advance(1)

        with ThreadPoolExecutor(workers) as pool:
            return dict(pool.map(fingerprint, paths))


def run_peer(
    catalog: list[Track], queries: list[Query], cache: Path, workers: int, bar: Bar
) -> tuple[list[PeerResult], dict]:
    """Chromaprint fingerprints (cached) and AcoustID-style search for every query."""
    paths = [t.path for t in catalog] + [q.path for q in queries]
    fps = fingerprint_files(paths, cache / "chromaprint", workers, bar)
    index = peer_chromaprint.ChromaprintIndex(
        {t.track_id: fps[t.path] for t in catalog if fps.get(t.path) is not None}
    )
    out: list[PeerResult | None] = [None] * len(queries)
    times = []
    # Longest-first keeps the FFT size (and the cached reference spectra) mostly unchanged.
    sizes = [0 if (fp := fps.get(q.path)) is None else fp.size for q in queries]
    order = sorted(range(len(queries)), key=lambda i: -sizes[i])
    with bar(f"Chromaprint: matching {len(queries)} queries", len(queries)) as advance:
        for i in order:
            fp = fps.get(queries[i].path)
            if fp is None:
                out[i] = PeerResult(None, None, error="fpcalc failed")
            else:
                t0 = time.perf_counter()
                top = index.search(fp, top=2)
                times.append(time.perf_counter() - t0)
                out[i] = PeerResult(
                    top[0].work if top else None,
                    top[0].score if top else None,
                    top[1].score if len(top) > 1 else None,
                    times[-1],
                )
            advance(1)
    meta = {
        "min_overlap_items": index.min_overlap,
        "search_p50_ms": float(np.percentile(times, 50) * 1000) if times else None,
        "catalog_fingerprints": len(index.names),
    }
    return out, meta


def rerender(results_path: Path, out: Path) -> Path:
    """Re-render the report from a results.jsonl without rerunning anything."""
    from benchmarks.records import read_jsonl

    meta, results = read_jsonl(results_path)
    render_report(meta, results, out, keep_notes=True)
    return out
