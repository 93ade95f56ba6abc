"""Copies already in the catalog, on real music: a work whose recording the catalog holds
several times (the service records every upload it screens, duplicates included) is still
found in a new copy, and music that holds none of it stays clean.

Each set builds a catalog of 24 works (60-s clips of tuning tracks) and ``k`` earlier copies of
each of the first 3 (k = 0, 1, 2, 4), made with one tool each in turn: speed 0.9 (resampled),
a 1.15 time-stretch and a +2-semitone pitch shift (pedalboard), ffmpeg's ``atempo`` 1.1 (when
ffmpeg is installed; else a 0.95 time-stretch). The uploads are:

- **copies** of the 3 works, made with other tools: speed 1.1, a 0.8 time-stretch with -1.5
  semitones, a 20-s excerpt, and those 20 s within other music;
- 12 **chance** uploads: 60-s clips of other tuning tracks.

A copy is found when it is a ``duplicate`` of its work or of one of its earlier copies (one
recording: which of them is the original, the upload ledger says). Every upload is screened
with every look, with the catalog looked up whole and sampled, as in
:mod:`benchmarks.stock_samples`.

    python -m benchmarks.recorded_copies --work /tmp/recorded --out benchmarks/RECORDED_COPIES.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pedalboard
import soundfile as sf
from scipy.signal import resample_poly

from benchmarks.stock_samples import (
    SR,
    _clip,
    _error,
    _normalised,
    _rms,
    argument_error,
    long_tracks,
    lookups,
    report_head,
)
from benchmarks.stock_samples import screen_set as screen_works
from benchmarks.stock_samples import summary as sample_summary

N_WORKS = 24
N_COPIED = 3
N_CHANCE = 12
EARLIER = (0, 1, 2, 4)  # earlier copies of each copied work in the catalog, per set
TRACKS_NEEDED = N_WORKS + N_CHANCE + 1  # the works, the chance uploads, the filler
SEED = 45


def _stretch(y: np.ndarray, tempo: float, semitones: float = 0.0) -> np.ndarray:
    return pedalboard.time_stretch(
        y[None], SR, stretch_factor=tempo, pitch_shift_in_semitones=semitones
    )[0]


def _atempo(source: Path, target: Path, tempo: float) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-filter:a", f"atempo={tempo}"]
        + [str(target)],
        check=True,
    )


def earlier_copy(y: np.ndarray, source: Path, target: Path, which: int) -> None:
    """Write the ``which``-th earlier copy of the work in ``source`` (``y``) to ``target``."""
    tool = which % 4
    if tool == 3 and shutil.which("ffmpeg"):
        _atempo(source, target, 1.1)
        return
    made = {
        0: lambda: resample_poly(y, 10, 9),  # speed 0.9
        1: lambda: _stretch(y, 1.15),
        2: lambda: _stretch(y, 1.0, 2.0),
        3: lambda: _stretch(y, 0.95),
    }[tool]()
    sf.write(target, _normalised(made), SR)


def family(name: str | None) -> str | None:
    """The work a catalog file's stem belongs to: ``w01~2`` is an earlier copy of ``w01``."""
    return None if name is None else name.split("~")[0]


def build_set(n_earlier: int, folder: Path) -> dict[str, str | None]:
    """Write the works (with their earlier copies) and the uploads of one set;
    ``{upload name: copied work or None}``."""
    tracks = long_tracks()
    order = np.random.default_rng(SEED).permutation(len(tracks))
    works, uploads = folder / "works", folder / "uploads"
    works.mkdir(parents=True, exist_ok=True)
    uploads.mkdir(exist_ok=True)
    for k in range(N_WORKS):
        sf.write(works / f"w{k:02d}.wav", _normalised(_clip(tracks[order[k]])), SR)
    truth: dict[str, str | None] = {}
    for k in range(N_CHANCE):
        chance = _clip(tracks[order[N_WORKS + 1 + k]])
        sf.write(uploads / f"chance{k:02d}.wav", _normalised(chance), SR)
        truth[f"chance{k:02d}.wav"] = None
    filler = _clip(tracks[order[N_WORKS]])
    for k in range(N_COPIED):
        work = f"w{k:02d}"
        source = works / f"{work}.wav"
        y = sf.read(source, dtype="float32")[0]
        for which in range(n_earlier):
            earlier_copy(y, source, works / f"{work}~{which}.wav", which + k)
        part = y[int(20 * SR) : int(40 * SR)]
        inside = filler.copy()
        inside[int(20 * SR) : int(20 * SR) + len(part)] = part * (_rms(inside) / _rms(part))
        copies = {
            "speed1.1": resample_poly(y, 10, 11),
            "stretch0.8_pitch-1.5": _stretch(y, 0.8, -1.5),
            "excerpt20": part,
            "inside20": inside,
        }
        for how, z in copies.items():
            sf.write(uploads / f"{how}_{work}.wav", _normalised(z), SR)
            truth[f"{how}_{work}.wav"] = work
    return truth


def summary(records: list[dict]) -> dict[str, int]:
    """:func:`benchmarks.stock_samples.summary` with each work counted as its recording, and
    how many copies found name the work itself."""
    by_recording = [{**r, "top": family(r["top"])} for r in records]
    named = [r for r in records if r["verdict"] == "duplicate" and r["top"] == r["copied"]]
    return {**sample_summary(by_recording), "named_the_work": sum(1 for r in named if r["copied"])}


def report(rows: list[dict], out: Path) -> None:
    lines = [
        *report_head("Copies already in the catalog: a recording the catalog holds several times"),
        "`python -m benchmarks.recorded_copies` (the sets are described in its docstring). A copy",
        "is found when it is a `duplicate` of its work or of one of the work's earlier copies;",
        "the last column counts those whose first match is the work itself.",
        "",
        "| earlier copies of each copied work | look-up | chance uploads `duplicate` | `suspect` "
        "| copies found | of them, first match the work |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        s = row["summary"]
        lines.append(
            f"| {row['earlier']} | {row['lookup']} | {s['chance_duplicate']} of {s['chance']} "
            f"| {s['chance_suspect']} | {s['copies_found']} of {s['copies']} "
            f"| {s['named_the_work']} |"
        )
    out.write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="where the sets are built")
    parser.add_argument("--out", type=Path, default=None, help="markdown report")
    args = parser.parse_args(argv)
    if problem := argument_error(args.work, args.out, TRACKS_NEEDED):
        return _error(problem)
    rows = []
    for n_earlier in EARLIER:
        folder = args.work / f"earlier-{n_earlier}"
        records = screen_works(folder, build_set(n_earlier, folder))
        (folder / "records.json").write_text(json.dumps(records, indent=1))
        for lookup in lookups():
            mine = [r for r in records if r["lookup"] == lookup]
            rows.append({"earlier": n_earlier, "lookup": lookup, "summary": summary(mine)})
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        report(rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
