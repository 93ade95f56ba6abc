"""Is ``false_match_probability`` calibrated on short queries? (issue #12, item 2)

    python -m benchmarks.calibration_check --queries 10000 [--seed 0] [--lengths 5,8] [--workers N]
        [--out benchmarks/calibration/CALIBRATION.md] [--catalog-dir DIR] [--max-minutes M]
    python -m benchmarks.calibration_check --render-only [--out ...]
    python -m benchmarks.calibration_check --smoke --queries 60     # bundled fixtures (CI)

Windows of 5 and 8 s at seeded random offsets of the corpus' never-indexed tracks (the
negatives), half of them altered by one of several tools (time-stretch, pitch shift, speed,
MP3, noise, reverb), are screened in-process (``Catalog.screen_audio``) against the full
benchmark catalog. Nothing a negative matches is its source, so for a calibrated probability the
share of queries whose lowest FMP is <= p must be at most p, at every p.

Verdicts only report matches with FMP <= ``suspect_max_fmp`` (1e-3). Above that level a query's
FMP is the lowest one its evidence reached (hash lines, chroma, guided peak checks and their
combinations), recomputed from the evidence screening produced with the formulas of
``audiodup.verdict`` and ``Catalog.match_fingerprint`` (captured through a Catalog subclass that
only watches). The same recomputation names the evidence path behind every reported match.

Every query is one JSON line in ``calibration.jsonl`` next to the report, written as it is
screened: an interrupted run resumes where it stopped (queries are planned one by one from
``(seed, index)``), and ``--render-only`` rewrites the report and the plot without screening.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import shlex
import subprocess
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from benchmarks import SAMPLE_RATE_HZ, stretchers
from benchmarks.alterations import Step, Truth, apply, step
from benchmarks.alterations import Variant as _Variant

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "calibration" / "CALIBRATION.md"
JSONL_NAME = "calibration.jsonl"
PLOT_NAME = "calibration.png"
LEVELS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
TARGETS = (1e-2, 1e-3, 1e-4)  # the pass/fail levels
CONFIDENCE = 0.95
MARGIN_S = 0.5  # source audio each side of a window, cut off after altering (stretcher edges)
WORST_SHOWN = 15
TOP_K = 5
PATHS = ("hash", "chroma", "hash x chroma", "peaks<-hash", "peaks<-chroma", "peaks x chroma")


class CheckError(Exception):
    """A problem the CLI reports in one line (exit 2)."""


# --------------------------------------------------------------------------- alterations


@dataclass(frozen=True)
class Alteration:
    """One way a query window is altered. ``source_per_query_s`` is the seconds of source audio
    one second of the altered query holds (the tempo ratio of a time-stretch or speed change)."""

    name: str
    family: str
    tool: str
    steps: tuple[Step, ...] = ()
    source_per_query_s: float = 1.0


UNALTERED = Alteration("unaltered", "unaltered", "-")
MENU: tuple[Alteration, ...] = (
    Alteration("tempo 0.90", "tempo", "pedalboard", (step("time_stretch", tempo_ratio=0.9),), 0.9),
    Alteration("tempo 1.10", "tempo", "pedalboard", (step("time_stretch", tempo_ratio=1.1),), 1.1),
    Alteration(
        "tempo 0.90 [rb-r3]", "tempo", "rb-r3", (step("stretch:rb-r3", tempo_ratio=0.9),), 0.9
    ),
    Alteration("tempo 1.10 [sox]", "tempo", "sox", (step("stretch:sox", tempo_ratio=1.1),), 1.1),
    Alteration(
        "tempo 0.95 [ffmpeg]", "tempo", "ffmpeg", (step("stretch:ffmpeg", tempo_ratio=0.95),), 0.95
    ),
    Alteration("pitch -1", "pitch", "pedalboard", (step("pitch", semitones=-1),)),
    Alteration("pitch +1", "pitch", "pedalboard", (step("pitch", semitones=1),)),
    Alteration("pitch +1 [rb-r2]", "pitch", "rb-r2", (step("stretch:rb-r2", semitones=1),)),
    Alteration("pitch -1 [sox]", "pitch", "sox", (step("stretch:sox", semitones=-1),)),
    Alteration("pitch +1 [ffmpeg]", "pitch", "ffmpeg", (step("stretch:ffmpeg", semitones=1),)),
    Alteration("speed 0.93", "speed", "soxr", (step("speed", factor=0.93),), 0.93),
    Alteration("speed 1.07", "speed", "soxr", (step("speed", factor=1.07),), 1.07),
    Alteration("mp3 64k", "codec", "lame", (step("mp3", kbps=64),)),
    Alteration("mp3 128k", "codec", "lame", (step("mp3", kbps=128),)),
    Alteration("white noise 10 dB", "noise", "numpy", (step("white_noise", snr_db=10),)),
    Alteration("pink noise 5 dB", "noise", "numpy", (step("pink_noise", snr_db=5),)),
    Alteration("reverb", "effect", "pedalboard", (step("reverb", room_size=0.7),)),
    Alteration(
        "chain: tempo 1.07 + pitch +1 + mp3 128k",
        "chain",
        "pedalboard+lame",
        (step("time_stretch", tempo_ratio=1.07), step("pitch", semitones=1), step("mp3", kbps=128)),
        1.07,
    ),
)


def available_menu(menu: Sequence[Alteration] = MENU) -> list[Alteration]:
    """The alterations whose tools are installed (a missing stretcher drops its entries)."""
    out = []
    for alteration in menu:
        tools = [s.op.split(":", 1)[1] for s in alteration.steps if s.op.startswith("stretch:")]
        if all(stretchers.available(t) for t in tools):
            out.append(alteration)
    return out


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Source:
    track_id: str
    duration_s: float


@dataclass(frozen=True)
class QuerySpec:
    """One negative query: ``length_s`` of (altered) audio whose source starts at ``start_s``
    of track ``track_id`` and spans ``length_s * source_per_query_s`` of it."""

    query_id: str
    index: int
    track_id: str
    length_s: float
    start_s: float
    alteration: str


def plan_query(
    index: int,
    sources: Sequence[Source],
    lengths: Sequence[float],
    seed: int,
    menu: Sequence[Alteration],
    altered_share: float,
) -> QuerySpec:
    """Query ``index`` of the plan; it depends only on ``(seed, index)`` and the inputs, not on
    how many queries are planned, so a longer run extends a shorter one. Tracks are drawn in
    proportion to their duration (every second of negative audio is equally likely); a track
    too short for the window and its alteration is drawn again (a plan whose first draw fits
    is the one it always was)."""
    rng = np.random.default_rng([seed, index])
    length_s = float(lengths[index % len(lengths)])
    durations = np.array([s.duration_s for s in sources])
    drawn = [
        *([UNALTERED] if altered_share < 1 or not menu else []),
        *(menu if altered_share > 0 else []),
    ]
    least = min(a.source_per_query_s for a in drawn)
    if length_s * least + 2 * MARGIN_S > durations.max():
        raise CheckError(f"no negative track is long enough for a {length_s:g}-s window")
    while True:  # ends: some track holds the window under some alteration
        track = sources[int(rng.choice(len(sources), p=durations / durations.sum()))]
        altered = menu and rng.random() < altered_share
        alteration = menu[int(rng.integers(len(menu)))] if altered else UNALTERED
        needed_s = length_s * alteration.source_per_query_s + 2 * MARGIN_S
        if needed_s <= track.duration_s:
            break
    offset_s = float(rng.uniform(0.0, track.duration_s - needed_s))
    return QuerySpec(
        f"s{seed}-{index:06d}",
        index,
        track.track_id,
        length_s,
        round(offset_s + MARGIN_S, 3),
        alteration.name,
    )


def render_window(
    y: np.ndarray, sr: int, spec: QuerySpec, alteration: Alteration, rng: np.random.Generator
) -> np.ndarray:
    """The query audio: the source window with a margin each side, altered, then the central
    ``length_s`` (stretchers smear the edges of what they are given)."""
    ratio = alteration.source_per_query_s
    first = int(round((spec.start_s - MARGIN_S) * sr))
    count = int(round((spec.length_s * ratio + 2 * MARGIN_S) * sr))
    window = np.asarray(y[max(first, 0) : first + count], dtype=np.float32)
    if alteration.steps:
        variant = _Variant(alteration.name, alteration.family, alteration.steps)
        window, _, _ = apply(variant, window, sr, Truth(), rng)
    n = int(round(spec.length_s * sr))
    if window.size < n:
        raise CheckError(f"{alteration.name} left {window.size / sr:.2f} s, need {spec.length_s} s")
    start = (window.size - n) // 2
    return np.ascontiguousarray(window[start : start + n], dtype=np.float32)


# --------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class Lead:
    """The false-match probability one evidence path gives one work, computed with
    :mod:`audiodup.verdict`'s rules as screening computes it (whether or not it is reported)."""

    work_id: int
    path: str  # one of PATHS
    fmp: float
    evidence: dict


