"""A copy hidden in the stereo difference: how often the gate screens the difference, what
screening it finds, what it costs, and that never-indexed music stays clean.

    python -m benchmarks.stereo run CATALOG OUT.jsonl [--corpus tuning] [--attacks 30]
    python -m benchmarks.stereo table OUT.jsonl >> benchmarks/STEREO.md

``run`` writes one JSON line per screening:

- ``gate``: every stereo track of the corpus, decoded as screening decodes it: whether
  ``stereo_difference="auto"`` screens its difference (:mod:`audiodup.stereo`);
- ``attack``: copies of catalog works hidden in the difference of a never-indexed stereo
  track (left = other's left + copy, right = other's right - copy), screened with the modes
  ``never``, ``auto`` and ``always``. The copies vary: 40 s or the whole other track, at 1, 1/2
  or 1/4 of the other's mix level, as they are or sped up by resampling (x1.1, "nightcore"
  style, pitch and tempo together);
- ``negative``: every never-indexed stereo track screened with ``auto`` and ``always``: a
  ``duplicate`` there is a false accusation.

Each line carries the verdict, the top work, whether it is the copied one, which signal
matched, the false-match probability and the CPU seconds of fingerprinting and search.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audiodup import Catalog
from audiodup.audio import load_audio
from audiodup.errors import AudiodupError
from audiodup.stereo import difference_stands_apart
from benchmarks.corpus import Corpus, Track, add_corpus_option, load_mono, read_manifest
from benchmarks.runner import git_commit, machine_info

RATE_HZ = 22050  # the attacks' rate: a typical upload's, resampled by screening
MODES = ("never", "auto", "always")


def _stereo(track: Track) -> np.ndarray:
    samples, rate = sf.read(track.path, dtype="float32", always_2d=True)
    return soxr.resample(samples, rate, RATE_HZ)


def hide(other: np.ndarray, copy: np.ndarray, start: int, gain: float) -> np.ndarray:
    """``other`` (stereo) with ``copy`` from sample ``start`` added to its left channel and
    taken from its right, at ``gain`` times the RMS of ``other``'s mix there; peak 0.9."""
    stereo = other.copy()
    part = stereo[start : start + len(copy)]
    copy = copy[: len(part)]
    level = np.sqrt(np.mean(part.mean(axis=1) ** 2)) / max(np.sqrt(np.mean(copy**2)), 1e-9)
    part[:, 0] += gain * level * copy
    part[:, 1] -= gain * level * copy
    return (0.9 * stereo / np.abs(stereo).max()).astype(np.float32)


