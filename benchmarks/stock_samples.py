"""Stock samples on real music: uploads of other music that hold a sample several catalog works
hold are no duplicate of any of them, while copies of those works still are.

Each set builds a catalog of ``n`` works (60-s clips of tuning tracks), each holding the same
sample (cut from another tuning track) at a different place, spliced in (the music replaced) or
mixed over it. The uploads are:

- 12 **chance** uploads: 60-s clips of other tuning tracks holding the same sample;
- **copies** of the first works, which hold the sample too: speed 1.1 (resampled), a 0.8
  time-stretch (pedalboard), ffmpeg's ``atempo`` 0.9 (when ffmpeg is installed), a 15-s excerpt
  around the work's sample, and 20 s of the work around its sample within other music.

Every upload is screened with every look, once with the catalog looked up whole and once with
the look-up sampled (``whole_lookup_max_entries=0``, a 3,000-hit budget), as in a catalog of
more than about 1,500 works. Sets ``A`` and ``B`` are the ones the shared-material rules were
built on (session 44); ``C`` and ``D`` were made after, with other tracks, sample lengths,
loudness and copy tools.

    python -m benchmarks.stock_samples --work /tmp/stock --out benchmarks/STOCK_SAMPLES.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pedalboard
import soundfile as sf
from scipy.signal import resample_poly

from audiodup import Catalog
from audiodup.audio import load_audio
from audiodup.fingerprint import UploadFingerprints
from audiodup.screening import gather_looks, matches_from_looks
from audiodup.settings import DEFAULT_SETTINGS, Settings
from audiodup.verdict import decide
from benchmarks.corpus import read_manifest
from benchmarks.service_load import commit, machine

SR = 22050
CLIP_S = 60.0
N_CHANCE = 12
N_COPIED = 3  # works whose copies are uploaded
TRACKS_NEEDED = 61  # the sample's, 16 works', the chance uploads' (from the 41st) and the filler


@dataclass(frozen=True)
class SampleSet:
    """One catalog layout: the sample's source, length and loudness, and how it is placed."""

    name: str
    seed: int
    sample_s: float
    sample_start_s: float
    gain_db: float  # the sample's RMS over the music's it replaces or joins
    spliced: bool  # True: the sample replaces the music; False: mixed over it
    works: tuple[int, ...]  # catalog sizes


SETS = (
    SampleSet("A", 44, 4.0, 30.0, 0.0, True, (4, 8, 16)),
    SampleSet("B", 44, 8.0, 30.0, 0.0, True, (4, 8, 16)),
    SampleSet("C", 45, 6.0, 40.0, -3.0, True, (3, 6)),
    SampleSet("D", 45, 5.0, 20.0, 3.0, False, (3, 6)),
)


def _clip(track: dict, start_s: float = 5.0, seconds: float = CLIP_S) -> np.ndarray:
    rate = track["samplerate"]
    y, _ = sf.read(track["path"], start=int(start_s * rate), frames=int(seconds * rate))
    y = y.mean(axis=1) if y.ndim == 2 else y
    return resample_poly(y, SR, rate).astype(np.float32)


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))) + 1e-9)


def _normalised(y: np.ndarray) -> np.ndarray:
    return (0.9 * y / np.max(np.abs(y))).astype(np.float32)


def with_sample(y: np.ndarray, sample: np.ndarray, at_s: float, spec: SampleSet) -> np.ndarray:
    """``y`` holding ``sample`` from ``at_s`` on, at ``spec.gain_db`` over the music there."""
    y = y.copy()
    start = int(at_s * SR)
    there = y[start : start + len(sample)]
    scaled = sample * (_rms(there) / _rms(sample)) * 10 ** (spec.gain_db / 20)
    y[start : start + len(sample)] = scaled if spec.spliced else there + scaled
    return y


def long_tracks() -> list[dict]:
    """The tuning tracks of 70 s or more: 60-s clips from 5 s in."""
    return [t for t in read_manifest("tuning")["tracks"] if t["duration_s"] >= 70]


