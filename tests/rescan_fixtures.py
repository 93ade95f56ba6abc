"""A catalog with planted altered copies, shared by the rescan and report tests.

Six fixture works, four altered copies of three of them (made at test time with pedalboard's
Rubber Band and scipy resampling, never with audiodup code) and three unrelated synthetic works.
The metadata CSV names uploaders and upload dates so that originals and uploader rankings are
known.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pedalboard
import soundfile as sf
from scipy.signal import resample_poly

from audiodup.synth import synthesize_work

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_CATALOG = ROOT / "fixtures" / "audio" / "catalog"
SR = 22050


@dataclass(frozen=True)
class Planted:
    name: str
    source: str  # fixture work stem
    tempo_ratio: float  # copy tempo / original tempo
    pitch_shift_semitones: float  # copy pitch - original pitch
    uploader: str
    uploaded_at: str


PLANTED = (
    Planted("w00_slow.wav", "work_00", 0.85, 0.0, "ring", "2023-05-01"),
    Planted("w00_up2.wav", "work_00", 1.0, 2.0, "ring", "2023-05-02T10:00:00Z"),
    Planted("w01_speed.wav", "work_01", 1.12, 12 * math.log2(1.12), "ring", "2023-05-03"),
    Planted("w02_fast_down1.wav", "work_02", 1.2, -1.0, "solo", "2024-01-15"),
)
UNRELATED = {
    "synth_200.wav": ("ring", 200),
    "synth_201.wav": ("ring", 201),
    "synth_202.wav": ("indie", 202),
}
EXPECTED_CLUSTERS = [
    {"work_00.ogg", "w00_slow.wav", "w00_up2.wav"},
    {"work_01.ogg", "w01_speed.wav"},
    {"work_02.ogg", "w02_fast_down1.wav"},
]


def alter(y: np.ndarray, planted: Planted) -> np.ndarray:
    if planted.name == "w01_speed.wav":  # resampling: tempo and pitch change together
        ratio = Fraction(planted.tempo_ratio).limit_denominator(100)
        return resample_poly(y, ratio.denominator, ratio.numerator).astype(np.float32)
    return pedalboard.time_stretch(
        y[None, :],
        SR,
        stretch_factor=planted.tempo_ratio,
        pitch_shift_in_semitones=planted.pitch_shift_semitones,
    )[0]


def write_planted_audio(folder: Path) -> dict[str, Path]:
    """Write the copies and the unrelated works into ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for planted in PLANTED:
        y, sr = sf.read(FIXTURE_CATALOG / f"{planted.source}.ogg", dtype="float32")
        assert sr == SR
        files[planted.name] = folder / planted.name
        sf.write(files[planted.name], alter(y, planted), SR)
    for name, (_, seed) in UNRELATED.items():
        files[name] = folder / name
        sf.write(files[name], synthesize_work(seed, 30.0, SR), SR)
    return files


def write_metadata(path: Path, files: dict[str, Path]) -> Path:
    """Metadata for the fixture works (uploader ``label``, 2020) and the planted files."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "work_id", "title", "uploader", "uploaded_at", "territory"])
        for i in range(6):
            writer.writerow(
                [
                    FIXTURE_CATALOG / f"work_{i:02d}.ogg",
                    f"L-{i}",
                    f"Original {i}",
                    "label",
                    f"2020-0{i + 1}-01",
                    "BR",
                ]
            )
        for planted in PLANTED:
            writer.writerow(
                [
                    files[planted.name],
                    f"X-{planted.name}",
                    planted.name,
                    planted.uploader,
                    planted.uploaded_at,
                    "",
                ]
            )
        for name, (uploader, _) in UNRELATED.items():
            writer.writerow([files[name], f"U-{name}", name, uploader, "2022-01-01", ""])
    return path


def clusters_by_name(report) -> list[set[str]]:
    return [{Path(m.path).name for m in c.members} for c in report.clusters]


def expected_pairs() -> set[tuple[str, str]]:
    """Every pair of works inside a planted cluster, as sorted file names."""
    out = set()
    for cluster in EXPECTED_CLUSTERS:
        for a in cluster:
            for b in cluster:
                if a < b:
                    out.add((a, b))
    return out
