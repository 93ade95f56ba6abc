"""Decode any supported file to mono float32 at the analysis rate, within duration limits.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis, Opus and MP3; anything else goes through
``ffmpeg`` when it is installed. Long files are streamed and capped at ``max_duration_s``, so
memory stays bounded whatever the header claims.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioDecodeError, AudioTooShortError, SilentAudioError
from .settings import DEFAULT_SETTINGS, Settings

_BLOCK_FRAMES = 1 << 16
_MAX_NONFINITE_SHARE = 0.01
_MAX_SANE_PEAK = 1e3


@dataclass(frozen=True)
class Audio:
    """Decoded mono audio at the analysis rate."""

    samples: np.ndarray  # float32, mono
    sample_rate_hz: int
    source_duration_s: float  # duration decoded from the file (after the cap)
    truncated: bool  # True when the file was longer than max_duration_s
    sha256: str  # of the analysis-rate samples, quantised to 16 bits
    title: str | None = None
    artist: str | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


def load_audio(path: str | Path, settings: Settings = DEFAULT_SETTINGS) -> Audio:
    """Decode ``path`` to mono float32 at ``settings.sample_rate_hz``.

    Raises
    ------
    AudioDecodeError
        Unreadable, empty, non-audio or unsupported file.
    AudioTooShortError
        Less than ``settings.min_duration_s`` of audio.
    SilentAudioError
        No signal above ``settings.silence_rms``.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError("not a regular file" if path.exists() else "file not found")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioDecodeError(f"cannot stat file: {exc.strerror}") from None
    if size == 0:
        raise AudioDecodeError("empty file (0 bytes)")
    title = artist = None
    try:
        samples, native_sr, truncated, title, artist = _read_soundfile(path, settings)
    except AudioDecodeError as sf_error:
        if shutil.which("ffmpeg") is None:
            raise AudioDecodeError(
                f"{sf_error} (ffmpeg, which reads more formats, is not installed)"
            ) from None
        samples, native_sr, truncated = _read_ffmpeg(path, settings)
    return audio_from_samples(
        samples, native_sr, settings, truncated=truncated, title=title, artist=artist
    )


def audio_from_samples(
    samples: np.ndarray,
    sample_rate_hz: int,
    settings: Settings = DEFAULT_SETTINGS,
    *,
    truncated: bool = False,
    title: str | None = None,
    artist: str | None = None,
) -> Audio:
    """Validate, mix down and resample in-memory samples (mono ``(n,)`` or ``(n, channels)``)."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    if samples.ndim != 1 or samples.size == 0:
        raise AudioDecodeError("no audio samples")
    if sample_rate_hz <= 0:
        raise AudioDecodeError(f"invalid sample rate {sample_rate_hz}")
    max_native = int(settings.max_duration_s * sample_rate_hz)
    if len(samples) > max_native:
        samples, truncated = samples[:max_native], True
    finite = np.isfinite(samples)
    if not finite.all():
        if (~finite).mean() > _MAX_NONFINITE_SHARE:
            raise AudioDecodeError("audio holds NaN or infinite samples")
        samples = np.where(finite, samples, 0.0).astype(np.float32)
    peak = float(np.max(np.abs(samples)))
    if peak > _MAX_SANE_PEAK:  # float files can hold any scale; fingerprints are scale-free
        samples = (samples / np.float32(peak)).astype(np.float32)
    samples = samples - np.float32(samples.mean(dtype=np.float64))  # DC carries no information
    source_duration_s = len(samples) / sample_rate_hz
    if source_duration_s < settings.min_duration_s:
        raise AudioTooShortError(
            f"too short: {source_duration_s:.2f} s of audio, minimum {settings.min_duration_s:g} s"
        )
    if sample_rate_hz != settings.sample_rate_hz:
        samples = soxr.resample(samples, sample_rate_hz, settings.sample_rate_hz, quality="HQ")
        samples = np.ascontiguousarray(samples, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if rms < settings.silence_rms:
        raise SilentAudioError(f"silent: RMS {rms:.1e} is below {settings.silence_rms:.0e}")
    quantised = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    return Audio(
        samples=samples,
        sample_rate_hz=settings.sample_rate_hz,
        source_duration_s=source_duration_s,
        truncated=truncated,
        sha256=hashlib.sha256(quantised.tobytes()).hexdigest(),
        title=title,
        artist=artist,
    )


@contextmanager
def quiet_native_stderr():
    """Silence what libmpg123 prints to fd 2 about damaged frames; errors still raise."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _read_soundfile(path: Path, settings: Settings):
    try:
        with quiet_native_stderr(), sf.SoundFile(os.fsencode(path)) as f:
            sr = int(f.samplerate)
            if sr <= 0 or f.channels <= 0:
                raise AudioDecodeError("invalid header (sample rate or channels)")
            max_frames = int(settings.max_duration_s * sr)
            blocks, total = [], 0
            while total < max_frames:
                block = f.read(
                    min(_BLOCK_FRAMES, max_frames - total), dtype="float32", always_2d=True
                )
                if len(block) == 0:
                    break
                blocks.append(block.mean(axis=1, dtype=np.float32))
                total += len(block)
            truncated = total >= max_frames and len(f.read(1, always_2d=True)) > 0
            title, artist = f.title or None, f.artist or None
    except AudioDecodeError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError) as exc:
        message = re.sub(r"^Error opening .*?: ", "", _first_line(exc))
        if "not a regular file" in message:  # libsndfile's words for a file it cannot parse
            message = "not a recognised audio format"
        raise AudioDecodeError(f"cannot decode: {message}") from None
    if total == 0:
        raise AudioDecodeError("no audio frames in file")
    return np.concatenate(blocks), sr, truncated, title, artist


def _read_ffmpeg(path: Path, settings: Settings):
    sr = settings.sample_rate_hz
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-t",
        str(settings.max_duration_s),
        "-vn",
        "-ac",
        "1",
        "-ar",
        str(sr),
        "-f",
        "f32le",
        "-",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AudioDecodeError(f"ffmpeg failed: {_first_line(exc)}") from None
    samples = np.frombuffer(proc.stdout, dtype="<f4")
    if proc.returncode != 0 or samples.size == 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioDecodeError(f"cannot decode ({message[-1] if message else 'no audio stream'})")
    truncated = samples.size >= int(settings.max_duration_s * sr) - 1
    return samples.copy(), sr, truncated


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