def work_sample_s(k: int) -> float:
    """Where work ``k`` holds the sample: a different place in each."""
    return 2.0 + (k * 7.3) % 45


def build_set(spec: SampleSet, n_works: int, folder: Path) -> dict[str, str | None]:
    """Write the works and uploads of one set and size; ``{upload name: copied work or None}``."""
    tracks = long_tracks()
    order = np.random.default_rng(spec.seed).permutation(len(tracks))
    sample = _clip(tracks[order[0]], spec.sample_start_s, spec.sample_s)
    works, uploads = folder / "works", folder / "uploads"
    works.mkdir(parents=True, exist_ok=True)
    uploads.mkdir(exist_ok=True)
    for k in range(n_works):
        y = with_sample(_clip(tracks[order[1 + k]]), sample, work_sample_s(k), spec)
        sf.write(works / f"w{k:02d}.wav", _normalised(y), SR)
    truth: dict[str, str | None] = {}
    for k in range(N_CHANCE):
        y = with_sample(_clip(tracks[order[40 + k]]), sample, 1.0 + (k * 11.1) % 50, spec)
        sf.write(uploads / f"chance{k:02d}.wav", _normalised(y), SR)
        truth[f"chance{k:02d}.wav"] = None
    filler = _clip(tracks[order[60]])
    for k in range(min(N_COPIED, n_works)):
        work = f"w{k:02d}"
        y = sf.read(works / f"{work}.wav", dtype="float32")[0]
        at = work_sample_s(k)
        copies = {
            "speed1.1": resample_poly(y, 10, 11),
            "stretch0.8": pedalboard.time_stretch(y[None], SR, stretch_factor=0.8)[0],
            "excerpt15": y[int(max(at - 5, 0) * SR) : int((max(at - 5, 0) + 15) * SR)],
        }
        part = y[int(max(at - 8, 0) * SR) : int((max(at - 8, 0) + 20) * SR)]
        inside = filler.copy()
        inside[int(20 * SR) : int(20 * SR) + len(part)] = part * (_rms(inside) / _rms(part))
        copies["inside20"] = inside
        for how, z in copies.items():
            sf.write(uploads / f"{how}_{work}.wav", _normalised(z), SR)
            truth[f"{how}_{work}.wav"] = work
        if shutil.which("ffmpeg"):
            name = f"atempo0.9_{work}.wav"
            subprocess.run(
                ["ffmpeg", "-v", "error", "-y", "-i", str(works / f"{work}.wav")]
                + ["-filter:a", "atempo=0.9", str(uploads / name)],
                check=True,
            )
            truth[name] = work
    return truth


def lookups() -> dict[str, Settings]:
    sampled = dataclasses.replace(
        DEFAULT_SETTINGS, whole_lookup_max_entries=0, max_query_hits=3_000
    )
    return {"whole": DEFAULT_SETTINGS, "sampled": sampled}


def screen_set(folder: Path, truth: dict[str, str | None]) -> list[dict]:
    """Index the works and screen every upload with every look, both look-ups."""
    records = []
    with Catalog.open(folder / "catalog") as catalog:
        if not catalog.works():
            catalog.add_paths([folder / "works"])
        indexes = catalog.indexes()
        names = {w.work_id: Path(w.path).stem for w in catalog.works()}
        for lookup, settings in lookups().items():
            for name, copied in truth.items():
                found = screened(folder / "uploads" / name, catalog, indexes, settings, names)
                records.append({"lookup": lookup, "upload": name, "copied": copied, **found})
    return records