def leads_from_evidence(evidence, settings) -> list[Lead]:
    """Every path's FMP for every work in one upload's :class:`audiodup.screening.Evidence`."""
    from audiodup.peakcheck import confirms_recording
    from audiodup.verdict import (
        channels_agree,
        combine_hash_and_chroma,
        combine_peaks_and_chroma,
        peak_false_match_probability,
    )

    leads: list[Lead] = []
    for work_id, found in evidence.hashes.items():
        e = found.evidence
        details = {
            "main_inliers": e.main_inliers,
            "inliers": e.inliers,
            "votes": e.votes,
            "tempo_ratio": round(e.tempo_ratio, 4),
            "pitch_shift_semitones": round(e.pitch_shift_semitones, 2),
            "coverage_s": round(e.coverage_s, 2),
        }
        leads.append(Lead(work_id, "hash", found.false_match_probability, details))
    for found in evidence.chroma:
        ev, fmp = found.evidence, found.false_match_probability
        details = {
            "similarity": round(ev.similarity, 4),
            "tempo_ratio": round(ev.tempo_ratio, 4),
            "pitch_shift_semitones": round(ev.pitch_shift_semitones, 2),
        }
        leads.append(Lead(ev.work_id, "chroma", fmp, details))
        hashed, peaks = evidence.hashes.get(ev.work_id), evidence.peaks.get(ev.work_id)
        if hashed is not None and channels_agree(
            hashed.evidence, ev, peaks.check if peaks else None, settings
        ):
            combined = combine_hash_and_chroma(
                hashed.false_match_probability, fmp, evidence.n_works
            )
            details = {
                "hash_fmp": hashed.false_match_probability,
                "chroma_fmp": fmp,
                "main_inliers": hashed.evidence.main_inliers,
                "similarity": round(ev.similarity, 4),
                "matched_peaks": peaks.check.matched_peaks,
            }
            leads.append(Lead(ev.work_id, "hash x chroma", combined, details))
    for work_id, found in evidence.peaks.items():
        check = found.check
        chroma_fmp = found.chroma.false_match_probability if found.chroma else None
        alone = peak_false_match_probability(found.probability, evidence.n_works)
        confirmed = confirms_recording(check, settings)
        fmp = combine_peaks_and_chroma(
            found.probability, evidence.n_works, chroma_fmp, settings, confirmed=confirmed
        )
        path = "peaks<-chroma" if found.chroma is not None else "peaks<-hash"
        if fmp < alone:
            path = "peaks x chroma"
        details = {
            "matched_peaks": check.matched_peaks,
            "checked_peaks": check.checked_peaks,
            "chance_peaks": round(check.chance_peaks, 2),
            "probability": check.probability,
            "checks_tried": found.checks_tried,
            "confirms": bool(confirmed),
            "refined": check.refined,  # False: given up after the coarse sweep
            "tempo_ratio": round(check.alignment.tempo_ratio, 4),
            "pitch_bins": round(check.alignment.pitch_bins, 2),
        }
        if found.chroma is not None:
            details["chroma_fmp"] = chroma_fmp
            details["similarity"] = round(found.chroma.evidence.similarity, 4)
        leads.append(Lead(work_id, path, fmp, details))
    return leads


def path_of(match, leads: Iterable[Lead]) -> str:
    """Which evidence path produced a reported match's FMP ('?' when none reproduces it).

    A peak check that clears no floor has probability 1, so ``peaks x chroma`` can equal the
    chroma FMP: the relation tells them apart (only the chroma path reports a composition)."""
    for lead in leads:
        if (
            lead.work_id == match.work_id
            and (lead.path == "chroma") == (match.relation == "same_composition")
            and math.isclose(lead.fmp, match.false_match_probability, rel_tol=1e-9, abs_tol=0)
        ):
            return lead.path
    return "?"


# --------------------------------------------------------------------------- screening


@dataclass(frozen=True)
class WorkerSetup:
    catalog_dir: str
    sources: dict[str, str]  # track_id -> .npy of mono float32 at SAMPLE_RATE_HZ
    work_names: dict[int, str]  # work_id -> catalog track id
    seed: int


_WORKER: dict = {}


def init_worker(setup: WorkerSetup) -> None:
    """Open the catalog once per process; sources are memory-mapped, shared between workers."""
    from audiodup.catalog import Catalog
    from audiodup.settings import DEFAULT_SETTINGS

    catalog = Catalog.open(setup.catalog_dir, create=False, settings=DEFAULT_SETTINGS)
    _WORKER.clear()
    _WORKER.update(setup=setup, catalog=catalog, arrays={})


