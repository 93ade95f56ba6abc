"""Beats built from one drum kit: does a catalog beat make other beats from the same one-shot
sounds a duplicate? A known limit (README, "What it does not"), measured here.

A kit (a swept-sine kick, a noise-and-tone snare, a noise hat, each made once) is placed by a
16-step pattern at 120 bpm for 60 s. Two catalogs of 15 tuning clips: one adds the bare beat of
pattern P1 (kick 1 and 3, snare 2 and 4, eighth hats), the other P1 and four more patterns. The
uploads, never indexed:

- **chance**: the kit in pattern P3 and in 4 seeded random patterns; 4 other tuning clips over
  the P3 beat twice as loud as them; P1 played by another kit (other sounds, same pattern);
- **copies**: P1's beat sped up 1.05x (resampled) and stretched 0.9x (pedalboard), and a
  catalog clip sped up 1.1x.

Every upload is screened with every look (``screening.gather_looks``).

    python -m benchmarks.kit_beats --work /tmp/kit --out benchmarks/KIT_BEATS.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pedalboard
import soundfile as sf
from scipy.signal import resample_poly

from audiodup import Catalog
from audiodup.settings import DEFAULT_SETTINGS
from benchmarks.stock_samples import (
    _clip,
    _error,
    _normalised,
    argument_error,
    long_tracks,
    report_head,
    screened,
)

SR = 22050
BPM = 120
BARS = 30  # 60 s
N_CLIPS = 15
PATTERNS = {  # 16th-note steps of one bar
    "P1": {"kick": [0, 8], "snare": [4, 12], "hat": list(range(0, 16, 2))},
    "P2": {"kick": [0, 3, 6, 10], "snare": [4, 12], "hat": list(range(16))},
    "P4": {"kick": [0, 10], "snare": [4, 12], "hat": [0, 3, 6, 9, 12, 15]},
    "P5": {"kick": [0, 6, 8], "snare": [4, 12], "hat": []},
    "P6": {"kick": [2, 10], "snare": [6, 14], "hat": [0, 4, 8, 12]},
}
P3 = {"kick": [0, 7, 8, 14], "snare": [4, 12, 15], "hat": [2, 6, 10, 14]}


def _seconds(duration: float) -> np.ndarray:
    return np.arange(int(duration * SR)) / SR


def kit(seed: int = 0, kick_hz: float = 150.0, snare_hz: float = 190.0) -> dict[str, np.ndarray]:
    """Three one-shot sounds, the same every time they are made from the same arguments."""
    rng = np.random.default_rng(seed)
    t = _seconds(0.35)
    sweep = 45.0 + (kick_hz - 45.0) * np.exp(-t * 25)
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / SR) * np.exp(-t * 9)
    t = _seconds(0.2)
    noise = np.diff(rng.normal(0, 1, t.size + 1))
    snare = (0.6 * noise + 0.5 * np.sin(2 * np.pi * snare_hz * t)) * np.exp(-t * 22)
    t = _seconds(0.05)
    hat = np.diff(rng.normal(0, 1, t.size + 2), 2) * np.exp(-t * 80) * 0.3
    return {"kick": kick, "snare": snare, "hat": hat}


def beat(pattern: dict[str, list[int]], sounds: dict[str, np.ndarray]) -> np.ndarray:
    """``sounds`` placed by ``pattern`` for :data:`BARS` bars."""
    step = int(round(60 / BPM / 4 * SR))
    y = np.zeros(BARS * 16 * step + SR)
    for bar in range(BARS):
        for name, steps in pattern.items():
            for i in steps:
                at = (bar * 16 + i) * step
                y[at : at + sounds[name].size] += sounds[name]
    return y[: BARS * 16 * step]


def random_pattern(rng: np.random.Generator) -> dict[str, list[int]]:
    return {
        name: sorted(rng.choice(16, n, replace=False).tolist())
        for name, n in (("kick", 3), ("snare", 2), ("hat", 5))
    }


def build(folder: Path) -> dict[str, str | None]:
    """Both catalogs' works and the uploads; ``{upload: the work it copies, or None}``."""
    tracks = long_tracks()
    sounds, other_kit = kit(), kit(seed=20, kick_hz=100.0, snare_hz=250.0)
    for name in ("one", "five"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    uploads = folder / "uploads"
    uploads.mkdir(exist_ok=True)
    for k in range(N_CLIPS):
        clip = _normalised(_clip(tracks[k]))
        for name in ("one", "five"):
            sf.write(folder / name / f"clip{k:02d}.wav", clip, SR)
    for name, pattern in PATTERNS.items():
        y = _normalised(beat(pattern, sounds))
        sf.write(folder / "five" / f"beat_{name}.wav", y, SR)
        if name == "P1":
            sf.write(folder / "one" / "beat_P1.wav", y, SR)
    truth: dict[str, str | None] = {}

    def upload(name: str, y: np.ndarray, copied: str | None) -> None:
        sf.write(uploads / name, _normalised(y), SR)
        truth[name] = copied

    p3 = beat(P3, sounds)
    upload("samekit_P3.wav", p3, None)
    rng = np.random.default_rng(5)
    for k in range(4):
        upload(f"samekit_random{k}.wav", beat(random_pattern(rng), sounds), None)
    for k in range(4):
        music = _clip(tracks[N_CLIPS + k])
        n = min(music.size, p3.size)
        mixed = music[:n] / _rms(music[:n]) + 2.0 * p3[:n] / _rms(p3[:n])
        upload(f"music{k}_over_P3.wav", mixed, None)
    upload("otherkit_P1.wav", beat(PATTERNS["P1"], other_kit), None)
    p1 = beat(PATTERNS["P1"], sounds)
    upload("copy_P1_speed1.05.wav", resample_poly(p1, 20, 21), "beat_P1")
    stretched = pedalboard.time_stretch(p1[None].astype(np.float32), SR, stretch_factor=0.9)[0]
    upload("copy_P1_stretch0.9.wav", stretched, "beat_P1")
    upload("copy_clip03_speed1.1.wav", resample_poly(_clip(tracks[3]), 10, 11), "clip03")
    return truth


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(y**2))) or 1.0


