"""Copies made with time-scale and pitch tools that the rest of the benchmark never uses.

The benchmark's own variants come from Rubber Band, SoX, ffmpeg, pedalboard and librosa
(:mod:`benchmarks.stretchers`, :mod:`benchmarks.alterations`). A fraudster may use any other
tool, so this probe screens copies made with four more, each its own implementation:

- ``soundstretch``: SoundTouch's WSOLA, Debian's ``soundstretch`` command;
- ``audiotsm``: its WSOLA, phase vocoder and OLA (OLA with its default 256-sample frame moves
  the pitch with the speed, so its copies are counted as speed changes);
- ``pytsmod``: its harmonic-percussive TSM and WSOLA; a pitch shift as its phase vocoder
  stretch followed by a resample (pytsmod has no pitch shifter for music);
- ``audiostretchy``: its TDHS stretcher (it pads the end with silence).

    pip install '.[bench]' && apt-get install soundstretch
    python -m benchmarks.other_tools run --catalog CATALOG --out DIR [--set all] [--tracks 25]
    python -m benchmarks.other_tools report DIR/results.jsonl

``run`` cuts the first ``--cut-s`` seconds of ``--tracks`` catalog tracks and ``--negatives``
negatives of the benchmark corpus (evenly spaced, mono, 44.1 kHz), makes every copy of the set
with the tools installed (a missing one is skipped with a line saying so), screens the cuts and
the copies against ``CATALOG`` (a catalog of the corpus's catalog tracks, such as the full run's)
and writes one JSON line per file. A copy is found when it is ``duplicate`` of a work of its
track's recording; any verdict but ``clean`` on a negative is a false positive. Not run in CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 44_100
_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Copy:
    """One way of making a copy: ``tempo`` = copy tempo / original tempo, ``semitones`` > 0
    higher; ``then`` a step applied after the tool (``noise20``: white noise at 20 dB SNR,
    ``mp3_96k``: an MP3 encode, the file screened as MP3)."""

    name: str
    tool: str
    method: str
    tempo: float = 1.0
    semitones: float = 0.0
    then: str = ""


def _speed_semitones(tempo: float) -> float:
    return 12 * math.log2(tempo)


def _stretches(name: str, tool: str, method: str, *tempos: float) -> tuple[Copy, ...]:
    return tuple(Copy(f"{name} {tempo:.2f}", tool, method, tempo) for tempo in tempos)


MODERATE = (
    *_stretches("soundstretch tempo", "soundstretch", "", 1.25, 0.80),
    Copy("soundstretch pitch +3", "soundstretch", "", 1.0, 3.0),
    Copy("soundstretch pitch -2", "soundstretch", "", 1.0, -2.0),
    Copy("soundstretch tempo 1.10 + pitch -1", "soundstretch", "", 1.10, -1.0),
    *_stretches("audiotsm wsola", "audiotsm", "wsola", 1.25, 0.80),
    Copy("audiotsm ola 1.25", "audiotsm", "ola", 1.25, _speed_semitones(1.25)),
    Copy("audiotsm ola 0.80", "audiotsm", "ola", 0.80, _speed_semitones(0.80)),
    *_stretches("audiotsm phasevocoder", "audiotsm", "phasevocoder", 1.25, 0.80),
    *_stretches("pytsmod hptsm", "pytsmod", "hptsm", 1.25, 0.80),
    *_stretches("pytsmod wsola", "pytsmod", "wsola", 1.25, 0.80),
    Copy("pytsmod pv + resample pitch +2", "pytsmod", "pitch", 1.0, 2.0),
    Copy("pytsmod pv + resample pitch -2", "pytsmod", "pitch", 1.0, -2.0),
    *_stretches("audiostretchy", "audiostretchy", "tdhs", 1.25, 0.80),
)
HARD = (
    *_stretches("soundstretch tempo", "soundstretch", "", 2.0, 0.5),
    Copy("soundstretch pitch +5", "soundstretch", "", 1.0, 5.0),
    Copy("soundstretch pitch -4", "soundstretch", "", 1.0, -4.0),
    Copy("soundstretch tempo 1.50 + pitch +2", "soundstretch", "", 1.5, 2.0),
    *_stretches("audiotsm wsola", "audiotsm", "wsola", 2.0, 0.5),
    *_stretches("audiotsm phasevocoder", "audiotsm", "phasevocoder", 2.0, 0.5),
    *_stretches("pytsmod hptsm", "pytsmod", "hptsm", 2.0, 0.5),
    *_stretches("pytsmod wsola", "pytsmod", "wsola", 2.0, 0.5),
    *_stretches("audiostretchy", "audiostretchy", "tdhs", 2.0, 0.5),
    Copy("chain: soundstretch tempo 1.35 + mp3 96k", "soundstretch", "", 1.35, then="mp3_96k"),
    Copy("chain: audiotsm wsola 0.75 + noise 20 dB", "audiotsm", "wsola", 0.75, then="noise20"),
)
SETS = {"moderate": MODERATE, "hard": HARD, "all": MODERATE + HARD}


# -- the tools -----------------------------------------------------------------------------------
def tool_available(tool: str) -> bool:
    if tool == "soundstretch":
        return shutil.which("soundstretch") is not None
    try:
        __import__(tool)
    except ImportError:
        return False
    return True


def _soundstretch(y: np.ndarray, copy: Copy) -> np.ndarray:
    args = []
    if copy.tempo != 1.0:
        args.append(f"-tempo={100 * (copy.tempo - 1):+.4f}")
    if copy.semitones:
        args.append(f"-pitch={copy.semitones:+.4f}")
    return _through_files(y, lambda src, dst: _run_command(["soundstretch", src, dst, *args]))


def _audiotsm(y: np.ndarray, copy: Copy) -> np.ndarray:
    import audiotsm
    from audiotsm.io.array import ArrayReader, ArrayWriter

    writer = ArrayWriter(1)
    getattr(audiotsm, copy.method)(1, speed=copy.tempo).run(ArrayReader(y[None, :]), writer)
    return writer.data[0]


def _pytsmod(y: np.ndarray, copy: Copy) -> np.ndarray:
    import pytsmod

    if copy.method == "pitch":  # stretch by the pitch factor, then resample to the length
        factor = 2 ** (copy.semitones / 12)
        longer = np.asarray(pytsmod.phase_vocoder(y, factor, phase_lock=True)).reshape(-1)
        return soxr.resample(longer, SR * factor, SR, quality="VHQ")
    stretched = getattr(pytsmod, copy.method)(y, 1 / copy.tempo)  # its alpha: length ratio
    return np.asarray(stretched).reshape(-1)


def _audiostretchy(y: np.ndarray, copy: Copy) -> np.ndarray:
    from audiostretchy.stretch import stretch_audio

    return _through_files(y, lambda src, dst: stretch_audio(src, dst, ratio=1 / copy.tempo))


def _through_files(y: np.ndarray, tool: Callable[[str, str], object]) -> np.ndarray:
    """``y`` written to a WAV, ``tool(src, dst)`` run on it and its output read back as mono."""
    with tempfile.TemporaryDirectory(prefix="audiodup-other-") as tmp:
        src, dst = str(Path(tmp) / "in.wav"), str(Path(tmp) / "out.wav")
        _write(src, y)
        tool(src, dst)
        if not Path(dst).exists():
            raise RuntimeError("the tool wrote no output")
        out, sr = sf.read(dst, dtype="float64", always_2d=True)
    if sr != SR:
        raise RuntimeError(f"the tool wrote {sr} Hz, expected {SR} Hz")
    return out.mean(axis=1)


def _run_command(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {done.stderr.strip()[-300:]}")


_RENDER = {
    "soundstretch": _soundstretch,
    "audiotsm": _audiotsm,
    "pytsmod": _pytsmod,
    "audiostretchy": _audiostretchy,
}


def render(y: np.ndarray, copy: Copy, seed: int = 0) -> np.ndarray:
    """``copy`` of mono ``y`` at :data:`SR` (float64), before any ``mp3_96k`` encode."""
    out = _RENDER[copy.tool](np.asarray(y, dtype=np.float64), copy)
    if copy.then == "noise20":
        noise = np.random.default_rng(seed).normal(size=out.size)
        out = out + noise * np.sqrt(np.mean(out**2) / 10 ** (20 / 10))
    return out


def _write(path: str | Path, y: np.ndarray) -> None:
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    sf.write(str(path), y * (0.999 / peak) if peak > 0.999 else y, SR, subtype="PCM_16")


def write_copy(path: Path, y: np.ndarray, copy: Copy) -> Path:
    """The copy's file: a WAV, or an MP3 made from it with ffmpeg (``mp3_96k``)."""
    if copy.then != "mp3_96k":
        _write(path, y)
        return path
    mp3 = path.with_suffix(".mp3")
    with tempfile.TemporaryDirectory(prefix="audiodup-other-") as tmp:
        wav = Path(tmp) / "copy.wav"
        _write(wav, y)
        _run_command(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), "-b:a", "96k", str(mp3)]
        )
    return mp3