def _source(track_id: str) -> np.ndarray:
    arrays = _WORKER["arrays"]
    if track_id not in arrays:
        arrays[track_id] = np.load(_WORKER["setup"].sources[track_id], mmap_mode="r")
    return arrays[track_id]


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the command-line stretchers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def screen_with_evidence(catalog, audio, name: str):
    """The verdict ``catalog.screen_audio`` gives, and the looks (each with the evidence
    screening gathered on it) it took: the same public pipeline steps, run once."""
    from audiodup import screening
    from audiodup.fingerprint import fingerprint_audio
    from audiodup.results import Verdict
    from audiodup.verdict import decide

    settings = catalog.settings
    query = fingerprint_audio(audio, settings, query=True)

    def view(time_scale: float, hop_phase: float):
        return fingerprint_audio(
            audio, settings, query=True, time_scale=time_scale, hop_phase=hop_phase
        )

    looks = screening.gather_looks(query, catalog.indexes(), settings, catalog, view)
    matches = screening.matches_from_looks(looks, settings, catalog)[:TOP_K]
    verdict = Verdict(
        path=name,
        verdict=decide(matches, settings),
        matches=tuple(matches),
        duration_s=audio.duration_s,
        truncated=audio.truncated,
        fingerprint_s=0.0,
        search_s=0.0,
    )
    return verdict, looks


def leads_from_looks(looks, settings) -> list[Lead]:
    """The leads of every look; a further look's FMPs pay for the looks planned, as
    :func:`audiodup.screening.matches_from_looks` has it, and name the look."""
    from audiodup.screening import looks_planned

    n_looks = looks_planned(looks[0].query, settings)
    leads = []
    for look in looks:
        found = leads_from_evidence(look.evidence, settings)
        if (look.time_scale, look.start_s) != (1.0, 0.0):
            where = {"look_time_scale": look.time_scale, "look_start_s": round(look.start_s, 4)}
            found = [
                dataclasses.replace(
                    lead, fmp=min(1.0, lead.fmp * n_looks), evidence=lead.evidence | where
                )
                for lead in found
            ]
        leads.extend(found)
    return leads


def screen_one(spec: QuerySpec) -> dict:
    """Render and screen one query; any exception becomes the record's ``error``."""
    from audiodup.audio import audio_from_samples

    setup: WorkerSetup = _WORKER["setup"]
    catalog = _WORKER["catalog"]
    alteration = BY_NAME[spec.alteration]
    record = {"type": "query", **dataclasses.asdict(spec)}
    record |= {"family": alteration.family, "tool": alteration.tool}
    c0, w0 = _cpu_s(), time.perf_counter()
    try:
        rng = np.random.default_rng([setup.seed, spec.index, 1])
        samples = render_window(_source(spec.track_id), SAMPLE_RATE_HZ, spec, alteration, rng)
        c1 = _cpu_s()
        audio = audio_from_samples(samples, SAMPLE_RATE_HZ, catalog.settings)
        verdict, looks = screen_with_evidence(catalog, audio, spec.query_id)
        leads = leads_from_looks(looks, catalog.settings)
        record |= describe(verdict, leads, setup.work_names)
        record["render_cpu_s"] = round(c1 - c0, 4)
        record["screen_cpu_s"] = round(_cpu_s() - c1, 4)
    except Exception as exc:  # noqa: BLE001 - one bad query is recorded, the run goes on
        record |= {
            "verdict": None,
            "error": traceback.format_exception_only(type(exc), exc)[-1].strip()[:300],
        }
    record["wall_s"] = round(time.perf_counter() - w0, 4)
    return record


def describe(verdict, leads: list[Lead], work_names: dict[int, str]) -> dict:
    """The JSON fields of one screened query: verdict, matches with their evidence path, the
    query's FMP and the strongest lead of every path."""

    def name(work_id: int) -> str:
        return work_names.get(work_id, f"work {work_id}")

    matches = [
        {
            "work": name(m.work_id),
            "relation": m.relation,
            "fmp": m.false_match_probability,
            "path": path_of(m, leads),
            "matched_hashes": m.matched_hashes,
            "matched_peaks": m.matched_peaks,
            "chroma_similarity": m.chroma_similarity,
            "tempo_ratio": round(m.tempo_ratio, 4),
            "pitch_shift_semitones": round(m.pitch_shift_semitones, 2),
            "coverage_s": round(m.coverage_s, 2),
            "query_start_s": round(m.query_start_s, 2),
            "ref_start_s": round(m.ref_start_s, 2),
        }
        for m in verdict.matches
    ]
    latent = min((lead.fmp for lead in leads), default=1.0)
    best: dict[str, dict] = {}
    for lead in sorted(leads, key=lambda lead: lead.fmp):
        if lead.path not in best:
            best[lead.path] = {"work": name(lead.work_id), "fmp": lead.fmp, **lead.evidence}
    return {
        "verdict": verdict.verdict,
        "error": verdict.error,
        "fmp": matches[0]["fmp"] if matches else latent,
        "fmp_source": "reported" if matches else "evidence",
        "latent_fmp": latent,
        "matches": matches,
        "best": best,
    }


# --------------------------------------------------------------------------- statistics


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval of a binomial share ``k / n``."""
    if n <= 0:
        return math.nan, math.nan
    alpha = 1.0 - confidence
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def upper_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound: the share is below it with ``confidence``."""
    if n <= 0:
        return math.nan
    return 1.0 if k == n else float(stats.beta.ppf(confidence, k + 1, n - k))


@dataclass(frozen=True)
class LevelRow:
    """How many of ``n`` queries reached FMP <= ``p``."""

    p: float
    n: int
    k: int
    lower: float  # two-sided interval
    upper: float
    upper_one_sided: float

    @property
    def share(self) -> float:
        return self.k / self.n if self.n else math.nan

    @property
    def passes(self) -> bool:
        """The issue's criterion: the observed share is at most p."""
        return self.n > 0 and self.share <= self.p

    @property
    def significantly_above(self) -> bool:
        return self.n > 0 and self.lower > self.p


def calibration_rows(fmps: Sequence[float], levels: Sequence[float] = LEVELS) -> list[LevelRow]:
    """Observed share of FMP <= p at each level, with its confidence bounds."""
    values = np.asarray(list(fmps), dtype=np.float64)
    rows = []
    for p in levels:
        k, n = int(np.sum(values <= p)), len(values)
        lo, hi = clopper_pearson(k, n)
        rows.append(LevelRow(p, n, k, lo, hi, upper_bound(k, n)))
    return rows


# --------------------------------------------------------------------------- corpus and catalog


@dataclass(frozen=True)
class Setup:
    """The catalog and negatives of a run."""

    description: str
    catalog_paths: dict[str, str]  # track_id -> audio file
    negatives: list[Source]
    negative_paths: dict[str, str]


