"""Held chords against real music: is ``chroma.steadiness`` a safe line? (issue #14, session 37)

    python -m benchmarks.held_chords [--catalog-dir DIR ...] [--out benchmarks/HELD_CHORDS.md]

Two measurements, written as one markdown section appended to ``--out``:

1. **Real music.** The steadiness of every 3-, 5- and 10-s window of the stored fingerprints of
   the given catalogs (by default the tuning and held-out benchmark catalogs): how much real
   music the rule ``held_chord_min_steadiness`` would call a held chord.
2. **Held chords.** Three works of 40 s of synthetic music, each ending on a chord held for 6 s
   (A3; A major; a power chord on A2), and 160 uploads of held chords and tones: four chords
   (those three and C major 7) of 6 and 12 s, drawn as the works' own (the same phases), with
   another harmonic roll-off, random phases or vibrato, each clean, under white noise at 20
   and 10 dB SNR, reverb (pedalboard) or MP3 (pedalboard, 96 kbit/s). Verdicts with the rule
   and, from the same matches, without it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

from audiodup import Catalog
from audiodup.audio import load_audio
from audiodup.chroma import steadiness
from audiodup.fingerprint import fingerprint_audio
from audiodup.settings import DEFAULT_SETTINGS
from audiodup.synth import synthesize_work
from audiodup.verdict import decide
from benchmarks.corpus import cache_dir
from benchmarks.runner import git_commit, machine_info

SR = 22050
WINDOWS_S = (3, 5, 10)
WORK_CHORDS_HZ = {"A3": (220.0,), "A major": (220.0, 277.2, 329.6), "A2 power": (110.0, 164.8)}
UPLOAD_CHORDS_HZ = {**WORK_CHORDS_HZ, "C major 7": (130.8, 164.8, 196.0, 246.9)}
VARIANTS = ("same", "rolloff 1.2", "random phases", "vibrato")
TITLE = (
    "# Held chords against real music\n\n"
    "A same recording whose upload keeps one chord over the aligned part (`chroma_steadiness`"
    " at or above `held_chord_min_steadiness`) is at most `suspect` (`audiodup.verdict."
    "held_chord`). Each section below is one run of `python -m benchmarks.held_chords`; see"
    " its docstring for what it builds.\n"
)
EFFECTS = ("clean", "noise 20 dB", "noise 10 dB", "reverb", "mp3 96k")


def window_steadiness(chroma: np.ndarray, window: int) -> np.ndarray:
    """:func:`audiodup.chroma.steadiness` of every ``window`` consecutive chroma frames."""
    norms = np.linalg.norm(chroma, axis=1)
    sounding = norms > 1e-3
    unit = np.where(sounding[:, None], chroma / np.maximum(norms, 1e-9)[:, None], 0.0)
    sums = np.cumsum(np.vstack([np.zeros((1, 12)), unit]), axis=0)
    counts = np.cumsum(np.r_[0, sounding])
    n = counts[window:] - counts[:-window]
    length = np.linalg.norm(sums[window:] - sums[:-window], axis=1)
    return np.minimum(1.0, length[n > 0] / n[n > 0])


def real_music(catalog_dirs: Sequence[Path]) -> tuple[float, dict[int, np.ndarray]]:
    """Hours of stored music and the steadiness of each window length's windows."""
    fps, hours = DEFAULT_SETTINGS.chroma_fps, 0.0
    found: dict[int, list[np.ndarray]] = {w: [] for w in WINDOWS_S}
    for folder in catalog_dirs:
        with Catalog.open(folder, create=False) as catalog:
            for work in catalog.store.works():
                fingerprint = catalog.store.fingerprint(work.work_id)
                hours += fingerprint.duration_s / 3600
                chroma = fingerprint.chroma.astype(np.float64)
                for seconds in WINDOWS_S:
                    if len(chroma) >= seconds * fps:
                        found[seconds].append(window_steadiness(chroma, int(seconds * fps)))
    return hours, {s: np.concatenate(v) if v else np.zeros(0) for s, v in found.items()}


