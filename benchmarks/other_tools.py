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

The ``effects`` set screens copies made with effects and codecs instead: ffmpeg's filters
(band limits, echo, chorus, flanger, vibrato, bit crushing, compression with loudness
normalisation), its resampling and WSOLA (``asetrate``, ``atempo``: "nightcore" and pitch shifts
kept at tempo) and encoders (Opus, AAC, Vorbis, 8 kHz mu-law), and pedalboard's distortion,
bit crusher, phaser, ladder filter, delay, reverb and GSM codec. The ``stereo`` set inverts the
polarity of one channel of the track's own stereo (also with an MP3 encode) or of a dual-mono
copy of it: a stereo listener hears the recording, a mean mix-down only what the channels do
not share. The ``edits`` set cuts the time line (sections shuffled, silence inserted), plays
it with a slow wow, or shifts the pitch by a fifth (soundstretch, +-7 semitones). The
``augment`` set stretches and shifts with two more engines, Signalsmith Stretch
(``python-stretch``) and Bungee (``bungee-python``), and applies audiomentations' effects
(aliasing, band stop, parametric EQ, coloured noise, air absorption, distortion, clipping,
limiting, a simulated room, a silenced part, a repeated part, a circular shift, a mirrored half,
gain ramps). The ``grains`` set changes the tempo with two time-domain tools of other families:
Praat's PSOLA (``praat-parselmouth``), made for speech, and pydub's speed-up, which drops
chunks and crossfades the rest. The ``reverb`` set makes "slowed + reverb" copies: a resampling
slow-down (or speed-up) and pedalboard's reverb, from the benchmark's own room up to rooms of
0.95 with more wet signal than dry.

    pip install '.[bench]' && apt-get install soundstretch ffmpeg
    python -m benchmarks.other_tools run --catalog CATALOG --out DIR [--set all] [--tracks 25]
    python -m benchmarks.other_tools report DIR/results.jsonl