def corpus_setup(data: Path | None, smoke: bool) -> Setup:
    """The benchmark corpus (or, with ``smoke``, the fixtures and generated negatives)."""
    from benchmarks.corpus import Corpus, cache_dir

    cache = cache_dir(data)
    if smoke:
        from benchmarks.runner import smoke_corpus

        cache.mkdir(parents=True, exist_ok=True)
        corpus, how = smoke_corpus(cache, 0)
        desc = (
            f"smoke: {len(corpus.catalog)} bundled fixture works as catalog, "
            f"{len(corpus.negatives)} generated negatives ({how})"
        )
    else:
        manifest = cache / "corpus.json"
        try:
            corpus = Corpus.from_json(json.loads(manifest.read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise CheckError(
                f"no benchmark corpus at {manifest} ({exc}); python -m benchmarks run prepares it"
            ) from None
        missing = [t.path for t in corpus.tracks if not Path(t.path).exists()]
        if missing:
            raise CheckError(f"{len(missing)} corpus files are missing, e.g. {missing[0]}")
        desc = (
            f"Debian game-music corpus (`{manifest}`, split seed {corpus.seed}): "
            f"{len(corpus.catalog)} catalog works "
            f"({sum(t.duration_s for t in corpus.catalog) / 3600:.2f} h), "
            f"{len(corpus.negatives)} never-indexed negatives "
            f"({sum(t.duration_s for t in corpus.negatives) / 3600:.2f} h)"
        )
    return Setup(
        desc,
        {t.track_id: t.path for t in corpus.catalog},
        [Source(t.track_id, t.duration_s) for t in corpus.negatives],
        {t.track_id: t.path for t in corpus.negatives},
    )


def ensure_catalog(
    directory: Path,
    catalog_paths: dict[str, str],
    workers: int,
    log: Callable[[str], None],
    distractors: bool = False,
) -> dict[int, str]:
    """Open (or build) the catalog in ``directory`` holding exactly the catalog works; returns
    work_id -> track id. A catalog holding other works is refused, never deleted; with
    ``distractors``, fingerprint-level distractor works (:mod:`benchmarks.distractor_prints`,
    named by their ``distractor:`` path) may be there too, under that name."""
    from audiodup.catalog import Catalog
    from audiodup.errors import AudiodupError
    from benchmarks.distractor_prints import is_distractor

    wanted = {os.path.realpath(p): tid for tid, p in catalog_paths.items()}
    try:
        with Catalog.open(directory, create=True) as catalog:
            listed = catalog.works()
            padding = {w.work_id: w.path for w in listed if distractors and is_distractor(w.path)}
            works = {
                os.path.realpath(w.path): w.work_id for w in listed if w.work_id not in padding
            }
            extra = sorted(set(works) - set(wanted))
            if extra:
                raise CheckError(
                    f"{directory} holds {len(extra)} works outside the benchmark catalog "
                    f"(e.g. {extra[0]}); pass another --catalog-dir"
                )
            todo = sorted(set(wanted) - set(works))
            if todo:
                log(f"indexing {len(todo)} catalog works into {directory}")
                results = catalog.add_paths(todo, workers=workers)
                failed = [r for r in results if r.status == "failed"]
                if failed:
                    raise CheckError(f"{len(failed)} works failed to index: {failed[0].error}")
            works = {
                os.path.realpath(w.path): w.work_id
                for w in catalog.works()
                if w.work_id not in padding
            }
    except AudiodupError as exc:
        raise CheckError(f"catalog {directory}: {exc}") from None
    return {**{work_id: wanted[path] for path, work_id in works.items()}, **padding}


def ensure_sources(
    negative_paths: dict[str, str], folder: Path, decode_cache: Path
) -> dict[str, str]:
    """Each negative as a .npy (mono float32 at SAMPLE_RATE_HZ), for workers to memory-map."""
    from benchmarks.corpus import load_mono

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for track_id, path in sorted(negative_paths.items()):
        target = folder / f"{track_id}_{SAMPLE_RATE_HZ}.npy"
        if not target.exists():
            y = load_mono(path, SAMPLE_RATE_HZ, decode_cache)
            tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, np.asarray(y, dtype=np.float32))
            tmp.replace(target)
        out[track_id] = str(target)
    return out


# --------------------------------------------------------------------------- JSONL


def read_jsonl(path: Path) -> tuple[dict | None, list[dict], list[dict]]:
    """``(meta, sessions, query records)``; a truncated last line (a killed run) is skipped.
    A query screened twice (two runs racing) counts once."""
    meta, sessions, records = None, [], {}
    if not path.exists():
        return None, [], []
    with path.open() as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            kind = row.get("type")
            if kind == "meta" and meta is None:
                meta = row
            elif kind == "session":
                sessions.append(row)
            elif kind == "query":
                records[row["query_id"]] = row
    return meta, sessions, sorted(records.values(), key=lambda r: r["index"])


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with path.open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row, allow_nan=False, default=_json_default) + "\n")
        fh.flush()


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


PLAN_KEYS = ("mode", "seed", "lengths", "altered_share", "menu", "negatives", "catalog_works")


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class CheckConfig:
    queries: int = 10_000
    seed: int = 0
    lengths: tuple[float, ...] = (5.0, 8.0)
    workers: int = 2
    out: Path = DEFAULT_OUT
    catalog_dir: Path | None = None
    data: Path | None = None
    smoke: bool = False
    altered_share: float = 0.5
    max_minutes: float | None = None
    distractors: bool = False
    only: frozenset[int] = frozenset()  # query numbers to screen; empty: all of them
    command: str = ""

    @property
    def jsonl(self) -> Path:
        return self.out.parent / JSONL_NAME