def attack_plan(corpus: Corpus, n: int, seed: int = 2) -> list[dict]:
    """``n`` attacks: a catalog work, a never-indexed stereo track, the copy's length, level
    and speed."""
    rng = np.random.default_rng(seed)
    others = [t for t in corpus.negatives if t.channels == 2]
    works = corpus.catalog
    plan = []
    for k in range(n):
        plan.append(
            {
                "work": works[int(rng.integers(len(works)))].track_id,
                "other": others[k % len(others)].track_id,
                "length": ("40 s", "whole")[k % 2],
                "gain": (1.0, 0.5, 0.25)[k % 3],
                "speed": (1.0, 1.0, 1.1)[(k // 3) % 3],
            }
        )
    return plan


def make_attack(corpus: Corpus, spec: dict) -> np.ndarray:
    tracks = corpus.by_id()
    other = _stereo(tracks[spec["other"]])
    copy = load_mono(tracks[spec["work"]].path, RATE_HZ)[10 * RATE_HZ :]
    if spec["speed"] != 1.0:  # played faster: tempo and pitch together
        copy = soxr.resample(copy, RATE_HZ * spec["speed"], RATE_HZ)
    if spec["length"] == "40 s":
        copy = copy[: 40 * RATE_HZ]
        start = min(60 * RATE_HZ, max(0, len(other) - len(copy)))
    else:
        start = 0
    return hide(other, copy, start, spec["gain"])


def screened_row(
    catalog: Catalog,
    path: Path,
    mode: str,
    expected: str | None,
    setting: str | tuple[str, ...] = "stereo_difference",
) -> dict:
    """One row: ``path`` screened with the settings field ``setting`` (or each of several) =
    ``mode``; ``expected``: the file name of the copied work (None: none)."""
    fields = (setting,) if isinstance(setting, str) else setting
    settings = replace(catalog.settings, **dict.fromkeys(fields, mode))
    verdict = Catalog(catalog.store, settings).screen(path)
    top = verdict.matches[0] if verdict.matches else None
    return {
        "mode": mode,
        "verdict": verdict.verdict,
        "error": verdict.error,
        "top_work": Path(top.path).name if top else None,
        "right_work": bool(top and expected and Path(top.path).name == expected),
        "signal": top.signal if top else None,
        "false_match_probability": top.false_match_probability if top else None,
        "fingerprint_cpu_s": verdict.fingerprint_cpu_s,
        "search_cpu_s": verdict.search_cpu_s,
    }


@contextlib.contextmanager
def results_file(catalog_path: Path, out: Path) -> Iterator[tuple[Catalog, Callable[[dict], None]]]:
    """The catalog, open, and a writer of JSON lines to ``out``, whose first line says the
    commit and the machine."""
    with Catalog.open(catalog_path, create=False) as catalog, open(out, "w") as sink:

        def write(row: dict) -> None:
            sink.write(json.dumps(row) + "\n")
            sink.flush()

        write({"type": "meta", "commit": git_commit(), "machine": machine_info()})
        yield catalog, write


def run(catalog_path: Path, out: Path, corpus_name: str, n_attacks: int) -> None:
    corpus = Corpus.from_json(read_manifest(corpus_name))
    tracks = corpus.by_id()
    with results_file(catalog_path, out) as (catalog, write):
        for track in corpus.tracks:
            if track.channels != 2:
                continue
            audio = load_audio(track.path, catalog.settings)
            if audio.difference is None:
                continue
            opened = difference_stands_apart(
                audio.samples, audio.difference, audio.sample_rate_hz, catalog.settings
            )
            write({"type": "gate", "track": track.track_id, "screened": opened})
        with tempfile.TemporaryDirectory(prefix="audiodup-stereo-") as folder:
            for k, spec in enumerate(attack_plan(corpus, n_attacks)):
                path = Path(folder) / f"attack-{k:02d}.flac"
                sf.write(path, make_attack(corpus, spec), RATE_HZ)
                expected = Path(tracks[spec["work"]].path).name
                for mode in MODES:
                    write({"type": "attack", **spec, **screened_row(catalog, path, mode, expected)})
        for track in corpus.negatives:
            if track.channels == 2:
                for mode in ("auto", "always"):
                    row = screened_row(catalog, Path(track.path), mode, None)
                    write({"type": "negative", "track": track.track_id, **row})


def mode_rows(attacks: list[dict], signals: tuple[str, ...]) -> list[str]:
    """Per mode of :data:`MODES`, a table row: attacks found (``duplicate`` of the copied work),
    how many of them in one of ``signals``, ``suspect`` verdicts, median CPU s per attack."""
    n_attacks = len(attacks) // len(MODES)
    lines = []
    for mode in MODES:
        mine = [r for r in attacks if r["mode"] == mode]
        found = [r for r in mine if r["verdict"] == "duplicate" and r["right_work"]]
        cpu = np.median([r["fingerprint_cpu_s"] + r["search_cpu_s"] for r in mine])
        in_signals = sum(r["signal"] in signals for r in found)
        suspect = sum(r["verdict"] == "suspect" for r in mine)
        lines.append(
            f"| {mode} | {len(found)} / {n_attacks} | {in_signals} | {suspect} | {cpu:.2f} |"
        )
    return lines


def table(rows: list[dict]) -> str:
    meta = next(r for r in rows if r["type"] == "meta")
    gates = [r for r in rows if r["type"] == "gate"]
    attacks = [r for r in rows if r["type"] == "attack"]
    negatives = [r for r in rows if r["type"] == "negative"]
    lines = [
        f"commit {meta['commit']}, {meta['machine']['cpu']}, {meta['machine']['cores']} cores",
        "",
        f"- gate: {sum(r['screened'] for r in gates)} of {len(gates)} stereo corpus tracks have "
        "their difference screened (`auto`)",
        "",
        "| mode | attacks found (`duplicate` of the copied work) | of them in the difference "
        "| `suspect` | CPU s per attack, median (fingerprint + search) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += mode_rows(attacks, ("stereo_difference",))
    lines += ["", "| never-indexed stereo tracks | `duplicate` | `suspect` | CPU s, median |"]
    lines.append("|---|---:|---:|---:|")
    for mode in ("auto", "always"):
        mine = [r for r in negatives if r["mode"] == mode]
        counts = Counter(r["verdict"] for r in mine)
        cpu = np.median([r["fingerprint_cpu_s"] + r["search_cpu_s"] for r in mine])
        lines.append(
            f"| {len(mine)} ({mode}) | {counts['duplicate']} | {counts['suspect']} | {cpu:.2f} |"
        )
    by_kind = Counter(
        (r["length"], r["gain"], r["speed"])
        for r in attacks
        if r["mode"] == "auto" and r["verdict"] == "duplicate" and r["right_work"]
    )
    every = Counter((r["length"], r["gain"], r["speed"]) for r in attacks if r["mode"] == "auto")
    lines += ["", "| copy (`auto`) | found |", "|---|---:|"]
    for length, gain, speed in sorted(every):
        kind = (length, gain, speed)
        found = f"{by_kind[kind]} / {every[kind]}"
        lines.append(f"| {length}, level {gain:g}, speed x{speed:g} | {found} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    command_line("python -m benchmarks.stereo", run, table, 30, argv)


def command_line(
    prog: str,
    run_command: Callable[[Path, Path, str, int], None],
    table_command: Callable[[list[dict]], str],
    attacks: int,
    argv: list[str] | None,
) -> None:
    """``run CATALOG OUT.jsonl [--attacks N] [--corpus NAME]`` and ``table OUT.jsonl``; what
    cannot be read or screened is one error line."""
    parser = argparse.ArgumentParser(prog=prog)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run")
    run_parser.add_argument("catalog", type=Path)
    run_parser.add_argument("out", type=Path)
    run_parser.add_argument("--attacks", type=int, default=attacks)
    add_corpus_option(run_parser)
    table_parser = commands.add_parser("table")
    table_parser.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            run_command(args.catalog, args.out, args.corpus, args.attacks)
        else:
            rows = [json.loads(line) for line in args.results.read_text().splitlines() if line]
            print(table_command(rows), end="")
    except (AudiodupError, OSError, ValueError, StopIteration) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
