"""Rescan cost at three catalog sizes, on real music with planted altered copies.

``python -m benchmarks.rescan_scaling [--sizes 50,100,200] [--workers 1] [--out FILE]``

Each catalog holds real tracks of the benchmark corpus (Debian game music, see
:mod:`benchmarks.corpus`; ``python -m benchmarks prepare`` fetches it) and altered copies of a
tenth of them, two copies per source, rendered with pedalboard (Rubber Band) and scipy, added as
separate works with metadata (originals uploaded in 2015, copies in 2024). Without the corpus,
synthetic works (:func:`audiodup.synth.synthesize_work`) stand in. The catalogs grow into each
other (the 100-work catalog contains the 50-work one), every rescan starts from no stored
results, and the report checks that every planted cluster is found and no pair joins unrelated
works. Tracks that the corpus already groups together (variants of one piece) may match each
other; such pairs are counted as known relations, not as false pairs.

Prints the figures and writes them as a Markdown section to ``benchmarks/RESCAN.md``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Annotated

import numpy as np
import pedalboard
import soundfile as sf
import soxr
import typer
from scipy.signal import correlate, resample_poly

from audiodup import Catalog
from audiodup.metadata import metadata_for_paths, read_metadata
from audiodup.rescan import RESULTS_FILE, load_report, run_rescan, work_query
from audiodup.synth import synthesize_work
from benchmarks.corpus import Corpus, cache_dir, load_mono
from benchmarks.runner import git_commit

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "RESCAN.md"
RENDER_SR = 22050
COPIES_PER_SOURCE = 2


@dataclass(frozen=True)
class Alteration:
    name: str
    tempo_ratio: float  # copy tempo / original tempo
    pitch_shift_semitones: float
    resample: bool = False  # speed change: tempo and pitch together
    excerpt_s: float | None = None  # keep only this much from the middle


ALTERATIONS = (
    Alteration("slowed_0.85", 0.85, 0.0),
    Alteration("pitch_+2", 1.0, 2.0),
    Alteration("nightcore_1.15", 1.15, 12 * math.log2(1.15), resample=True),
    Alteration("stretch_1.2_pitch_-1", 1.2, -1.0),
    Alteration("excerpt_40s_slowed_0.9", 0.9, 0.0, excerpt_s=40.0),
    Alteration("speed_0.92", 0.92, 12 * math.log2(0.92), resample=True),
)


@dataclass(frozen=True)
class Source:
    key: str  # stable name
    path: Path
    group: str  # corpus group: tracks in one group may share audio
    duration_s: float


def render(y: np.ndarray, alteration: Alteration) -> np.ndarray:
    if alteration.excerpt_s is not None and len(y) > alteration.excerpt_s * RENDER_SR:
        n = int(alteration.excerpt_s * RENDER_SR)
        start = (len(y) - n) // 2
        y = y[start : start + n]
    if alteration.resample:
        ratio = Fraction(alteration.tempo_ratio).limit_denominator(100)
        out = resample_poly(y, ratio.denominator, ratio.numerator)
    else:
        out = pedalboard.time_stretch(
            y[None, :].astype(np.float32),
            RENDER_SR,
            stretch_factor=alteration.tempo_ratio,
            pitch_shift_in_semitones=alteration.pitch_shift_semitones,
        )[0]
    peak = float(np.max(np.abs(out))) or 1.0
    return (out * min(1.0, 0.98 / peak)).astype(np.float32)


def write_ogg(path: Path, y: np.ndarray) -> None:
    """Ogg Vorbis in blocks: libsndfile crashes on one large Vorbis write (minutes of audio)."""
    with sf.SoundFile(path, "w", RENDER_SR, 1, format="OGG", subtype="VORBIS") as f:
        for start in range(0, len(y), 1 << 15):
            f.write(y[start : start + (1 << 15)])


def corpus_sources(data: Path) -> list[Source] | None:
    manifest = data / "corpus.json"
    if not manifest.exists():
        return None
    corpus = Corpus.from_json(json.loads(manifest.read_text()))
    tracks = [t for t in corpus.tracks if Path(t.path).exists()]
    order = np.random.default_rng(0).permutation(len(tracks))
    return [
        Source(tracks[i].track_id, Path(tracks[i].path), tracks[i].group, tracks[i].duration_s)
        for i in order
    ]


def synthetic_sources(folder: Path, count: int) -> list[Source]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in range(1000, 1000 + count):
        path = folder / f"synth_{seed}.ogg"
        if not path.exists():
            write_ogg(path, synthesize_work(seed, 60.0, RENDER_SR))
        out.append(Source(f"synth_{seed}", path, f"synth:{seed}", 60.0))
    return out


def plant(source: Source, alteration: Alteration, folder: Path, data: Path) -> Path:
    """The altered copy of ``source`` (rendered once, cached as Ogg Vorbis)."""
    out = folder / f"{source.key}__{alteration.name}.ogg"
    if not out.exists():
        y = load_mono(source.path, RENDER_SR, cache=data / "rescan-decoded")
        tmp = out.with_suffix(".tmp.ogg")
        write_ogg(tmp, render(y, alteration))
        tmp.replace(out)
    return out


def build_plan(sources: list[Source], size: int) -> tuple[list[Source], list[int]]:
    """The originals of a catalog of ``size`` works and the indexes of planted sources."""
    n_sources = max(1, size // 10)
    n_originals = size - n_sources * COPIES_PER_SOURCE
    if n_originals > len(sources):
        raise typer.BadParameter(f"{size} works need {n_originals} source tracks")
    return sources[:n_originals], list(range(n_sources))


def add_works(catalog: Catalog, rows: list[dict], csv_path: Path, workers: int) -> None:
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["path", "title", "uploader", "uploaded_at", "group"])
        writer.writeheader()
        writer.writerows(rows)
    paths = [Path(r["path"]) for r in rows]
    matched, _ = metadata_for_paths(read_metadata(csv_path), paths)
    results = catalog.add_paths(paths, workers=workers, metadata=matched)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise RuntimeError(f"could not add {failed[:3]}")


def profile_sample(catalog: Catalog, sample: int = 12) -> tuple[float, float]:
    """Mean seconds per work spent decoding + fingerprinting, and searching, over an evenly
    spaced sample of works (what one rescan task does, timed in parts)."""
    works = catalog.works()
    picked = works[:: max(1, len(works) // sample)][:sample]
    decode_s = search_s = 0.0
    for work in picked:
        start = time.perf_counter()
        query = work_query(catalog, work.work_id)
        middle = time.perf_counter()
        catalog.match_fingerprint(
            query.fingerprint, query.view, without=(work.work_id,), every_look=True
        )
        decode_s += middle - start
        search_s += time.perf_counter() - middle
    return decode_s / len(picked), search_s / len(picked)


def waveform_correlation(pair) -> float | None:
    """An independent check of a pair nobody planted: the normalised cross-correlation of the
    two waveforms over the aligned stretch (best lag within 0.5 s). Only for pairs at the same
    tempo and pitch, where identical audio correlates near 1 and different audio near 0."""
    e = pair.evidence
    if abs(math.log(e.tempo_ratio)) > 0.01 or abs(e.pitch_shift_semitones) > 0.1:
        return None
    length = min(20.0, e.query_end_s - e.query_start_s - 1.0)
    if length < 3.0:
        return None
    rate = 8000

    def segment(path: str, start_s: float, seconds: float) -> np.ndarray:
        y, sr = sf.read(path, dtype="float32", always_2d=True)
        y = soxr.resample(y.mean(axis=1), sr, rate)
        first = max(0, int(start_s * rate))
        return y[first : first + int(seconds * rate)]

    a = segment(pair.query_path, e.query_start_s + 0.5, length)
    b = segment(e.path, e.ref_start_s, length + 1.0)
    if len(a) == 0 or len(b) <= len(a):
        return None
    lags = correlate(b, a, "valid", method="fft")
    k = int(np.argmax(np.abs(lags)))
    part = b[k : k + len(a)]
    return float(abs(np.dot(a, part)) / (np.linalg.norm(a) * np.linalg.norm(part) + 1e-12))


def evaluate(
    report, planted: list[set[str]], group_of: dict[str, str], tempo_of: dict[str, float]
) -> dict:
    """Planted clusters found, every pair classified as planted, known relation or false
    (works are named by their paths), and how far the planted pairs' tempo ratios are from the
    rendered ones (``tempo_of``: each planted work's tempo, its original's 1.0)."""
    path_of = {m.work_id: m.path for c in report.clusters for m in c.members}
    clusters = [{path_of[w] for w in c.work_ids} for c in report.clusters]
    found_exact = sum(p in clusters for p in planted)
    found_whole = sum(any(p <= c for c in clusters) for p in planted)
    cluster_of = {name: i for i, members in enumerate(planted) for name in members}
    counts = {"planted": 0, "known": 0, "verified": 0, "false": 0}
    false_pairs, verified, tempo_errors = [], [], []
    for pair in report.pairs:
        a, b = pair.query_path, pair.evidence.path
        if a in cluster_of and cluster_of.get(a) == cluster_of.get(b):
            counts["planted"] += 1
            rendered = tempo_of[a] / tempo_of[b]  # query tempo / reference tempo
            tempo_errors.append(abs(math.log(pair.evidence.tempo_ratio / rendered)))
        elif group_of.get(a) is not None and group_of.get(a) == group_of.get(b):
            counts["known"] += 1
        else:
            correlation = waveform_correlation(pair)
            named = (Path(a).name, Path(b).name, round(pair.evidence.score, 1), correlation)
            if correlation is not None and correlation >= 0.5:
                counts["verified"] += 1
                verified.append(named)
            else:
                counts["false"] += 1
                false_pairs.append(named)
    expected_pairs = sum(len(p) * (len(p) - 1) // 2 for p in planted)
    return {
        "planted_clusters": len(planted),
        "found_exact": found_exact,
        "found_whole": found_whole,
        "expected_pairs": expected_pairs,
        **{f"{k}_pairs": v for k, v in counts.items()},
        "suspect_pairs": len(report.suspect_pairs),
        "false_examples": false_pairs[:5],
        "verified_examples": verified[:5],
        "clusters": len(report.clusters),
        "tempo_error_median": float(np.median(tempo_errors)) if tempo_errors else math.nan,
        "tempo_error_max": max(tempo_errors, default=math.nan),
    }


def main(
    sizes: Annotated[str, typer.Option(help="Catalog sizes, comma-separated.")] = "50,100,200",
    workers: Annotated[int, typer.Option(help="Rescan processes.")] = 1,
    data: Annotated[Path | None, typer.Option(help="Benchmark cache directory.")] = None,
    out: Annotated[Path, typer.Option(help="Markdown section to write.")] = DEFAULT_OUT,
    html: Annotated[
        Path | None, typer.Option(help="Also write the largest catalog's HTML report here.")
    ] = None,
) -> None:
    """Build catalogs of growing size with planted copies, rescan each, report the cost."""
    size_list = sorted({int(s) for s in sizes.split(",")})
    data = cache_dir(data)
    work_dir = data / "rescan-scaling"
    planted_dir = work_dir / "planted"
    planted_dir.mkdir(parents=True, exist_ok=True)
    sources = corpus_sources(data)
    source_kind = "real tracks of the benchmark corpus (Debian game music)"
    largest = size_list[-1]
    needed = largest - max(1, largest // 10) * COPIES_PER_SOURCE  # originals of the largest
    if sources is None or len(sources) < needed:
        sources = synthetic_sources(work_dir / "synthetic", size_list[-1])
        source_kind = "synthetic works (no benchmark corpus found)"
    rows_out = []
    previous: Path | None = None
    added: set[str] = set()
    group_of: dict[str, str] = {}
    tempo_of: dict[str, float] = {}
    for size in size_list:
        originals, planted_idx = build_plan(sources, size)
        root = work_dir / f"catalog-{size}"
        shutil.rmtree(root, ignore_errors=True)
        if previous is not None:
            shutil.copytree(previous, root)
            (root / RESULTS_FILE).unlink(missing_ok=True)
        rows, planted = [], []
        for source in originals:
            group_of[str(source.path)] = source.group
            if str(source.path) not in added:
                rows.append(
                    {
                        "path": str(source.path),
                        "title": source.key,
                        "uploader": source.group.split(":")[0],
                        "uploaded_at": "2015-06-01",
                        "group": source.group,
                    }
                )
        for i in planted_idx:
            source = sources[i]
            members = {str(source.path)}
            tempo_of[str(source.path)] = 1.0
            for k in range(COPIES_PER_SOURCE):
                alteration = ALTERATIONS[(i * COPIES_PER_SOURCE + k) % len(ALTERATIONS)]
                copy = plant(source, alteration, planted_dir, data)
                members.add(str(copy))
                group_of[str(copy)] = source.group
                tempo_of[str(copy)] = alteration.tempo_ratio
                if str(copy) not in added:
                    rows.append(
                        {
                            "path": str(copy),
                            "title": f"{source.key} ({alteration.name})",
                            "uploader": f"ring-{i % 3}",
                            "uploaded_at": f"2024-0{1 + k}-01",
                            "group": source.group,
                        }
                    )
            planted.append(members)
        with Catalog.open(root) as catalog:
            start = time.perf_counter()
            add_works(catalog, rows, work_dir / f"metadata-{size}.csv", workers)
            add_s = time.perf_counter() - start
            added.update(r["path"] for r in rows)
            works = catalog.works()
            hours = sum(w.duration_s for w in works) / 3600
            print(f"{size} works ({hours:.2f} h): added {len(rows)} in {add_s:.0f} s; rescanning")
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            cpu_start = time.process_time()
            summary = run_rescan(catalog, workers=workers)
            rescan_s = time.perf_counter() - start
            load_after = os.getloadavg()[0]
            cpu_s = time.process_time() - cpu_start
            report = load_report(catalog)
            decode_s, search_s = profile_sample(catalog)
            if html is not None and size == size_list[-1]:
                from audiodup.report import write_rescan_report

                write_rescan_report(report, html, catalog)
        result = evaluate(report, planted, group_of, tempo_of)
        row = {
            "works": len(works),
            "hours": hours,
            "screened": summary.screened,
            "rescan_s": rescan_s,
            "ms_per_work": 1000 * rescan_s / max(len(works), 1),
            "s_per_audio_hour": rescan_s / max(hours, 1e-9),
            "main_cpu_s": cpu_s,
            "cpu_ms_per_work": 1000 * cpu_s / max(len(works), 1),
            "load_before": load_before,
            "load_after": load_after,
            "decode_ms": 1000 * decode_s,
            "search_ms": 1000 * search_s,
            **result,
        }
        rows_out.append(row)
        print(
            f"  rescan {rescan_s:.1f} s, CPU {cpu_s:.1f} s ({row['ms_per_work']:.0f} ms/work, "
            f"{row['s_per_audio_hour']:.1f} s per audio hour; sample: decode+fingerprint "
            f"{row['decode_ms']:.0f} ms, search {row['search_ms']:.0f} ms per work); "
            "planted clusters found "
            f"{result['found_exact']}/{result['planted_clusters']} exactly, pairs: "
            f"{result['planted_pairs']}/{result['expected_pairs']} planted, "
            f"{result['known_pairs']} known relations, {result['verified_pairs']} verified "
            f"shared audio, {result['false_pairs']} false, "
            f"{result['suspect_pairs']} suspect; planted pairs' tempo error median "
            f"{100 * result['tempo_error_median']:.2f} %, "
            f"max {100 * result['tempo_error_max']:.2f} %"
        )
        previous = root
    text = markdown(rows_out, workers, source_kind)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")


def markdown(rows: list[dict], workers: int, source_kind: str) -> str:
    first = rows[0]
    loads = [r["load_before"] for r in rows] + [r["load_after"] for r in rows]
    lines = [
        "## Rescan cost by catalog size",
        "",
        f"`python -m benchmarks.rescan_scaling` on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}, Python {sys.version.split()[0]}), "
        f"`--workers {workers}`, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit "
        f"{git_commit()}. Catalogs of {source_kind}, plus two altered copies of every "
        "tenth track (time-stretch, pitch shift, speed change, excerpt; Rubber Band via "
        "pedalboard and scipy resampling) added as separate works. Each rescan re-decodes "
        "every work and screens it against the rest of the catalog (the work left out, with "
        "the looks an upload gets), from no stored results.",
        "",
        "| works | audio h | rescan s | ms / work | CPU ms / work | s / audio h | "
        "per work vs. smallest (wall / CPU) | "
        "decode + fingerprint ms / work | search ms / work | "
        "planted clusters found | planted pairs | known-related pairs | "
        "unlisted shared audio (verified) | false pairs | suspect pairs | "
        "planted pairs' tempo error, median / max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['works']} | {r['hours']:.2f} | {r['rescan_s']:.1f} | {r['ms_per_work']:.0f} | "
            f"{r['cpu_ms_per_work']:.0f} | {r['s_per_audio_hour']:.1f} | "
            f"x{r['ms_per_work'] / first['ms_per_work']:.2f} / "
            f"x{r['cpu_ms_per_work'] / first['cpu_ms_per_work']:.2f} | "
            f"{r['decode_ms']:.0f} | {r['search_ms']:.0f} | "
            f"{r['found_exact']}/{r['planted_clusters']} | "
            f"{r['planted_pairs']}/{r['expected_pairs']} | {r['known_pairs']} | "
            f"{r['verified_pairs']} | {r['false_pairs']} | {r['suspect_pairs']} | "
            f"{100 * r['tempo_error_median']:.2f} / {100 * r['tempo_error_max']:.2f} % |"
        )
    last = rows[-1]
    growth = (last["rescan_s"] / first["rescan_s"]) / (last["works"] / first["works"])
    search_growth = last["search_ms"] / max(first["search_ms"], 1e-9)
    lines += [
        "",
        f"From {first['works']} to {last['works']} works the total time grew "
        f"x{last['rescan_s'] / first['rescan_s']:.2f} for x{last['works'] / first['works']:.1f} "
        f"works (x{growth:.2f} per work; per audio hour "
        f"x{last['s_per_audio_hour'] / first['s_per_audio_hour']:.2f}); the CPU time of the "
        f"rescan (one process with `--workers 1`, less sensitive to other jobs than wall-clock "
        f"time) grew x{last['main_cpu_s'] / first['main_cpu_s']:.2f}. The two middle columns "
        "time the parts of one rescan task on a sample of 12 works in the main process: "
        "re-decoding and fingerprinting the work, which does not depend on the catalog, and "
        f"searching the catalog, which grew x{search_growth:.2f} here.",
        "",
        "*known-related pairs*: tracks the corpus already groups together (Chromaprint found "
        "them sharing audio when the corpus was prepared); *unlisted shared audio*: duplicate "
        "pairs of tracks nobody planted or grouped whose waveforms, aligned as the evidence "
        "says, correlate at 0.5 or more (an independent check: different music correlates "
        "near 0), i.e. real shared audio in the corpus; *false pairs*: every other duplicate "
        "pair. *planted pairs* counts pairs inside planted clusters found directly; a cluster "
        "is found when its works are connected, so a pair missed while both works reach the "
        "cluster through the third leaves the cluster exact; its *tempo error* is "
        "|log(reported / rendered tempo ratio)| in % (full-length copies: a slope a little off "
        "drifts a long line apart). Times are wall-clock; the "
        f"1-minute load average on the machine was {min(loads):.1f}-{max(loads):.1f} during "
        "the rescans (other jobs shared the cores), so they carry that noise.",
    ]
    for key, title in (
        ("verified_examples", "Unlisted shared audio"),
        ("false_examples", "False pairs"),
    ):
        examples = [x for r in rows for x in r[key]]
        if examples:
            lines.append("")
            lines.append(
                f"{title}: "
                + "; ".join(
                    f"{a} ~ {b} (score {s}, waveform correlation "
                    f"{'n/a' if c is None else f'{c:.2f}'})"
                    for a, b, s, c in dict.fromkeys(examples)
                )
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    typer.run(main)
