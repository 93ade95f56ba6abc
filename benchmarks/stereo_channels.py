"""A copy in one channel, drowned in the mix by loud noise or other music in the other: how
often the channel gate screens a stereo track's channels, what screening them finds, what it
costs, and that never-indexed music stays clean.

    python -m benchmarks.stereo_channels run CATALOG OUT.jsonl [--corpus tuning] [--attacks 36]
    python -m benchmarks.stereo_channels table OUT.jsonl >> benchmarks/STEREO.md

``run`` writes one JSON line per screening:

- ``gate``: every stereo track of the corpus, decoded as screening decodes it: whether
  ``stereo_channels="auto"`` screens its channels, and for how long
  (:func:`audiodup.stereo.channels_apart`);
- ``attack``: a catalog work's copy in one channel, the other holding white or brown noise (from
  numpy), pink noise (from sox where it is installed, else numpy) or a never-indexed track, at
  6, 14 or 22 dB above the copy; 40 s or the whole copy, as it is or sped up x1.1 by
  resampling. Screened with ``stereo_channels`` never, auto and always;
- ``decoy``: the same with a never-indexed track in place of the copy (the chance case the gate
  lets through): a ``duplicate`` there is a false accusation;
- ``negative``: every never-indexed stereo track screened with ``auto`` and ``always``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audiodup import Catalog
from audiodup.audio import load_audio
from audiodup.stereo import channels_apart
from benchmarks.corpus import Corpus, Track, load_mono, read_manifest
from benchmarks.stereo import MODES, command_line, mode_rows, results_file, screened_row

RATE_HZ = 22050
MASKS = ("white", "pink", "brown", "music")
LOUDER_DB = (6.0, 14.0, 22.0)


def noise(kind: str, n: int, seed: int, folder: Path) -> np.ndarray:
    """``n`` samples of ``kind`` noise: from sox's synth where sox is installed and the seed is
    odd, else shaped from numpy's normal samples (two tools, two spectra's textures). sox's
    runs repeatably (``-R``, one fixed stream): the seed picks where in it the samples start."""
    sox = shutil.which("sox")
    if sox and seed % 2:
        path = folder / f"noise-{seed}.wav"
        skip = (seed // 2) % 1000 * RATE_HZ // 10  # 0.1 s per seed
        subprocess.run(
            [
                sox,
                "-R",
                "-n",
                "-r",
                str(RATE_HZ),
                "-c",
                "1",
                "-b",
                "16",
                str(path),
                "synth",
                f"{(skip + n) / RATE_HZ:.3f}",
                f"{kind}noise",
            ],
            check=True,
            capture_output=True,
        )
        samples = sf.read(path, dtype="float32")[0][skip:]
        return np.pad(samples, (0, max(0, n - len(samples))))[:n]
    white = np.random.default_rng(seed).standard_normal(n)
    if kind == "white":
        return white.astype(np.float32)
    spectrum = np.fft.rfft(white)
    spectrum /= np.maximum(np.arange(len(spectrum)), 1) ** (0.5 if kind == "pink" else 1.0)
    return np.fft.irfft(spectrum, n=n).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def one_channel(copy: np.ndarray, mask: np.ndarray, louder_db: float, left: bool) -> np.ndarray:
    """Stereo with ``copy`` in one channel and ``mask`` in the other, ``louder_db`` above it;
    peak 0.9."""
    n = min(len(copy), len(mask))
    copy, mask = copy[:n], mask[:n] * _rms(copy[:n]) / max(_rms(mask[:n]), 1e-12)
    mask = mask * 10 ** (louder_db / 20)
    stereo = np.stack([copy, mask] if left else [mask, copy], axis=1)
    return (0.9 * stereo / np.abs(stereo).max()).astype(np.float32)


def attack_plan(corpus: Corpus, n: int, seed: int = 3) -> list[dict]:
    """``n`` attacks: a catalog work, what masks it, how much louder, the copy's length and
    speed, the channel it is in."""
    rng = np.random.default_rng(seed)
    others = [t for t in corpus.negatives if t.channels == 2]
    plan = []
    for k in range(n):
        plan.append(
            {
                "work": corpus.catalog[int(rng.integers(len(corpus.catalog)))].track_id,
                "mask": MASKS[k % len(MASKS)],
                "other": others[k % len(others)].track_id,
                "louder_db": LOUDER_DB[(k // len(MASKS)) % len(LOUDER_DB)],
                "length": ("40 s", "whole")[k % 2],
                "speed": (1.0, 1.0, 1.1)[(k // 2) % 3],
                "left": bool(k % 3),
                "seed": k,
            }
        )
    return plan


def copied_audio(track: Track, spec: dict) -> np.ndarray:
    """``track`` from 10 s in, as the attack ``spec`` copies it: sped up, cut to 40 s."""
    copy = load_mono(track.path, RATE_HZ)[10 * RATE_HZ :]
    if spec["speed"] != 1.0:  # played faster: tempo and pitch together
        copy = soxr.resample(copy, RATE_HZ * spec["speed"], RATE_HZ)
    if spec["length"] == "40 s":
        copy = copy[: 40 * RATE_HZ]
    return copy


def make_attack(corpus: Corpus, spec: dict, folder: Path, copied: str | None = None) -> np.ndarray:
    """The attack ``spec`` describes, with ``copied`` (a track id) in place of its work."""
    tracks = corpus.by_id()
    copy = copied_audio(tracks[copied or spec["work"]], spec)
    if spec["mask"] == "music":
        mask = load_mono(tracks[spec["other"]].path, RATE_HZ)
        mask = np.resize(mask, len(copy))  # looped where it is shorter
    else:
        mask = noise(spec["mask"], len(copy), spec["seed"], folder)
    return one_channel(copy, mask, spec["louder_db"], spec["left"])


def _gate_row(track: Track, catalog: Catalog) -> dict | None:
    audio = load_audio(track.path, catalog.settings)
    if audio.difference is None:
        return None
    span = channels_apart(audio.samples, audio.difference, audio.sample_rate_hz, catalog.settings)
    return {
        "type": "gate",
        "track": track.track_id,
        "screened": span is not None,
        "screened_s": 0.0 if span is None else span[1] - span[0],
        "duration_s": audio.duration_s,
    }


def run(catalog_path: Path, out: Path, corpus_name: str, n_attacks: int) -> None:
    corpus = Corpus.from_json(read_manifest(corpus_name))
    tracks = corpus.by_id()
    negatives = [t for t in corpus.negatives if t.channels == 2]
    with results_file(catalog_path, out) as (catalog, write):
        for track in corpus.tracks:
            if track.channels == 2 and (row := _gate_row(track, catalog)) is not None:
                write(row)
        with tempfile.TemporaryDirectory(prefix="audiodup-channels-") as name:
            folder = Path(name)
            for k, spec in enumerate(attack_plan(corpus, n_attacks)):
                path = folder / f"attack-{k:02d}.flac"
                sf.write(path, make_attack(corpus, spec, folder), RATE_HZ)
                expected = Path(tracks[spec["work"]].path).name
                for mode in MODES:
                    write(
                        {
                            "type": "attack",
                            **spec,
                            **screened_row(catalog, path, mode, expected, "stereo_channels"),
                        }
                    )
                decoy = negatives[(k + 7) % len(negatives)].track_id
                path = folder / f"decoy-{k:02d}.flac"
                sf.write(path, make_attack(corpus, spec, folder, copied=decoy), RATE_HZ)
                row = screened_row(catalog, path, "always", None, "stereo_channels")
                write({"type": "decoy", **spec, "copied": decoy, **row})
        for track in negatives:
            for mode in ("auto", "always"):
                row = screened_row(catalog, Path(track.path), mode, None, "stereo_channels")
                write({"type": "negative", "track": track.track_id, **row})


def _cpu(rows: list[dict]) -> float:
    return float(np.median([r["fingerprint_cpu_s"] + r["search_cpu_s"] for r in rows]))


def table(rows: list[dict]) -> str:
    meta = next(r for r in rows if r["type"] == "meta")
    gates = [r for r in rows if r["type"] == "gate"]
    attacks = [r for r in rows if r["type"] == "attack"]
    screened = [r for r in gates if r["screened"]]
    share = sum(r["screened_s"] for r in gates) / max(sum(r["duration_s"] for r in gates), 1e-9)
    lines = [
        f"commit {meta['commit']}, {meta['machine']['cpu']}, {meta['machine']['cores']} cores",
        "",
        f"- gate: {len(screened)} of {len(gates)} stereo corpus tracks have their channels "
        f"screened (`auto`), {100 * share:.1f} % of their seconds"
        + (f": {', '.join(r['track'] for r in screened)}" if screened else ""),
        "",
        "| `stereo_channels` | attacks found (`duplicate` of the copied work) | of them in a "
        "channel | `suspect` | CPU s per attack, median (fingerprint + search) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += mode_rows(attacks, ("left_channel", "right_channel"))
    lines += [
        "",
        "| chance uploads | `duplicate` | `suspect` | CPU s, median |",
        "|---|---:|---:|---:|",
    ]
    decoys = [r for r in rows if r["type"] == "decoy"]
    negatives = [r for r in rows if r["type"] == "negative"]
    groups = [(f"{len(decoys)} never-indexed tracks in one channel (always)", decoys)]
    for mode in ("auto", "always"):
        mine = [r for r in negatives if r["mode"] == mode]
        groups.append((f"{len(mine)} never-indexed stereo tracks ({mode})", mine))
    for label, mine in groups:
        counts = Counter(r["verdict"] for r in mine)
        lines.append(
            f"| {label} | {counts['duplicate']} | {counts['suspect']} | {_cpu(mine):.2f} |"
        )
    found_auto = Counter(
        (r["mask"], r["louder_db"])
        for r in attacks
        if r["mode"] == "auto" and r["verdict"] == "duplicate" and r["right_work"]
    )
    every = Counter((r["mask"], r["louder_db"]) for r in attacks if r["mode"] == "auto")
    found_never = Counter(
        (r["mask"], r["louder_db"])
        for r in attacks
        if r["mode"] == "never" and r["verdict"] == "duplicate" and r["right_work"]
    )
    lines += ["", "| other channel, louder by | found, never | found, auto |", "|---|---:|---:|"]
    for kind in sorted(every):
        lines.append(
            f"| {kind[0]}, {kind[1]:g} dB | {found_never[kind]} / {every[kind]} | "
            f"{found_auto[kind]} / {every[kind]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    command_line("python -m benchmarks.stereo_channels", run, table, 36, argv)


if __name__ == "__main__":
    main()