def run_check(cfg: CheckConfig, log: Callable[[str], None] = print) -> Path:
    """Screen the planned queries that the JSONL does not hold yet, then write the report."""
    from benchmarks.corpus import cache_dir

    cache = cache_dir(cfg.data)
    setup = corpus_setup(cfg.data, cfg.smoke)
    name = "calibration-catalog-smoke" if cfg.smoke else "calibration-catalog"
    catalog_dir = cfg.catalog_dir or cache / name
    work_names = ensure_catalog(catalog_dir, setup.catalog_paths, cfg.workers, log, cfg.distractors)
    sources = ensure_sources(setup.negative_paths, cache / "calibration-sources", cache / "sources")
    menu = available_menu()
    plan = {
        "mode": "smoke" if cfg.smoke else "full",
        "seed": cfg.seed,
        "lengths": list(cfg.lengths),
        "altered_share": cfg.altered_share,
        "menu": [a.name for a in menu],
        "negatives": sorted(s.track_id for s in setup.negatives),
        "catalog_works": len(work_names),
    }
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    meta, _, records = read_jsonl(cfg.jsonl)
    if meta is not None:
        changed = [k for k in PLAN_KEYS if meta.get(k) != plan[k]]
        if changed:
            raise CheckError(
                f"{cfg.jsonl} was made with other {', '.join(changed)}; "
                "pass another --out or delete it"
            )
    else:
        from audiodup.settings import DEFAULT_SETTINGS

        meta = {
            "type": "meta",
            **plan,
            "corpus": setup.description,
            "catalog_dir": str(catalog_dir),
            "negative_seconds": round(sum(s.duration_s for s in setup.negatives), 1),
            "settings": {
                k: getattr(DEFAULT_SETTINGS, k)
                for k in ("recipe", "duplicate_max_fmp", "suspect_max_fmp")
            },
        }
        append_jsonl(cfg.jsonl, [meta])
    done = {r["query_id"] for r in records}
    by_track = {s.track_id: s for s in setup.negatives}
    negatives = [by_track[t] for t in plan["negatives"]]
    todo = []
    for i in range(cfg.queries):
        if cfg.only and i not in cfg.only:
            continue
        spec = plan_query(i, negatives, cfg.lengths, cfg.seed, menu, cfg.altered_share)
        if spec.query_id not in done:
            todo.append(spec)
    log(f"{len(done)} queries already screened, {len(todo)} to go ({cfg.jsonl})")
    environment = run_environment()  # the code the workers are about to load
    started = dt.datetime.now(dt.UTC)
    wall = time.perf_counter()
    finished, stop_reason = screen_all(
        todo, WorkerSetup(str(catalog_dir), sources, work_names, cfg.seed), cfg, log
    )
    session = {
        "type": "session",
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "ended": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": round(time.perf_counter() - wall, 1),
        "screened": finished,
        "planned": cfg.queries,
        "stopped": stop_reason,
        "workers": cfg.workers,
        "command": cfg.command,
        **environment,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    append_jsonl(cfg.jsonl, [session])
    return write_report(cfg.jsonl, cfg.out)


def screen_all(
    todo: list[QuerySpec], setup: WorkerSetup, cfg: CheckConfig, log: Callable[[str], None]
) -> tuple[int, str | None]:
    """Screen ``todo`` in ``cfg.workers`` processes, appending each record as it arrives.
    Stops submitting at the ``max_minutes`` deadline. Returns (screened, why it stopped)."""
    if not todo:
        return 0, None
    import multiprocessing

    deadline = None if cfg.max_minutes is None else time.monotonic() + 60 * cfg.max_minutes
    counts: Counter = Counter()
    t0 = time.monotonic()
    # spawn, not fork: the parent has FAISS (OpenMP) loaded
    context = multiprocessing.get_context("spawn")
    pending: set = set()
    queue = iter(todo)
    stop_reason = None
    with (
        ProcessPoolExecutor(
            cfg.workers, mp_context=context, initializer=init_worker, initargs=(setup,)
        ) as pool,
        cfg.jsonl.open("a") as fh,
    ):
        while True:
            while len(pending) < 4 * cfg.workers and stop_reason is None:
                if deadline is not None and time.monotonic() > deadline:
                    stop_reason = f"--max-minutes {cfg.max_minutes:g} reached"
                    break
                spec = next(queue, None)
                if spec is None:
                    break
                pending.add(pool.submit(screen_one, spec))
            if not pending:
                break
            ready, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in ready:
                record = future.result()  # screen_one never raises; a dead worker does
                fh.write(json.dumps(record, allow_nan=False, default=_json_default) + "\n")
                counts["done"] += 1
                counts[record.get("verdict") or "error"] += 1
                if counts["done"] % 250 == 0 or counts["done"] == len(todo):
                    fh.flush()
                    rate = counts["done"] / max(time.monotonic() - t0, 1e-9) * 60
                    log(
                        f"{counts['done']}/{len(todo)} screened ({rate:.0f}/min): "
                        f"{counts['duplicate']} duplicate, {counts['suspect']} suspect, "
                        f"{counts['error']} errors"
                    )
    return counts["done"], stop_reason


def run_environment() -> dict:
    """Commit, uncommitted audiodup files and a digest of audiodup's sources, and the machine."""
    import hashlib

    from benchmarks.runner import git_commit, machine_info

    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "audiodup"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    digest = hashlib.sha1()
    for source in sorted((REPO / "audiodup").glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return {
        "commit": git_commit(),
        "audiodup_uncommitted": sorted(line[3:] for line in changed if line.strip()),
        "audiodup_sha1": digest.hexdigest()[:12],
        "machine": machine_info(),
    }


# --------------------------------------------------------------------------- report


def _fmt_p(p: float) -> str:
    return f"1e-{round(-math.log10(p))}" if p > 0 and math.log10(p).is_integer() else f"{p:.2g}"


def _fmt_share(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    return "0" if x == 0 else f"{x:.2e}"


def _fmt_fmp(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2g}"


def _group(records: list[dict], key: Callable[[dict], object]) -> dict:
    out: dict = defaultdict(list)
    for r in records:
        out[key(r)].append(r)
    return out


def distinct_regions(records: list[dict]) -> tuple[int, int]:
    """``(source regions, matched works)``: the records' source windows merged where they overlap
    on one track, and the distinct (track, matched work) pairs. Overlapping windows of one
    passage fail together, so these say how many independent events a count holds."""
    regions = 0
    for rs in _group(records, lambda r: r["track_id"]).values():
        end = -math.inf
        for r in sorted(rs, key=lambda r: r["start_s"]):
            if r["start_s"] >= end:
                regions += 1
            span = r["length_s"] * BY_NAME[r["alteration"]].source_per_query_s
            end = max(end, r["start_s"] + span)
    pairs = {(r["track_id"], _top_work(r)) for r in records}
    return regions, len(pairs)


def _top_work(record: dict) -> str | None:
    """The work of the top reported match, else of the lowest lead."""
    if record["matches"]:
        return record["matches"][0]["work"]
    leads = record.get("best", {}).values()
    return min(leads, key=lambda lead: lead["fmp"])["work"] if leads else None


def level_table(rows: list[LevelRow], records: list[dict]) -> list[str]:
    lines = [
        "| p | queries with FMP <= p | observed share | 95 % CI (two-sided) | "
        "95 % upper bound (one-sided) | expected if calibrated (n p) | target: share <= p | "
        "source regions / track-work pairs |",
        "|---:|---:|---:|---|---:|---:|---|---:|",
    ]
    for r in rows:
        if r.p in TARGETS:
            mark = "**pass**" if r.passes else "**FAIL**"
            if r.significantly_above:
                mark += " (CI above p)"
            elif r.passes and r.upper_one_sided > r.p:
                mark += " (not shown at 95 %: bound > p)"
        else:
            mark = "-" if r.passes else "above p"
        regions, pairs = distinct_regions([x for x in records if x["fmp"] <= r.p])
        lines.append(
            f"| {_fmt_p(r.p)} | {r.k} / {r.n} | {_fmt_share(r.share)} | "
            f"[{_fmt_share(r.lower)}, {_fmt_share(r.upper)}] | {_fmt_share(r.upper_one_sided)} | "
            f"{r.n * r.p:.2g} | {mark} | {regions} / {pairs} |"
        )
    return lines


def breakdown_table(groups: dict, label: str) -> list[str]:
    """Per group: queries, counts at each level, verdicts and the lowest FMP."""
    head = " | ".join(f"<= {_fmt_p(p)}" for p in LEVELS)
    lines = [
        f"| {label} | n | {head} | duplicate | suspect | errors | lowest FMP |",
        "|---|---:|" + "---:|" * len(LEVELS) + "---:|---:|---:|---|",
    ]
    for name in sorted(groups, key=str):
        rs = groups[name]
        ok = [r for r in rs if not r.get("error")]
        fmps = np.array([r["fmp"] for r in ok]) if ok else np.zeros(0)
        cells = " | ".join(str(int(np.sum(fmps <= p))) for p in LEVELS)
        verdicts = Counter(r.get("verdict") for r in ok)
        worst = min(ok, key=lambda r: r["fmp"], default=None)
        lowest = f"{worst['fmp']:.2g} (`{worst['query_id']}`)" if worst else "n/a"
        lines.append(
            f"| {name} | {len(ok)} | {cells} | {verdicts['duplicate']} | {verdicts['suspect']} | "
            f"{len(rs) - len(ok)} | {lowest} |"
        )
    return lines


def _evidence_text(m: dict, best: dict) -> str:
    """The evidence of a reported match, with the peak check's counts when it used peaks."""
    parts = [f"{m['matched_hashes']} hashes"]
    if m.get("matched_peaks") is not None:
        peaks = best.get(m["path"], {}) if m["path"].startswith("peaks") else {}
        if peaks.get("work") == m["work"] and "checked_peaks" in peaks:
            parts.append(
                f"{m['matched_peaks']} peaks of {peaks['checked_peaks']} checked "
                f"(chance {peaks['chance_peaks']:g})"
            )
        else:
            parts.append(f"{m['matched_peaks']} peaks")
    if m.get("chroma_similarity") is not None:
        parts.append(f"chroma {m['chroma_similarity']:.3f}")
    parts.append(f"tempo {m['tempo_ratio']:.3f}, pitch {m['pitch_shift_semitones']:+.2f} st")
    parts.append(f"{m['coverage_s']:.1f} s covered")
    return "; ".join(parts)


def worst_table(records: list[dict], k: int = WORST_SHOWN) -> list[str]:
    lines = [
        "| query | source window | alteration | verdict | matched work | relation | path | FMP | "
        "evidence |",
        "|---|---|---|---|---|---|---|---:|---|",
    ]
    ranked = sorted((r for r in records if not r.get("error")), key=lambda r: r["fmp"])[:k]
    for r in ranked:
        window = f"{r['track_id']} {r['start_s']:.1f} s +{r['length_s']:g} s"
        if r["matches"]:
            m = r["matches"][0]
            lines.append(
                f"| `{r['query_id']}` | {window} | {r['alteration']} | {r['verdict']} | "
                f"{m['work']} | {m['relation']} | {m['path']} | {m['fmp']:.2g} | "
                f"{_evidence_text(m, r.get('best', {}))} |"
            )
        else:
            path, lead = min(
                r.get("best", {}).items(), key=lambda kv: kv[1]["fmp"], default=("-", {})
            )
            lines.append(
                f"| `{r['query_id']}` | {window} | {r['alteration']} | {r['verdict']} | "
                f"{lead.get('work', '-')} | (not reported) | {path} | {r['fmp']:.2g} | "
                f"{', '.join(f'{k} {v}' for k, v in lead.items() if k not in ('work', 'fmp'))} |"
            )
    return lines


def path_table(records: list[dict]) -> list[str]:
    """Which evidence path made each query's top reported match, at each level."""
    ok = [r for r in records if not r.get("error") and r["matches"]]
    by_path = _group(ok, lambda r: r["matches"][0]["path"])
    levels = [p for p in LEVELS if p <= 1e-3]
    lines = [
        "| path of the top match | " + " | ".join(f"<= {_fmt_p(p)}" for p in levels) + " |",
        "|---|" + "---:|" * len(levels),
    ]
    for path in [p for p in (*PATHS, "?") if p in by_path]:
        fmps = np.array([r["matches"][0]["fmp"] for r in by_path[path]])
        lines.append(
            f"| {path} | " + " | ".join(str(int(np.sum(fmps <= p))) for p in levels) + " |"
        )
    return lines


def latent_table(records: list[dict]) -> list[str]:
    """How low each path's best lead went per query and length, whether reported or not."""
    ok = [r for r in records if not r.get("error")]
    lines = [
        "| length | path | queries with a lead | median best FMP | <= 1e-2 | <= 1e-3 | <= 1e-4 "
        "| <= 1e-6 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for length, rs in sorted(_group(ok, lambda r: r["length_s"]).items()):
        for path in PATHS:
            values = np.array([r["best"][path]["fmp"] for r in rs if path in r.get("best", {})])
            if values.size == 0:
                continue
            counts = " | ".join(str(int(np.sum(values <= p))) for p in (1e-2, 1e-3, 1e-4, 1e-6))
            lines.append(
                f"| {length:g} s | {path} | {values.size} / {len(rs)} | "
                f"{np.median(values):.2g} | {counts} |"
            )
    return lines


def chroma_table(records: list[dict]) -> list[str]:
    """The best chroma similarity per query: how often chance reached each level, and the median
    FMP the chroma model gave those queries (it depends on each query's own chance sample)."""
    ok = [r for r in records if not r.get("error")]
    levels = (0.70, 0.75, 0.80, 0.85, 0.90)
    lines = [
        "| length | queries with a chroma lead | median | 99th pct | max | "
        + " | ".join(f"share >= {x:.2f} (median FMP)" for x in levels)
        + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(levels),
    ]
    for length, rs in sorted(_group(ok, lambda r: r["length_s"]).items()):
        leads = [r["best"]["chroma"] for r in rs if "chroma" in r["best"]]
        if not leads:
            lines.append(f"| {length:g} s | 0 / {len(rs)} |" + " n/a |" * (3 + len(levels)))
            continue
        sims = np.array([lead["similarity"] for lead in leads])
        fmps = np.array([lead["fmp"] for lead in leads])
        cells = " | ".join(
            f"{np.sum(sims >= x) / len(rs):.2g} "
            f"({_fmt_fmp(float(np.median(fmps[sims >= x]))) if np.any(sims >= x) else '-'})"
            for x in levels
        )
        lines.append(
            f"| {length:g} s | {sims.size} / {len(rs)} | {np.median(sims):.3f} | "
            f"{np.percentile(sims, 99):.3f} | {sims.max():.3f} | {cells} |"
        )
    return lines


def peak_table(records: list[dict]) -> list[str]:
    """The strongest guided peak checks (the best one per query and path)."""
    ok = [r for r in records if not r.get("error")]
    checks = [
        (r, path, r["best"][path])
        for r in ok
        for path in ("peaks<-hash", "peaks<-chroma", "peaks x chroma")
        if path in r.get("best", {})
    ]
    cleared = [c for c in checks if c[2]["confirms"]]
    lines = [
        f"{len(checks)} best-per-query peak checks, {len(cleared)} of them clearing both floors "
        "(3x chance and 30 % of the checked peaks); the lowest probabilities:",
        "",
        "| query | length | path | work | matched / checked | chance | tail x grid | FMP |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r, path, c in sorted(cleared, key=lambda c: c[2]["probability"])[:10]:
        lines.append(
            f"| `{r['query_id']}` | {r['length_s']:g} s | {path} | {c['work']} | "
            f"{c['matched_peaks']} / {c['checked_peaks']} | {c['chance_peaks']:g} | "
            f"{c['probability']:.2g} | {c['fmp']:.2g} |"
        )
    return lines


def render_report(meta: dict, sessions: list[dict], records: list[dict], plot_name: str) -> str:
    ok = [r for r in records if not r.get("error")]
    errors = [r for r in records if r.get("error")]
    verdicts = Counter(r.get("verdict") for r in ok)
    rows = calibration_rows([r["fmp"] for r in ok])
    last = sessions[-1] if sessions else {}
    machine = last.get("machine", {})
    wall = sum(s.get("wall_s", 0.0) for s in sessions)
    cpu = np.array([r.get("render_cpu_s", 0) + r.get("screen_cpu_s", 0) for r in ok])
    screen_cpu = np.array([r.get("screen_cpu_s", 0) for r in ok])
    uncommitted = last.get("audiodup_uncommitted") or []
    hidden = [
        r for r in ok if not r["matches"] and r["latent_fmp"] <= meta["settings"]["suspect_max_fmp"]
    ]
    source_s = sum(r["length_s"] * BY_NAME[r["alteration"]].source_per_query_s for r in records)
    coverage = source_s / max(meta.get("negative_seconds") or 1.0, 1.0)
    unattributed = sum(1 for r in ok for m in r["matches"] if m["path"] == "?")
    out = [
        "# Calibration of `false_match_probability` on short negative queries",
        "",
        "Issue #12, item 2. Generated by `benchmarks/calibration_check.py`; re-render without "
        "screening: `python -m benchmarks.calibration_check --render-only`.",
        "",
        f"* Date: {last.get('ended', '?')}; commit `{last.get('commit', '?')}`"
        + (
            f" with uncommitted changes to {', '.join(f'`{u}`' for u in uncommitted)}"
            if uncommitted
            else ""
        )
        + (
            f" (audiodup sources sha1 `{last['audiodup_sha1']}`)" if "audiodup_sha1" in last else ""
        ),
        f"* Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('ram_gb', '?')} GB RAM, Python {machine.get('python', '?')}; "
        f"load average at the end {last.get('loadavg', '?')} (shared with other jobs)",
        *[
            f"* Command: `{s['command']}` ({s['screened']} queries in {s['wall_s']:.0f} s"
            f"{', ' + s['stopped'] if s.get('stopped') else ''})"
            for s in sessions
        ],
        f"* Catalog: {meta['catalog_works']} works (`{meta['catalog_dir']}`); {meta['corpus']}.",
        f"* Queries: {len(records)} ({len(ok)} screened, {len(errors)} errors); windows of "
        f"{', '.join(f'{x:g}' for x in meta['lengths'])} s at seeded random offsets (seed "
        f"{meta['seed']}; tracks drawn in proportion to their duration) of the "
        f"{len(meta['negatives'])} negatives; {meta['altered_share']:.0%} altered, uniformly "
        f"by one of: {', '.join(meta['menu'])}.",
        f"* Screening: {len(ok) / wall * 60 if wall else 0:.0f} queries per minute of wall time "
        f"with {last.get('workers', '?')} worker processes; CPU per query (render + screen) "
        f"median {np.median(cpu) if cpu.size else 0:.2f} s, p95 "
        f"{np.percentile(cpu, 95) if cpu.size else 0:.2f} s (screening alone median "
        f"{np.median(screen_cpu) if screen_cpu.size else 0:.2f} s).",
        "",
        "## Verdicts",
        "",
        f"**{verdicts['duplicate']} `duplicate`** and {verdicts['suspect']} `suspect` verdicts, "
        f"{verdicts['clean']} `clean`, on {len(ok)} negative queries (the issue asks for zero "
        "duplicates).",
        "",
        "## Calibration: share of queries whose FMP is <= p",
        "",
        "A query's FMP is its top reported match's `false_match_probability`. Verdicts report "
        f"only matches with FMP <= {meta['settings']['suspect_max_fmp']:g}; for a query with no "
        "reported match the FMP is the lowest one its evidence reached, recomputed from the "
        "screening's evidence with `audiodup.verdict`'s formulas (this only matters at p > "
        f"{meta['settings']['suspect_max_fmp']:g}). The last column counts the distinct events "
        "behind the queries at or below p: their source windows merged where they overlap on "
        "one track, and the distinct (negative track, matched work) pairs.",
        "",
        *level_table(rows, ok),
        "",
        f"![calibration plot]({plot_name})",
        "",
        "### Per query length",
        "",
        *breakdown_table(_group(records, lambda r: f"{r['length_s']:g} s"), "length"),
        "",
        "### Per alteration",
        "",
        *breakdown_table(_group(records, lambda r: r["alteration"]), "alteration"),
        "",
        "### Per length and alteration family",
        "",
        *breakdown_table(
            _group(records, lambda r: f"{r['length_s']:g} s, {r['family']}"), "length, family"
        ),
        "",
        "## Which evidence produced the low FMPs",
        "",
        "The evidence path of each query's top reported match (reproduced from the screening's "
        "own evidence: `hash` = a hash line alone; `chroma` = a chroma alignment; "
        "`hash x chroma` = both agreeing, probabilities multiplied; `peaks<-hash` / "
        "`peaks<-chroma` = the guided peak check of a hash line or chroma lead, times the number "
        "of works; `peaks x chroma` = that check times the chroma alignment's FMP):",
        "",
        *path_table(records),
        "",
        "The best lead of every path per query, reported or not (how close each path came):",
        "",
        *latent_table(records),
        "",
        "Chance chroma alignments: the best similarity of each query (the largest of up to 8 "
        "works' alignments over scales, rotations and offsets) and, in brackets, the median FMP "
        "`chroma_false_match_probability` gave the queries at or above each level (the FMP of "
        "the best chroma lead, from the query's own chance sample; per query, not per work):",
        "",
        *chroma_table(records),
        "",
        *peak_table(records),
        "",
        f"Reported matches whose FMP no path reproduced: {unattributed}. Queries with no reported "
        f"match but a lead at or below the suspect level: {len(hidden)}.",
        "",
        "## Worst offenders (lowest FMP)",
        "",
        *worst_table(records),
        "",
    ]
    for length, rs in sorted(_group(records, lambda r: r["length_s"]).items()):
        out += [f"### Worst {length:g}-s queries", "", *worst_table(rs, 5), ""]
    out += []
    if errors:
        kinds = Counter(r["error"].split(":")[0] for r in errors)
        example = {r["error"].split(":")[0]: r["error"] for r in errors}
        out += [
            "## Errors",
            "",
            *[f"* {n} x {kind} (e.g. `{example[kind]}`)" for kind, n in kinds.most_common()],
            "",
        ]
    out += [
        "## Notes",
        "",
        "* Every query comes from a track that is not in the catalog, and the corpus split keeps "
        "tracks of one group (same name stem within a package, plus any shared audio Chromaprint "
        "found when the corpus was prepared) on one side, so every match is counted as false. "
        "Music that is related without sharing a name (a theme re-arranged for another level) is "
        "not the same recording either, but a `same_composition` match with it is not wrong: the "
        "worst offenders are the place to look for such pairs.",
        f"* Windows overlap: the queries hold {coverage:.1f} s of source audio per second of "
        "negative audio, so they are not independent and the binomial bounds are optimistic.",
        "* With n queries and none at or below p, the one-sided 95 % upper bound is about 3/n: "
        "showing a share <= 1e-4 at 95 % confidence needs about 30,000 queries with none.",
        "",
    ]
    return "\n".join(out)


def plot_calibration(series: dict[str, list[LevelRow]], path: Path, title: str) -> None:
    """Observed share vs nominal p (log-log), y = x, and the 95 % interval of the first series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
    levels = np.array([r.p for r in next(iter(series.values()))])
    n_max = max(max((r.n for r in rows), default=1) for rows in series.values())
    floor = 10 ** math.floor(math.log10(min(levels.min(), 0.3 / max(n_max, 1))))
    ax.plot([floor, 1], [floor, 1], color="0.4", lw=1, ls="--", label="y = x (calibrated)")
    for i, (name, rows) in enumerate(series.items()):
        colour = f"C{i}"
        share = np.array([r.share for r in rows])
        if i == 0:
            lo = np.maximum([r.lower for r in rows], floor)
            hi = np.array([r.upper for r in rows])
            ax.fill_between(levels, lo, hi, color=colour, alpha=0.18, label=f"95 % CI ({name})")
        shown = np.where(share > 0, share, np.nan)
        ax.plot(levels, shown, "o-", color=colour, label=f"{name} (n = {rows[0].n})")
        zero = share == 0
        if zero.any():
            at = floor * 1.5 * 1.6**i  # one row per series, so none hides another
            ax.plot(levels[zero], np.full(zero.sum(), at), "v", color=colour, mfc="none")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(levels.min() / 2, 0.3)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("nominal p")
    ax.set_ylabel("observed share of queries with FMP <= p")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.text(
        0.98, 0.02, "open triangles: none observed", transform=ax.transAxes, ha="right", fontsize=7
    )
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write_report(jsonl: Path, out: Path) -> Path:
    """Render the report and the plot from the JSONL."""
    meta, sessions, records = read_jsonl(jsonl)
    if meta is None:
        raise CheckError(f"{jsonl} holds no run; screen first (without --render-only)")
    ok = [r for r in records if not r.get("error")]
    series = {"all": calibration_rows([r["fmp"] for r in ok])}
    for length, rs in sorted(_group(ok, lambda r: r["length_s"]).items()):
        series[f"{length:g} s"] = calibration_rows([r["fmp"] for r in rs])
    plot = out.parent / PLOT_NAME
    title = f"{len(ok)} negative short queries vs {meta['catalog_works']} works"
    plot_calibration(series, plot, title)
    out.write_text(render_report(meta, sessions, records, plot.name))
    return out


# --------------------------------------------------------------------------- CLI

BY_NAME = {a.name: a for a in (UNALTERED, *MENU)}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _checked(convert: Callable[[str], object], ok: Callable, wanted: str) -> Callable:
    """An argparse type: ``convert`` the text, then insist on ``ok`` (else say ``wanted``)."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r}: want {wanted}")
        return value

    return parse


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


_positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
_lengths = _checked(
    _floats, lambda v: all(3.0 <= x <= 60.0 for x in v), "comma-separated seconds, each 3-60"
)
_share = _checked(float, lambda v: 0.0 <= v <= 1.0, "a share between 0 and 1")
_minutes = _checked(float, lambda v: 0.0 < v < math.inf, "a positive number of minutes")
_numbers = _checked(
    lambda text: frozenset(int(x) for x in text.split(",")),
    lambda v: all(x >= 0 for x in v),
    "comma-separated query numbers (s0-000042 is 42)",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(
        prog="python -m benchmarks.calibration_check",
        description="Check false_match_probability on short never-indexed queries (issue #12).",
    )
    parser.add_argument("--queries", type=_positive_int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lengths", type=_lengths, default=(5.0, 8.0), help="seconds, e.g. 5,8")
    parser.add_argument("--workers", type=_positive_int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="report (JSONL and plot beside it)"
    )
    parser.add_argument("--catalog-dir", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None, help="benchmark cache")
    parser.add_argument("--altered-share", type=_share, default=0.5)
    parser.add_argument("--max-minutes", type=_minutes, default=None, help="stop screening after")
    parser.add_argument("--smoke", action="store_true", help="fixtures + generated negatives")
    parser.add_argument(
        "--distractors",
        action="store_true",
        help="the catalog may also hold fingerprint-level distractors (benchmarks.scaling_prints)",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the report from the JSONL"
    )
    parser.add_argument(
        "--only",
        type=_numbers,
        default=frozenset(),
        help="screen only these query numbers, e.g. the lowest of an earlier run (another --out)",
    )
    args = parser.parse_args(argv)
    if any(i >= args.queries for i in args.only):
        parser.error("--only: every query number must be below --queries")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shown = list(sys.argv[1:] if argv is None else argv)
    cfg = CheckConfig(
        queries=args.queries,
        seed=args.seed,
        lengths=args.lengths,
        workers=args.workers,
        out=args.out.resolve(),
        catalog_dir=args.catalog_dir,
        data=args.data,
        smoke=args.smoke,
        altered_share=args.altered_share,
        max_minutes=args.max_minutes,
        distractors=args.distractors,
        only=args.only,
        command=shlex.join(["python", "-m", "benchmarks.calibration_check", *shown]),
    )
    try:
        if args.render_only:
            out = write_report(cfg.jsonl, cfg.out)
        else:
            out = run_check(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