``run`` cuts the first ``--cut-s`` seconds of ``--tracks`` catalog tracks and ``--negatives``
negatives of the benchmark corpus (evenly spaced, 44.1 kHz, mono but for the ``stereo`` set's
copies), makes every copy of the set
with the tools installed (a missing one is skipped with a line saying so), screens the cuts and
the copies against ``CATALOG`` (a catalog of the corpus's catalog tracks, such as the full run's)
and writes one JSON line per file. A copy is found when it is ``duplicate`` of a work of its
track's recording; any verdict but ``clean`` on a negative is a false positive. Not run in CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
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
    higher; ``method`` the tool's method (ffmpeg: its filter chain; pedalboard: a key of
    :func:`_boards`); ``then`` a step applied after the tool (``noise20``: white noise at 20 dB
    SNR; a key of :data:`ENCODES`: an encode by ffmpeg, the file screened as it is)."""

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


def _asetrate(speed: float, keep_tempo: bool = False) -> str:
    """ffmpeg's resampling speed change (a "nightcore"); with ``keep_tempo`` its WSOLA
    (``atempo``) undoes the tempo change, leaving a pitch shift."""
    chain = f"asetrate={SR * speed:.0f},aresample={SR}"
    return chain + (f",atempo={1 / speed:.5f}" if keep_tempo else "")


def _ffmpeg_pitch(semitones: float) -> Copy:
    speed = 2 ** (semitones / 12)
    name = f"ffmpeg pitch {semitones:+g} (asetrate + atempo)"
    return Copy(name, "ffmpeg", _asetrate(speed, keep_tempo=True), 1.0, semitones)


def _ffmpeg_filters(*named: tuple[str, str]) -> tuple[Copy, ...]:
    """``(name, filter chain)`` pairs as ffmpeg copies at the original tempo and pitch."""
    return tuple(Copy(f"ffmpeg {name}", "ffmpeg", chain) for name, chain in named)


EFFECTS = (
    Copy("ffmpeg opus 16k", "ffmpeg", "", then="opus_16k"),
    Copy("ffmpeg aac 32k", "ffmpeg", "", then="aac_32k"),
    Copy("ffmpeg vorbis q0", "ffmpeg", "", then="vorbis_q0"),
    Copy(
        "ffmpeg telephone band 300-3400 Hz + 8 kHz mu-law",
        "ffmpeg",
        "highpass=f=300,highpass=f=300,lowpass=f=3400,lowpass=f=3400",
        then="mulaw_8k",
    ),
    *_ffmpeg_filters(
        ("lowpass 2.5 kHz", "lowpass=f=2500,lowpass=f=2500"),
        ("highpass 800 Hz", "highpass=f=800,highpass=f=800"),
        ("echo 0.5 s", "aecho=0.8:0.8:500:0.5"),
        ("chorus", "chorus=0.5:0.9:50|60|40:0.4|0.32|0.3:0.25|0.4|0.3:2|2.3|1.3"),
        ("flanger", "flanger=depth=5:regen=20"),
        ("vibrato 5 Hz", "vibrato=f=5:d=0.3"),
        ("crusher 6 bit", "acrusher=bits=6:mode=log:aa=1"),
        ("compressor + loudnorm", "acompressor=threshold=-30dB:ratio=10:makeup=8,loudnorm"),
    ),
    Copy("ffmpeg asetrate 1.30", "ffmpeg", _asetrate(1.3), 1.3, _speed_semitones(1.3)),
    Copy("ffmpeg asetrate 0.80", "ffmpeg", _asetrate(0.8), 0.8, _speed_semitones(0.8)),
    _ffmpeg_pitch(-3.0),
    _ffmpeg_pitch(2.0),
    *(
        Copy(f"pedalboard {name}", "pedalboard", board)
        for name, board in (
            ("distortion 25 dB", "distortion"),
            ("bitcrush 5 bit", "bitcrush"),
            ("phaser", "phaser"),
            ("ladder lowpass 1 kHz", "ladder"),
            ("delay 0.3 s", "delay"),
            ("big reverb", "reverb"),
            ("gsm", "gsm"),
        )
    ),
)
# made from the track's own two channels (a mono track's channel twice)
STEREO = (
    Copy("stereo: right channel inverted", "stereo", "right"),
    Copy("stereo: left channel inverted + mp3 96k", "stereo", "left", then="mp3_96k"),
    Copy("stereo: dual mono, right channel inverted", "stereo", "dual"),
)
# edits of the recording's time line, and pitch shifts beyond the other sets' +5 / -4
EDITS = (
    Copy("edit: sections of 5 s shuffled", "edit", "shuffle 5"),
    Copy("edit: sections of 2 s shuffled", "edit", "shuffle 2"),
    Copy("edit: 0.5 s of silence after every 4 s", "edit", "gaps"),
    Copy("edit: wow 0.5 Hz, speed +-1 %", "edit", "wow"),
    Copy("soundstretch pitch +7", "soundstretch", "", 1.0, 7.0),
    Copy("soundstretch pitch -7", "soundstretch", "", 1.0, -7.0),
)
# two more time-scale and pitch engines (Signalsmith Stretch, Bungee) and audiomentations'
# effects, each at one fixed setting (a key of :func:`_augmenters`)
AUGMENT = (
    *_stretches("signalsmith tempo", "signalsmith", "", 1.25, 0.80, 2.0, 0.5),
    Copy("signalsmith pitch +3", "signalsmith", "", 1.0, 3.0),
    Copy("signalsmith pitch -4", "signalsmith", "", 1.0, -4.0),
    Copy("signalsmith tempo 1.10 + pitch -1", "signalsmith", "", 1.10, -1.0),
    *_stretches("bungee tempo", "bungee", "", 1.25, 0.80, 2.0, 0.5),
    Copy("bungee pitch +3", "bungee", "", 1.0, 3.0),
    Copy("bungee pitch -4", "bungee", "", 1.0, -4.0),
    *(
        Copy(f"audiomentations {name}", "audiomentations", name)
        for name in (
            "aliasing 8 kHz",
            "band stop 1 kHz",
            "seven-band EQ +-12 dB",
            "pink noise 10 dB",
            "white noise 5 dB",
            "air absorption 100 m",
            "tanh distortion 0.7",
            "clipping 40 %",
            "limiter -24 dB",
            "room rt60 0.8 s",
            "time mask 10 %",
            "part repeated 3 times",
            "rolled 30 %",
            "reflected padding 50 %",
            "gain transitions",
        )
    ),
)
# time-domain tools of other families: Praat's pitch-synchronous overlap-add (PSOLA, made for
# speech: on music it imposes the periodicity of the pitch marks it finds) and pydub's speed-up,
# which drops chunks and crossfades the rest
GRAINS = (
    *_stretches("praat psola tempo", "praat", "", 1.25, 0.80, 1.60),
    *_stretches("pydub speedup", "pydub", "", 1.25, 1.50, 2.0),
)
# "slowed + reverb": a resampling speed change (tempo and pitch move together), then pedalboard's
# reverb (method: "room:wet:dry"), from the benchmark's own room (0.7, 45 % wet, 60 % dry) to
# larger rooms with more of the wet signal than the dry
REVERB = (
    Copy("slowed 0.85 + reverb 0.70, the benchmark's", "reverb", "0.70:0.45:0.60", 0.85),
    Copy("slowed 0.85 + reverb 0.80", "reverb", "0.80:0.60:0.50", 0.85),
    Copy("slowed 0.85 + reverb 0.90", "reverb", "0.90:0.60:0.50", 0.85),
    Copy("slowed 0.85 + reverb 0.95", "reverb", "0.95:0.60:0.50", 0.85),
    Copy("slowed 0.85 + reverb 0.95 at the benchmark's levels", "reverb", "0.95:0.45:0.60", 0.85),
    Copy("slowed 0.75 + reverb 0.80", "reverb", "0.80:0.60:0.50", 0.75),
    Copy("sped up 1.25 + reverb 0.80", "reverb", "0.80:0.60:0.50", 1.25),
    Copy("reverb 0.90, 80 % wet, 30 % dry", "reverb", "0.90:0.80:0.30"),
)
REVERB = tuple(dataclasses.replace(c, semitones=_speed_semitones(c.tempo)) for c in REVERB)
SETS = {
    "moderate": MODERATE,
    "hard": HARD,
    "tsm": MODERATE + HARD,
    "effects": EFFECTS,
    "stereo": STEREO,
    "edits": EDITS,
    "augment": AUGMENT,
    "grains": GRAINS,
    "reverb": REVERB,
    "all": MODERATE + HARD + EFFECTS + STEREO + EDITS + AUGMENT + GRAINS + REVERB,
}
# an encode after the tool: the file's suffix, ffmpeg's encoder and its options
ENCODES = {
    "mp3_96k": (".mp3", "libmp3lame", ["-b:a", "96k"]),
    "opus_16k": (".opus", "libopus", ["-b:a", "16k"]),
    "aac_32k": (".m4a", "aac", ["-b:a", "32k"]),
    "vorbis_q0": (".ogg", "libvorbis", ["-q:a", "0"]),  # its lowest: ffmpeg drops a q below 0
    "mulaw_8k": (".wav", "pcm_mulaw", ["-ar", "8000"]),
}


# -- the tools -----------------------------------------------------------------------------------
# the Python package a tool is, when its name is not the tool's
_PACKAGES = {
    "signalsmith": "python_stretch",
    "bungee": "bungee_python",
    "praat": "parselmouth",
    "reverb": "pedalboard",
}


def tool_available(tool: str) -> bool:
    if tool in ("stereo", "edit"):  # numpy alone
        return True
    if tool in ("soundstretch", "ffmpeg"):
        return shutil.which(tool) is not None
    try:
        __import__(_PACKAGES.get(tool, tool))
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


def _ffmpeg(y: np.ndarray, copy: Copy) -> np.ndarray:
    if not copy.method:  # an encode only (``then``)
        return y
    return _through_files(
        y,
        lambda src, dst: _run_command(
            [*_FFMPEG, "-i", src, "-af", copy.method, "-ar", str(SR), "-ac", "1", dst]
        ),
    )


def _boards() -> dict[str, object]:
    import pedalboard as pb

    return {
        "distortion": pb.Distortion(drive_db=25),
        "bitcrush": pb.Bitcrush(bit_depth=5),
        "phaser": pb.Phaser(depth=0.8, mix=0.8),
        "ladder": pb.LadderFilter(mode=pb.LadderFilter.Mode.LPF24, cutoff_hz=1000),
        "delay": pb.Delay(delay_seconds=0.3, feedback=0.5, mix=0.5),
        "reverb": pb.Reverb(room_size=0.95, wet_level=0.6, dry_level=0.5),
        "gsm": pb.GSMFullRateCompressor(),
    }


def _pedalboard(y: np.ndarray, copy: Copy) -> np.ndarray:
    import pedalboard as pb

    board = pb.Pedalboard([_boards()[copy.method]])
    return board(y.astype(np.float32), SR).astype(np.float64).reshape(-1)


def _reverb(y: np.ndarray, copy: Copy) -> np.ndarray:
    """A resampling speed change by ``copy.tempo`` (none at 1), then pedalboard's reverb at
    the room size, wet and dry levels of ``copy.method`` (the length stays: the tail past the
    end is cut)."""
    import pedalboard as pb

    room, wet, dry = (float(v) for v in copy.method.split(":"))
    if copy.tempo != 1.0:
        y = soxr.resample(y, SR, SR / copy.tempo, quality="VHQ")
    room_reverb = pb.Reverb(room_size=room, damping=0.4, wet_level=wet, dry_level=dry)
    return pb.Pedalboard([room_reverb])(y.astype(np.float32), SR).astype(np.float64).reshape(-1)


def _stereo(y: np.ndarray, copy: Copy) -> np.ndarray:
    """Stereo ``(frames, 2)`` ``y`` with one channel's polarity inverted: a stereo listener hears
    the recording, a mean mix-down its side signal (nothing of a dual-mono track)."""
    if copy.method == "dual":
        y = np.repeat(y.mean(axis=1, keepdims=True), 2, axis=1)
    inverted = 0 if copy.method == "left" else 1
    signs = np.ones(2)
    signs[inverted] = -1
    return y * signs


def _edit(y: np.ndarray, copy: Copy) -> np.ndarray:
    """``y`` cut into sections put in another order (one fixed permutation), with silence
    inserted, or played with a slow periodic speed change (a worn tape's wow)."""
    if copy.method.startswith("shuffle"):
        n = int(float(copy.method.split()[1]) * SR)
        sections = [y[i : i + n] for i in range(0, len(y), n)]
        order = np.random.default_rng(0).permutation(len(sections))
        return np.concatenate([sections[i] for i in order])
    if copy.method == "gaps":
        n, gap = 4 * SR, np.zeros(SR // 2)
        return np.concatenate([part for i in range(0, len(y), n) for part in (y[i : i + n], gap)])
    if copy.method == "wow":  # instantaneous speed 1 + 0.01 cos(2 pi 0.5 t)
        t = np.arange(len(y)) / SR
        warped = t + 0.01 / (2 * np.pi * 0.5) * np.sin(2 * np.pi * 0.5 * t)
        return np.interp(warped * SR, np.arange(len(y)), y)
    raise ValueError(f"unknown edit {copy.method!r}")


def _signalsmith(y: np.ndarray, copy: Copy) -> np.ndarray:
    from python_stretch.Signalsmith import Stretch

    stretch = Stretch()
    stretch.preset(1, SR)
    stretch.setTimeFactor(copy.tempo)  # its time factor is the speed
    stretch.setTransposeSemitones(copy.semitones)
    return np.asarray(stretch.process(y[None, :].astype(np.float32)), np.float64).reshape(-1)


def _bungee(y: np.ndarray, copy: Copy) -> np.ndarray:
    from bungee_python.bungee import Bungee

    engine = Bungee(SR, 1, speed=copy.tempo, pitch=2 ** (copy.semitones / 12))
    return np.asarray(engine.process(y[:, None].astype(np.float32)), np.float64).reshape(-1)


def _augmenters() -> dict[str, object]:
    """audiomentations' transforms at one setting each (its ``min_`` and ``max_`` equal); what is
    still drawn (EQ gains, noise, where a mask or a repeated part falls, the room's geometry)
    comes from the seed :func:`_audiomentations` sets, but for the room's ray tracer, which
    pyroomacoustics draws from a generator of its own (image sources alone, deterministic, give
    about 0.2 s of reverberation at the orders that run in seconds)."""
    import audiomentations as am

    return {
        "aliasing 8 kHz": am.Aliasing(min_sample_rate=8000, max_sample_rate=8000, p=1),
        "band stop 1 kHz": am.BandStopFilter(
            min_center_freq=1000,
            max_center_freq=1000,
            min_bandwidth_fraction=1.0,
            max_bandwidth_fraction=1.0,
            min_rolloff=24,
            max_rolloff=24,
            p=1,
        ),
        "seven-band EQ +-12 dB": am.SevenBandParametricEQ(min_gain_db=-12, max_gain_db=12, p=1),
        "pink noise 10 dB": am.AddColorNoise(
            min_snr_db=10, max_snr_db=10, min_f_decay=-3.01, max_f_decay=-3.01, p=1
        ),
        "white noise 5 dB": am.AddGaussianSNR(min_snr_db=5, max_snr_db=5, p=1),
        "air absorption 100 m": am.AirAbsorption(min_distance=100, max_distance=100, p=1),
        "tanh distortion 0.7": am.TanhDistortion(min_distortion=0.7, max_distortion=0.7, p=1),
        "clipping 40 %": am.ClippingDistortion(
            min_percentile_threshold=40, max_percentile_threshold=40, p=1
        ),
        "limiter -24 dB": am.Limiter(min_threshold_db=-24, max_threshold_db=-24, p=1),
        "room rt60 0.8 s": am.RoomSimulator(
            min_target_rt60=0.8, max_target_rt60=0.8, calculation_mode="rt60", p=1
        ),
        "time mask 10 %": am.TimeMask(min_band_part=0.1, max_band_part=0.1, p=1),
        "part repeated 3 times": am.RepeatPart(
            min_repeats=3, max_repeats=3, min_part_duration=1.2, max_part_duration=1.2, p=1
        ),
        "rolled 30 %": am.Shift(min_shift=0.3, max_shift=0.3, rollover=True, p=1),
        # the first half replaced by the second half's mirror image
        "reflected padding 50 %": am.Padding(
            mode="reflect", min_fraction=0.5, max_fraction=0.5, pad_section="start", p=1
        ),
        "gain transitions": am.GainTransition(min_gain_db=-24, max_gain_db=6, p=1),
    }


def _praat(y: np.ndarray, copy: Copy) -> np.ndarray:
    import parselmouth
    from parselmouth.praat import call

    sound = parselmouth.Sound(y, SR)
    # its pitch range for the pitch marks (Hz), then the length factor
    return call(sound, "Lengthen (overlap-add)", 75, 600, 1 / copy.tempo).values[0]


def _pydub(y: np.ndarray, copy: Copy) -> np.ndarray:
    from pydub import AudioSegment
    from pydub.effects import speedup

    pcm = (np.clip(y, -1, 1) * 32767).astype(np.int16).tobytes()
    segment = AudioSegment(pcm, frame_rate=SR, sample_width=2, channels=1)
    faster = speedup(segment, playback_speed=copy.tempo, chunk_size=150, crossfade=25)
    return np.frombuffer(faster.raw_data, dtype=np.int16).astype(np.float64) / 32767


# audiomentations' transforms that import a package of their own when they run
_AUGMENTER_PACKAGES = {
    "room rt60 0.8 s": "pyroomacoustics",
    "limiter -24 dB": "numpy_audio_limiter",
}


def _audiomentations(y: np.ndarray, copy: Copy, seed: int = 0) -> np.ndarray:
    import random

    transform = _augmenters()[copy.method]
    random.seed(seed)  # audiomentations draws from both generators
    np.random.seed(seed)
    return np.asarray(transform(y.astype(np.float32), sample_rate=SR), np.float64).reshape(-1)


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


_FFMPEG = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
_RENDER = {
    "soundstretch": _soundstretch,
    "audiotsm": _audiotsm,
    "pytsmod": _pytsmod,
    "audiostretchy": _audiostretchy,
    "ffmpeg": _ffmpeg,
    "pedalboard": _pedalboard,
    "stereo": _stereo,
    "edit": _edit,
    "signalsmith": _signalsmith,
    "bungee": _bungee,
    "praat": _praat,
    "pydub": _pydub,
    "reverb": _reverb,
}


def render(y: np.ndarray, copy: Copy, seed: int = 0) -> np.ndarray:
    """``copy`` of ``y`` at :data:`SR` (float64), before any ``mp3_96k`` encode: mono, or
    ``(frames, 2)`` for the ``stereo`` tool (:func:`cut` with ``mono=False``)."""
    y = np.asarray(y, dtype=np.float64)
    if copy.tool == "audiomentations":
        out = _audiomentations(y, copy, seed)
    else:
        out = _RENDER[copy.tool](y, copy)
    if copy.then == "noise20":
        noise = np.random.default_rng(seed).normal(size=out.size)
        out = out + noise * np.sqrt(np.mean(out**2) / 10 ** (20 / 10))
    return out


def _write(path: str | Path, y: np.ndarray) -> None:
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    sf.write(str(path), y * (0.999 / peak) if peak > 0.999 else y, SR, subtype="PCM_16")


def write_copy(path: Path, y: np.ndarray, copy: Copy) -> Path:
    """The copy's file: a WAV, or the encode of :data:`ENCODES` that ``copy.then`` names, made
    from it with ffmpeg."""
    if copy.then not in ENCODES:
        _write(path, y)
        return path
    suffix, encoder, options = ENCODES[copy.then]
    encoded = path.with_suffix(suffix)
    with tempfile.TemporaryDirectory(prefix="audiodup-other-") as tmp:
        wav = Path(tmp) / "copy.wav"
        _write(wav, y)
        _run_command([*_FFMPEG, "-i", str(wav), "-c:a", encoder, *options, str(encoded)])
    return encoded


def missing_tool(copy: Copy) -> str | None:
    """What making ``copy`` needs that is not installed (None: nothing)."""
    if not tool_available(copy.tool):
        if copy.tool in ("soundstretch", "ffmpeg"):
            return f"{copy.tool} (apt-get install {copy.tool})"
        package = _PACKAGES.get(copy.tool, copy.tool)
        return f"the Python package {package} (pip install '.[bench]')"
    needs = _AUGMENTER_PACKAGES.get(copy.method) if copy.tool == "audiomentations" else None
    if needs and not tool_available(needs):
        return f"the Python package {needs} (pip install '.[bench]')"
    if copy.then in ENCODES:
        encoder = ENCODES[copy.then][1]
        if not shutil.which("ffmpeg"):
            return "ffmpeg (apt-get install ffmpeg)"
        if encoder not in _ffmpeg_encoders():
            return f"an ffmpeg with the {encoder} encoder"
    return None


@functools.cache
def _ffmpeg_encoders() -> frozenset[str]:
    """The audio encoders of the ffmpeg on the PATH (its ``-encoders`` list)."""
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60
    )
    return frozenset(
        words[1]
        for words in (line.split() for line in done.stdout.splitlines())
        if len(words) > 1 and words[0].startswith("A")
    )


# -- the run -------------------------------------------------------------------------------------
def picked(tracks: list, n: int) -> list:
    """``n`` tracks evenly spaced in corpus order."""
    return [tracks[i * len(tracks) // n] for i in range(min(n, len(tracks)))]


def cut(path: str, seconds: float, mono: bool = True) -> np.ndarray:
    """The first ``seconds`` of ``path`` at :data:`SR`: mono, or without ``mono`` its two
    channels ``(frames, 2)`` (a mono file's twice; a file of more channels mixed to mono first)."""
    info = sf.info(path)
    y, sr = sf.read(path, dtype="float64", always_2d=True, frames=int(seconds * info.samplerate))
    if mono or y.shape[1] != 2:
        y = y.mean(axis=1)
    if not mono and y.ndim == 1:
        y = np.repeat(y[:, None], 2, axis=1)
    return soxr.resample(y, sr, SR, quality="VHQ") if sr != SR else y


def run(
    catalog_dir: Path,
    out: Path,
    copies: Sequence[Copy],
    n_tracks: int,
    n_negatives: int,
    cut_s: float,
    log: Callable[[str], object] = print,
    corpus_name: str = "tuning",
) -> Path:
    from audiodup import Catalog
    from audiodup.results import Verdict

    from .corpus import MANIFEST_NAME, Corpus, corpus_cache

    manifest = corpus_cache(corpus_name) / MANIFEST_NAME
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
                if any(c.tool == "stereo" for c in copies):
                    channels = cut(track.path, cut_s, mono=False)
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
                        made = channels if copy.tool == "stereo" else source
                        path = write_copy(path, render(made, copy, seed), copy)
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

    from .corpus import add_corpus_option

    parser = argparse.ArgumentParser(prog="python -m benchmarks.other_tools")
    commands = parser.add_subparsers(dest="command", required=True)
    go = commands.add_parser("run", help="make the copies, screen them, write results.jsonl")
    go.add_argument("--catalog", type=Path, required=True)
    go.add_argument("--out", type=Path, required=True)
    go.add_argument("--set", choices=sorted(SETS), default="all")
    go.add_argument("--tracks", type=int, default=25)
    go.add_argument("--negatives", type=int, default=10)
    go.add_argument("--cut-s", type=float, default=90.0)
    add_corpus_option(go)  # CATALOG then holds that corpus's catalog tracks
    show = commands.add_parser("report", help="the table of a results.jsonl")
    show.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            results = run(
                args.catalog,
                args.out,
                SETS[args.set],
                args.tracks,
                args.negatives,
                args.cut_s,
                corpus_name=args.corpus,
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