def chord(freqs_hz: Sequence[float], seconds: float, variant: str, seed: int = 3) -> np.ndarray:
    """12 harmonics of each of ``freqs_hz`` (amplitude 1 / h), faded in and out over 0.3 s;
    ``variant`` as in :data:`VARIANTS`."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    rolloff = 1.2 if variant == "rolloff 1.2" else 1.0
    for f0 in freqs_hz:
        for h in range(1, 13):
            if f0 * h > 0.45 * SR:
                break
            phase = rng.uniform(0, 2 * np.pi) if variant == "random phases" else 0.0
            wobble = 0.3 * h * np.sin(2 * np.pi * 5 * t) if variant == "vibrato" else 0.0
            x += np.sin(2 * np.pi * f0 * h * t + wobble + phase) / h**rolloff
    fade = np.minimum(1.0, np.minimum(t / 0.3, (seconds - t) / 0.3))
    return (0.5 * x / np.abs(x).max() * fade).astype(np.float32)


def with_effect(x: np.ndarray, effect: str, folder: Path, name: str, seed: int) -> Path:
    """``x`` with ``effect`` (:data:`EFFECTS`) written to a file in ``folder``."""
    import pedalboard

    if effect.startswith("noise"):
        snr_db = float(effect.split()[1])
        noise = np.random.default_rng(seed).standard_normal(len(x)).astype(np.float32)
        x = x + noise * np.std(x) / 10 ** (snr_db / 20)
    elif effect == "reverb":
        x = pedalboard.Pedalboard([pedalboard.Reverb(room_size=0.8)])(x[None], SR)[0]
    if effect == "mp3 96k":
        path = folder / f"{name}.mp3"
        with pedalboard.io.AudioFile(str(path), "w", SR, 1, quality="96k") as out:
            out.write(x[None])
        return path
    path = folder / f"{name}.wav"
    sf.write(path, x, SR)
    return path


def own_steadiness(path: Path) -> float:
    """The steadiness of the whole upload at ``path`` but its fades."""
    fingerprint = fingerprint_audio(load_audio(path), DEFAULT_SETTINGS, query=True)
    span = [(0.5, fingerprint.duration_s - 0.5)]
    return steadiness(fingerprint.chroma, span, DEFAULT_SETTINGS.chroma_fps)


def held_chords(folder: Path) -> list[dict]:
    """Screen the held chords of :data:`UPLOAD_CHORDS_HZ` against works ending on those of
    :data:`WORK_CHORDS_HZ`; one row per upload."""
    works = []
    for index, freqs in enumerate(WORK_CHORDS_HZ.values()):
        music = synthesize_work(9400 + index, duration_s=40.0, sr=SR)
        works.append(folder / f"work{index}.wav")
        sf.write(works[-1], np.concatenate([music, chord(freqs, 6.0, "same", seed=0)]), SR)
    rows = []
    with Catalog.open(folder / "catalog", create=True) as catalog:
        catalog.add_paths(works)
        without = replace(DEFAULT_SETTINGS, held_chord_min_steadiness=float("inf"))
        for name, freqs in UPLOAD_CHORDS_HZ.items():
            for seconds in (6.0, 12.0):
                for variant in VARIANTS:
                    x = chord(freqs, seconds, variant, seed=0 if variant == "same" else 3)
                    for k, effect in enumerate(EFFECTS):
                        label = f"{name}, {seconds:g} s, {variant}, {effect}"
                        stem = f"u{len(rows)}"
                        path = with_effect(x, effect, folder, stem, seed=k)
                        verdict = catalog.screen(path)
                        steadiness = [
                            m.chroma_steadiness
                            for m in verdict.matches
                            if m.chroma_steadiness is not None
                        ]
                        rows.append(
                            {
                                "upload": label,
                                "verdict": verdict.verdict,
                                "without_rule": decide(list(verdict.matches), without),
                                "steadiness": min(steadiness, default=None),
                                "own_steadiness": own_steadiness(path),
                            }
                        )
    return rows


def report(hours: float, windows: dict[int, np.ndarray], rows: list[dict], command: str) -> str:
    line = DEFAULT_SETTINGS.held_chord_min_steadiness
    machine = machine_info()
    out = [
        f"## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit `{git_commit()}`, "
        f"{machine['cpu']}, {machine['cores']} cores, {machine['ram_gb']} GB RAM",
        "",
        f"`{command}`",
        "",
        f"**Real music** ({hours:.1f} hours of stored fingerprints): windows whose steadiness "
        f"reaches the held-chord line {line}.",
        "",
        "| window | windows | at or above the line | share | highest |",
        "|---|---:|---:|---:|---:|",
    ]
    for seconds, values in windows.items():
        above = int((values >= line).sum())
        share = 100 * above / max(len(values), 1)
        top = float(values.max()) if len(values) else float("nan")
        out.append(f"| {seconds} s | {len(values):,} | {above:,} | {share:.3f} % | {top:.4f} |")
    verdicts = Counter(r["verdict"] for r in rows)
    before = Counter(r["without_rule"] for r in rows)
    measured = [r["steadiness"] for r in rows if r["steadiness"] is not None]
    out += [
        "",
        f"**Held chords** ({len(rows)} uploads against 3 works ending on a held chord): "
        f"with the rule {dict(sorted(verdicts.items()))}, without it "
        f"{dict(sorted(before.items()))}. Lowest steadiness of an upload with a match: "
        f"{min(measured, default=float('nan')):.4f} ({len(measured)} uploads with a match); "
        f"of the whole uploads (but their fades): {min(r['own_steadiness'] for r in rows):.4f}.",
        "",
    ]
    flagged = [r for r in rows if r["without_rule"] == "duplicate" or r["verdict"] != "clean"]
    if flagged:
        out += ["| upload | without the rule | with it | steadiness |", "|---|---|---|---:|"]
        out += [
            f"| {r['upload']} | {r['without_rule']} | {r['verdict']} | {r['steadiness']:.4f} |"
            for r in flagged
        ]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.held_chords")
    parser.add_argument("--catalog-dir", type=Path, action="append", default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/HELD_CHORDS.md"))
    args = parser.parse_args(argv)
    catalogs = args.catalog_dir or [
        cache_dir() / "catalog-full",
        cache_dir() / "heldout" / "catalog-full",
    ]
    hours, windows = real_music(catalogs)
    with tempfile.TemporaryDirectory(prefix="audiodup-held-chords-") as scratch:
        rows = held_chords(Path(scratch))
    command = "python -m benchmarks.held_chords " + " ".join(argv or sys.argv[1:])
    text = report(hours, windows, rows, command.strip())
    previous = args.out.read_text(encoding="utf-8") if args.out.exists() else TITLE
    args.out.write_text(previous + "\n" + text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