def screened(path: Path, catalog: Catalog, indexes, settings: Settings, names: dict) -> dict:
    """One upload screened with every look: its ``verdict``, the ``top`` work's name (from
    ``names``, by work id) and that match's probability (``fmp``)."""
    prints = UploadFingerprints(load_audio(path, settings), settings)
    looks = gather_looks(prints.query, indexes, settings, catalog.store, prints.view)
    matches = matches_from_looks(looks, settings, catalog.store)
    top = matches[0] if matches else None
    return {
        "verdict": decide(matches, settings),
        "top": names.get(top.work_id) if top else None,
        "fmp": top.false_match_probability if top else None,
    }


def summary(records: list[dict]) -> dict[str, int]:
    chance = [r for r in records if r["copied"] is None]
    copies = [r for r in records if r["copied"] is not None]
    return {
        "chance": len(chance),
        "chance_duplicate": sum(r["verdict"] == "duplicate" for r in chance),
        "chance_suspect": sum(r["verdict"] == "suspect" for r in chance),
        "copies": len(copies),
        "copies_found": sum(
            r["verdict"] == "duplicate" and r["top"] == r["copied"] for r in copies
        ),
    }


def report_head(title: str) -> list[str]:
    """A real-clip benchmark report's first lines: its title, then when, at which commit and
    on what machine it ran."""
    return [f"# {title}", "", f"{date.today().isoformat()}, commit {commit()}, {machine()}."]


def report(rows: list[dict], out: Path) -> None:
    lines = [
        *report_head("Stock samples: uploads holding a sample several works hold"),
        "`python -m benchmarks.stock_samples` (the sets are described in its docstring).",
        "",
        "| set | sample | placed | works holding it | look-up | chance uploads `duplicate` "
        "| `suspect` | copies found |",
        "|---|---|---|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        spec, s = row["set"], row["summary"]
        lines.append(
            f"| {spec['name']} | {spec['sample_s']:g} s, {spec['gain_db']:+g} dB "
            f"| {'spliced' if spec['spliced'] else 'mixed'} | {row['works']} | {row['lookup']} "
            f"| {s['chance_duplicate']} of {s['chance']} | {s['chance_suspect']} "
            f"| {s['copies_found']} of {s['copies']} |"
        )
    out.write_text("\n".join(lines) + "\n")


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def argument_error(work: Path, out: Path | None, tracks_needed: int) -> str | None:
    """What keeps a run on real clips from starting (the corpus, ``--out``, ``--work``), said
    before any work; ``None`` when nothing does."""
    try:
        n_tracks = len(long_tracks())
    except (OSError, ValueError, KeyError) as error:
        return f"no readable tuning corpus ({error}); run `python -m benchmarks` first"
    if n_tracks < tracks_needed:
        return f"the tuning corpus has {n_tracks} tracks of 70 s or more, {tracks_needed} needed"
    if out and not out.parent.is_dir():
        return f"cannot write {out}: no folder {out.parent}"
    if out and out.is_dir():
        return f"cannot write {out}: it is a folder"
    if work.exists() and not work.is_dir():
        return f"cannot build the sets in {work}: it is no folder"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="where the sets are built")
    parser.add_argument("--out", type=Path, default=None, help="markdown report")
    parser.add_argument("--sets", default="ABCD", help="which sets, e.g. CD")
    args = parser.parse_args(argv)
    if problem := argument_error(args.work, args.out, TRACKS_NEEDED):
        return _error(problem)
    chosen = [spec for spec in SETS if spec.name in args.sets]
    if not chosen or set(args.sets) - {spec.name for spec in SETS}:
        return _error(f"--sets {args.sets!r}: choose among {''.join(s.name for s in SETS)}")
    rows = []
    for spec in chosen:
        for n_works in spec.works:
            folder = args.work / f"{spec.name}-{n_works}"
            records = screen_set(folder, build_set(spec, n_works, folder))
            (folder / "records.json").write_text(json.dumps(records, indent=1))
            for lookup in lookups():
                mine = [r for r in records if r["lookup"] == lookup]
                row = {"set": dataclasses.asdict(spec), "works": n_works, "lookup": lookup}
                rows.append({**row, "summary": summary(mine)})
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        report(rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