def missing_tool(copy: Copy) -> str | None:
    """What making ``copy`` needs that is not installed (None: nothing)."""
    if not tool_available(copy.tool):
        if copy.tool == "soundstretch":
            return "soundstretch (apt-get install soundstretch)"
        return f"the Python package {copy.tool} (pip install '.[bench]')"
    if copy.then == "mp3_96k" and not shutil.which("ffmpeg"):
        return "ffmpeg (apt-get install ffmpeg)"
    return None


# -- the run -------------------------------------------------------------------------------------
def picked(tracks: list, n: int) -> list:
    """``n`` tracks evenly spaced in corpus order."""
    return [tracks[i * len(tracks) // n] for i in range(min(n, len(tracks)))]


def cut(path: str, seconds: float) -> np.ndarray:
    """The first ``seconds`` of ``path``, mono, at :data:`SR`."""
    info = sf.info(path)
    y, sr = sf.read(path, dtype="float64", always_2d=True, frames=int(seconds * info.samplerate))
    y = y.mean(axis=1)
    return soxr.resample(y, sr, SR, quality="VHQ") if sr != SR else y


def run(
    catalog_dir: Path,
    out: Path,
    copies: Sequence[Copy],
    n_tracks: int,
    n_negatives: int,
    cut_s: float,
    log: Callable[[str], object] = print,
) -> Path:
    from audiodup import Catalog
    from audiodup.results import Verdict

    from .corpus import MANIFEST_NAME, Corpus, cache_dir

    manifest = cache_dir() / MANIFEST_NAME
    if not manifest.exists():
        raise FileNotFoundError(f"no benchmark corpus at {manifest}: run python -m benchmarks run")
    corpus = Corpus.from_json(json.loads(manifest.read_text()))
    for need in sorted({missing_tool(c) for c in copies} - {None}):
        log(f"skipped: the copies that need {need}")
    copies = [c for c in copies if missing_tool(c) is None]
    tracks = picked(corpus.catalog, n_tracks) + picked(corpus.negatives, n_negatives)
    files = out / "files"
    files.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    with Catalog.open(catalog_dir, create=False) as catalog, results.open("w") as sink:
        group_of = {str(Path(t.path).resolve()): t.group for t in corpus.tracks}
        work_group = {w.work_id: group_of.get(str(Path(w.path).resolve())) for w in catalog.works()}
        for number, track in enumerate(tracks):
            try:
                source = cut(track.path, cut_s)
            except (RuntimeError, OSError) as exc:  # soundfile's errors are RuntimeErrors
                log(f"skipped {track.track_id}: {_first_line(exc)}")
                continue
            plain = Copy("cut", "none", "")
            for seed, copy in enumerate([plain, *copies]):
                path = files / f"{number:03d}-{seed:02d}.wav"
                try:
                    if copy is plain:
                        _write(path, source)
                    else:
                        path = write_copy(path, render(source, copy, seed), copy)
                except Exception as exc:  # a third-party tool's failure is this copy's alone
                    problem = f"making the copy failed: {_first_line(exc)}"
                    verdict = Verdict(path=str(path), verdict=None, error=problem)
                else:
                    verdict = catalog.screen(path)
                sink.write(json.dumps(_record(track, copy, path, verdict, work_group)) + "\n")
                sink.flush()
            log(f"{number + 1}/{len(tracks)} {track.track_id}")
    return results


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _record(track, copy: Copy, path: Path, verdict, work_group: dict) -> dict:
    best = verdict.matches[0] if verdict.matches else None
    return {
        "track_id": track.track_id,
        "role": track.role,
        "copy": dataclasses.asdict(copy),
        "file": str(path),
        "verdict": verdict.verdict,
        "error": verdict.error,
        "right_work": best is not None and work_group.get(best.work_id) == track.group,
        "work_id": None if best is None else best.work_id,
        "false_match_probability": None if best is None else best.false_match_probability,
        "tempo_ratio": None if best is None else best.tempo_ratio,
        "semitones": None if best is None else best.pitch_shift_semitones,
        "matched_hashes": None if best is None else best.matched_hashes,
        "matched_peaks": None if best is None else best.matched_peaks,
    }


# -- the report ----------------------------------------------------------------------------------
def report(records: list[dict]) -> str:
    """Per copy: the catalog tracks' verdicts, right works and estimate errors (median); then
    every copy not found and every negative not clean."""
    rows: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        rows[r["copy"]["name"]].append(r)
    lines = [
        "| copy | catalog copies | duplicate | right work | suspect | clean | error "
        "| median tempo error | median semitone error | negatives flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, group in rows.items():
        pos = [r for r in group if r["role"] == "catalog"]
        neg = [r for r in group if r["role"] == "negative"]
        counts = {v: sum(r["verdict"] == v for r in pos) for v in ("duplicate", "suspect", "clean")}
        right = sum(r["verdict"] == "duplicate" and r["right_work"] for r in pos)
        named = [r for r in pos if r["verdict"] == "duplicate" and r["right_work"]]
        tempo = [abs(r["tempo_ratio"] - r["copy"]["tempo"]) for r in named]
        semis = [abs(r["semitones"] - r["copy"]["semitones"]) for r in named]
        lines.append(
            f"| {name} | {len(pos)} | {counts['duplicate']} | {right} | {counts['suspect']} "
            f"| {counts['clean']} | {sum(r['error'] is not None for r in pos)} "
            f"| {_median(tempo, '.4f')} | {_median(semis, '.3f')} "
            f"| {sum(r['verdict'] not in ('clean', None) for r in neg)} of {len(neg)} |"
        )
    misses = [r for r in records if r["role"] == "catalog" and not _found(r)]
    flagged = [r for r in records if r["role"] == "negative" and r["verdict"] not in ("clean",)]
    for title, items in (("not found", misses), ("negatives not clean", flagged)):
        lines.append(f"\n{title}: {len(items)}")
        lines += [
            f"- {r['copy']['name']} | {r['track_id']} | {r['verdict'] or r['error']} | work "
            f"{r['work_id']} p={r['false_match_probability']} hashes={r['matched_hashes']} "
            f"peaks={r['matched_peaks']}"
            for r in items
        ]
    return "\n".join(lines)


def _found(r: dict) -> bool:
    return r["verdict"] == "duplicate" and r["right_work"]


def _median(values: list[float], spec: str) -> str:
    return format(float(np.median(values)), spec) if values else "-"


def read_records(path: Path) -> list[dict]:
    """The records of a ``results.jsonl`` of :func:`run`."""
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError):
        records = None
    fields = {"copy", "role", "verdict", "track_id"}
    if not records or not all(isinstance(r, dict) and fields <= r.keys() for r in records):
        raise ValueError(f"{path} is not a results file of benchmarks.other_tools")
    return records


def main(argv: Sequence[str] | None = None) -> int:
    from audiodup.errors import AudiodupError

    parser = argparse.ArgumentParser(prog="python -m benchmarks.other_tools")
    commands = parser.add_subparsers(dest="command", required=True)
    go = commands.add_parser("run", help="make the copies, screen them, write results.jsonl")
    go.add_argument("--catalog", type=Path, required=True)
    go.add_argument("--out", type=Path, required=True)
    go.add_argument("--set", choices=sorted(SETS), default="all")
    go.add_argument("--tracks", type=int, default=25)
    go.add_argument("--negatives", type=int, default=10)
    go.add_argument("--cut-s", type=float, default=90.0)
    show = commands.add_parser("report", help="the table of a results.jsonl")
    show.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            results = run(
                args.catalog, args.out, SETS[args.set], args.tracks, args.negatives, args.cut_s
            )
            print(report(read_records(results)))
        else:
            print(report(read_records(args.results)))
    except (AudiodupError, OSError, ValueError, RuntimeError) as exc:
        print(f"error: {_first_line(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
