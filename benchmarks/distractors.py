"""Generated works: negatives for the smoke run and distractors for catalog-size scaling.

Uses ``audiodup.synth.synthesize_work(seed, duration_s, sr)`` when it exists. Otherwise a small
stand-in of our own (random chord progressions with drums and noise), and callers say so.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.queries import write_flac


def _fallback_work(seed: int, duration_s: float, sr: int) -> np.ndarray:
    """Music-like audio: a seeded chord progression of harmonic tones, kick and hi-hat."""
    rng = np.random.default_rng([seed, 0xD15])
    n = int(duration_s * sr)
    y = np.zeros(n, np.float64)
    bpm = rng.uniform(70, 160)
    beat = int(sr * 60 / bpm)
    root = rng.uniform(40, 60)  # MIDI note
    scale = (
        np.array([0, 2, 3, 5, 7, 8, 10]) if rng.random() < 0.5 else np.array([0, 2, 4, 5, 7, 9, 11])
    )
    t_beat = np.arange(beat) / sr
    env = np.exp(-t_beat * rng.uniform(2, 6))
    for start in range(0, n, beat * 2):
        degree = rng.integers(0, 7, size=3)
        seg = np.zeros(min(beat * 2, n - start))
        tt = np.arange(seg.size) / sr
        for d in degree:
            f = 440 * 2 ** ((root + scale[d] + 12 * rng.integers(0, 2) - 69) / 12)
            for h in range(1, 5):
                seg += np.sin(2 * np.pi * f * h * tt + rng.uniform(0, 6.3)) / h**1.5
        seg *= np.exp(-tt * rng.uniform(0.5, 3))
        y[start : start + seg.size] += 0.08 * seg
    kick = np.sin(2 * np.pi * 55 * t_beat * np.exp(-t_beat * 8)) * np.exp(-t_beat * 12)
    for start in range(0, n - beat, beat):
        if rng.random() < 0.8:
            y[start : start + beat] += 0.3 * kick
        if rng.random() < 0.6:
            h = min(beat // 4, n - start - beat // 2)
            y[start + beat // 2 : start + beat // 2 + h] += 0.05 * rng.standard_normal(h) * env[:h]
    return (0.9 * y / (np.abs(y).max() or 1.0)).astype(np.float32)


def synthesizer() -> tuple[Callable[[int, float, int], np.ndarray], str]:
    """``(synthesize_work, description)``: audiodup's if importable, else the fallback."""
    try:
        from audiodup.synth import synthesize_work  # type: ignore[import-not-found]

        return synthesize_work, "audiodup.synth.synthesize_work"
    except Exception:  # noqa: BLE001 - any import problem means: use our own generator
        return _fallback_work, "benchmarks.distractors fallback generator (audiodup.synth missing)"


def _make(args: tuple[Path, int, float, int]) -> None:
    path, seed, duration_s, sr = args
    if path.exists():
        return
    synth, _ = synthesizer()
    try:
        y = synth(seed, duration_s, sr)
    except Exception:  # noqa: BLE001 - a broken synth must not stop the benchmark
        y = _fallback_work(seed, duration_s, sr)
    write_flac(path, np.asarray(y, dtype=np.float32).reshape(-1), sr)


def generated_works(
    directory: Path,
    seeds: range | list[int],
    duration_s: float,
    sr: int = 22050,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Path], str]:
    """FLAC files of generated works (cached by seed/duration/generator)."""
    _, desc = synthesizer()
    tag = "ad" if desc.startswith("audiodup") else "fb"
    directory.mkdir(parents=True, exist_ok=True)
    jobs = [
        (directory / f"gen_{tag}_{int(duration_s)}s_{s:06d}.flac", s, duration_s, sr) for s in seeds
    ]
    todo = [j for j in jobs if not j[0].exists()]
    if workers > 1 and len(todo) > 8:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_make, todo, chunksize=4):
                if progress:
                    progress(1)
    else:
        for j in todo:
            _make(j)
            if progress:
                progress(1)
    if progress:
        progress(len(jobs) - len(todo))
    return [j[0] for j in jobs], desc