def screen(folder: Path, truth: dict[str, str | None]) -> list[dict]:
    rows = []
    for name in ("one", "five"):
        with Catalog.open(folder / f"catalog-{name}") as catalog:
            if not catalog.works():
                catalog.add_paths([folder / name])
            indexes = catalog.indexes()
            names = {w.work_id: Path(w.path).stem for w in catalog.works()}
            for upload, copied in truth.items():
                path = folder / "uploads" / upload
                found = screened(path, catalog, indexes, DEFAULT_SETTINGS, names)
                rows.append({"catalog": name, "upload": upload, "copied": copied, **found})
    return rows


def report(rows: list[dict], out: Path | None) -> None:
    lines = [
        *report_head("Beats from one drum kit"),
        "`python -m benchmarks.kit_beats` (the catalogs and uploads are described in its "
        "docstring). Catalog `one`: 15 clips and the bare beat P1; `five`: 15 clips and 5 beats "
        "of the kit.",
        "",
        "| catalog | upload | should be | verdict | top work | probability |",
        "|---|---|---|---|---|---:|",
    ]
    for r in rows:
        fmp = f"{r['fmp']:.2g}" if r["fmp"] is not None else ""
        should = f"a copy of {r['copied']}" if r["copied"] else "clean"
        lines.append(
            f"| {r['catalog']} | {r['upload']} | {should} | {r['verdict']} | {r['top'] or ''} "
            f"| {fmp} |"
        )
    for name in ("one", "five"):
        chance = [r for r in rows if r["catalog"] == name and r["copied"] is None]
        copies = [r for r in rows if r["catalog"] == name and r["copied"] is not None]
        dup = sum(r["verdict"] == "duplicate" for r in chance)
        sus = sum(r["verdict"] == "suspect" for r in chance)
        found = sum(r["verdict"] == "duplicate" and r["top"] == r["copied"] for r in copies)
        lines.append(
            f"\nCatalog `{name}`: {dup} of {len(chance)} chance uploads `duplicate`, {sus} "
            f"`suspect`; {found} of {len(copies)} copies found."
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="where the files are built")
    parser.add_argument("--out", type=Path, default=None, help="markdown report")
    args = parser.parse_args(argv)
    problem = argument_error(args.work, args.out, N_CLIPS + 4)
    if problem:
        return _error(problem)
    report(screen(args.work, build(args.work)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
