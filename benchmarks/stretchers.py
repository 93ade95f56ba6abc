"""Time-stretch and pitch-shift with independent implementations, run as command-line tools.

A copy made with one stretcher can fool a detector that was only ever tried on another, so the
benchmark makes its tempo and pitch variants with several (issue #12):

- ``rb-r2`` and ``rb-r3``: Rubber Band's R2 (phase vocoder) and R3 engines, ``rubberband -2/-3``
  from Debian's ``rubberband-cli`` (pedalboard links the same library, so it is a third build);
- ``sox``: SoX's ``tempo`` and ``pitch`` effects (WSOLA), Debian's ``sox``;
- ``ffmpeg``: ``atempo`` (WSOLA-like overlap-add); pitch as ``asetrate`` + ``aresample`` +
  ``atempo`` (resample, then restore the tempo), Debian's ``ffmpeg``.

Conventions as in :mod:`benchmarks.alterations`: ``tempo_ratio`` = upload tempo / original tempo
(2.0 plays twice as fast and lasts half as long), ``semitones`` > 0 raises the pitch.
:func:`measure_conventions` checks them on a tone for every available tool.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

STRETCHERS = ("rb-r2", "rb-r3", "sox", "ffmpeg")
_EXECUTABLE = {"rb-r2": "rubberband", "rb-r3": "rubberband", "sox": "sox", "ffmpeg": "ffmpeg"}
_DEBIAN_PACKAGE = {"rb-r2": "rubberband-cli", "rb-r3": "rubberband-cli", "sox": "sox"}
_TIMEOUT_S = 1800


class StretcherUnavailable(RuntimeError):
    """The tool behind a stretcher is not installed."""


def available(stretcher: str) -> bool:
    return shutil.which(_EXECUTABLE[stretcher]) is not None


def missing_message(stretcher: str) -> str:
    package = _DEBIAN_PACKAGE.get(stretcher, _EXECUTABLE[stretcher])
    return f"{stretcher} needs '{_EXECUTABLE[stretcher]}' (apt-get install {package})"


def _atempo_chain(tempo_ratio: float) -> list[str]:
    """``atempo`` filters whose product is ``tempo_ratio`` (older ffmpeg takes 0.5-2.0 each)."""
    parts = []
    while tempo_ratio < 0.5 or tempo_ratio > 2.0:
        step = 0.5 if tempo_ratio < 0.5 else 2.0
        parts.append(step)
        tempo_ratio /= step
    parts.append(tempo_ratio)
    return [f"atempo={p:.6f}" for p in parts]


def command(
    stretcher: str, src: str, dst: str, sr: int, tempo_ratio: float = 1.0, semitones: float = 0.0
) -> list[str]:
    """The command line that renders ``src`` into ``dst`` (both WAV at ``sr``)."""
    if stretcher in ("rb-r2", "rb-r3"):
        engine = "-2" if stretcher == "rb-r2" else "-3"
        return ["rubberband", engine, "-q", f"-T{tempo_ratio:.6f}", f"-p{semitones:.6f}", src, dst]
    if stretcher == "sox":
        effects = []
        if semitones:
            effects += ["pitch", f"{100.0 * semitones:.3f}"]
        if tempo_ratio != 1.0:
            effects += ["tempo", "-m", f"{tempo_ratio:.6f}"]
        return ["sox", "-q", "-D", src, dst, *effects]
    if stretcher == "ffmpeg":
        filters = []
        if semitones:
            factor = 2.0 ** (semitones / 12.0)
            filters += [f"asetrate={sr * factor:.3f}", f"aresample={sr}"]
            filters += _atempo_chain(1.0 / factor)
        if tempo_ratio != 1.0:
            filters += _atempo_chain(tempo_ratio)
        graph = ",".join(filters) or "anull"
        return ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", src, "-af", graph, dst]
    raise ValueError(f"unknown stretcher {stretcher!r}; choose from {', '.join(STRETCHERS)}")


def render(
    stretcher: str, y: np.ndarray, sr: int, tempo_ratio: float = 1.0, semitones: float = 0.0
) -> np.ndarray:
    """Time-stretch and/or pitch-shift mono float32 ``y`` with ``stretcher``; mono float32."""
    if not available(stretcher):
        raise StretcherUnavailable(missing_message(stretcher))
    with tempfile.TemporaryDirectory(prefix="audiodup-stretch-") as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, np.asarray(y, dtype=np.float32), sr, subtype="FLOAT")
        cmd = command(stretcher, str(src), str(dst), sr, tempo_ratio, semitones)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S)
        if done.returncode != 0 or not dst.exists():
            raise RuntimeError(f"{' '.join(cmd[:3])} failed: {done.stderr.strip()[-300:]}")
        out, out_sr = sf.read(dst, dtype="float32", always_2d=True)
    if out_sr != sr:
        raise RuntimeError(f"{stretcher} wrote {out_sr} Hz, expected {sr} Hz")
    return out.mean(axis=1, dtype=np.float32)


def render_tempo_ramp(
    stretcher: str, y: np.ndarray, sr: int, start_ratio: float, end_ratio: float
) -> np.ndarray:
    """Key-locked tempo ramp: the tempo ratio goes linearly from ``start_ratio`` to
    ``end_ratio`` along the source, through Rubber Band's time map (``-M``: source frame, target
    frame pairs every 0.25 s), pitch kept. Only the Rubber Band engines take a time map."""
    if stretcher not in ("rb-r2", "rb-r3"):
        raise ValueError(f"{stretcher} takes no time map; use rb-r2 or rb-r3")
    if not available(stretcher):
        raise StretcherUnavailable(missing_message(stretcher))
    source = np.arange(0, y.size, max(1, sr // 4))
    target = ramp_target_frames(source, y.size, start_ratio, end_ratio)
    total = ramp_target_frames(np.array([y.size]), y.size, start_ratio, end_ratio)[0]
    with tempfile.TemporaryDirectory(prefix="audiodup-ramp-") as tmp:
        src, dst, timemap = Path(tmp) / "in.wav", Path(tmp) / "out.wav", Path(tmp) / "map.txt"
        sf.write(src, np.asarray(y, dtype=np.float32), sr, subtype="FLOAT")
        timemap.write_text("".join(f"{a} {b}\n" for a, b in zip(source, target, strict=True)))
        engine = "-2" if stretcher == "rb-r2" else "-3"
        cmd = [
            "rubberband",
            engine,
            "-q",
            f"-D{total / sr:.6f}",
            f"-M{timemap}",
            str(src),
            str(dst),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S)
        if done.returncode != 0 or not dst.exists():
            raise RuntimeError(f"rubberband time map failed: {done.stderr.strip()[-300:]}")
        out, _ = sf.read(dst, dtype="float32", always_2d=True)
    return out.mean(axis=1, dtype=np.float32)


def ramp_target_frames(
    source: np.ndarray, n_source: int, start_ratio: float, end_ratio: float
) -> np.ndarray:
    """Where source frames land when the tempo ratio (source speed) ramps linearly from
    ``start_ratio`` at frame 0 to ``end_ratio`` at ``n_source``: the integral of 1/ratio."""
    slope = (end_ratio - start_ratio) / n_source
    x = source.astype(np.float64)
    if abs(slope) < 1e-15:
        return np.round(x / start_ratio).astype(np.int64)
    return np.round(np.log1p(slope * x / start_ratio) / slope).astype(np.int64)


def dominant_frequency_hz(y: np.ndarray, sr: int) -> float:
    """Power-weighted mean frequency within a semitone of the strongest bin: a phase vocoder
    spreads a pure tone over neighbouring bins, so the argmax alone can be off by 0.2 st."""
    power = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
    freqs = np.fft.rfftfreq(y.size, 1.0 / sr)
    peak = freqs[int(np.argmax(power))]
    near = (freqs > peak * 2 ** (-1 / 12)) & (freqs < peak * 2 ** (1 / 12))
    return float(np.sum(freqs[near] * power[near]) / np.sum(power[near]))


def measure_conventions(sr: int = 22050) -> dict[str, float]:
    """Length ratio at tempo 1.25 and the frequency of a 440 Hz tone shifted +7 semitones, per
    available stretcher. Raises if one does not follow the conventions of this module."""
    t = np.arange(4 * sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    want_hz = 440.0 * 2 ** (7 / 12)
    measured: dict[str, float] = {}
    for name in STRETCHERS:
        if not available(name):
            continue
        length_ratio = render(name, tone, sr, tempo_ratio=1.25).size / tone.size
        shifted_hz = dominant_frequency_hz(render(name, tone, sr, semitones=7.0), sr)
        measured[f"{name}_length_ratio_at_tempo_1.25"] = round(length_ratio, 4)
        measured[f"{name}_tone_440hz_plus7_semitones_hz"] = round(shifted_hz, 1)
        if abs(length_ratio - 0.8) > 0.02 or abs(12 * math.log2(shifted_hz / want_hz)) > 0.15:
            raise AssertionError(
                f"{name}: tempo 1.25 gave length ratio {length_ratio:.3f}, "
                f"+7 semitones gave {shifted_hz:.1f} Hz (want {want_hz:.1f})"
            )
    return measured
