"""Decode any supported file to mono float32 at the analysis rate, within duration and cost limits.

Decoders
--------
soundfile (libsndfile) reads WAV, FLAC, Ogg (Vorbis, Opus), MP3 and more. A file whose format
libsndfile cannot parse goes to ``ffmpeg`` when one is available (:func:`ffmpeg_executable`,
see :mod:`audiodup.ffmpeg` for the ``AUDIODUP_FFMPEG`` variable and how ffmpeg is confined). A
file that cannot be opened (missing, permission denied, a symlink loop, a folder, a pipe) is one
error and never reaches ffmpeg.

A file name is never interpreted. The file is opened once, here, as a plain local file, and only
the open file reaches a decoder: libsndfile gets the descriptor, ffmpeg gets it as its standard
input. A name such as ``concat:a.ogg|b.ogg``, ``-i.m4a``, ``-`` (stdin to libsndfile) or
``http:x`` is just a name.

What is screened
----------------
Everything a player can play, in order, within one duration cap: every link of a chained Ogg file
(``cat a.ogg b.ogg > c.ogg``; libsndfile alone stops after the first link), and every audio
stream of a file that holds several (tracks of an MKV or MP4, streams multiplexed in one Ogg
link), one after another. A player plays one track at a time, but the listener can pick any:
screening only the first would let an uploader hide a copy in the second. Ogg is split into its
logical streams by :mod:`audiodup.ogg`, so chains work without ffmpeg; video, subtitle and
skeleton streams are skipped, and an Ogg stream of a codec libsndfile does not read sends the
whole file to ffmpeg. What a stereo listener hears, too: a block whose channels are in
antiphase (one channel's polarity inverted) is mixed down as their difference, not as their
mean, which would cancel the centre of the mix (:func:`antiphase_signs`); and what the mix
leaves out of a stereo file, its difference, is kept beside it (``Audio.difference``), for
:mod:`audiodup.stereo` to decide whether a copy hides there; of a file of 3 or more channels
(5.1, 7.1, quad, ambisonics), each channel (``Audio.channels``), where a copy can hide under the
others.

Cost limits
-----------
Memory and time are bounded by what is decoded, not by what a header claims. Sample rates outside
``MIN_SAMPLE_RATE_HZ``..``MAX_SAMPLE_RATE_HZ`` and more than ``MAX_CHANNELS`` channels are refused
from the header before decoding (for the files ffmpeg reads, from its description of the
streams). Decoding stops after ``settings.max_duration_s`` or after ``_NATIVE_SAMPLES_PER_CAP_S``
native samples (all channels) per second of that cap, 230 M for 20 minutes (20 minutes of 96 kHz
stereo), whichever comes first; the audio is then marked ``truncated``. Blocks are mixed down and
resampled as they are decoded, so what is held is the analysis-rate result (``max_duration_s`` x
11025 Hz x 4 bytes: 53 MB for 20 minutes; as much again for a stereo file's difference,
``Audio.difference``, and for each channel of a multichannel one, ``Audio.channels``: 211 MB
for 7.1 at 48 kHz, which the native-sample budget cuts at 10 minutes, 423 MB at most, shared
by a file's streams: each may take the room left divided by the streams still to keep theirs,
and a later stream's rows are kept where an earlier one's are narrowed) and at
most ``_REPLAY_CACHE_SAMPLES`` native samples (64 MiB), the rest of the first pass going to
an unlinked temporary file. The DC offset is
removed before resampling, as it always was, so that the samples and ``sha256`` of every file
stay bit for bit what they were: the second pass replays what the first decoded, and only a file
longer than the spill (25 minutes at 44.1 kHz) is decoded twice, once to measure and once to
resample. ffmpeg's output is read in blocks
into the same budget, ffmpeg is stopped once it is full, and it runs under an address-space
limit. ``python -m benchmarks.hostile_decode`` measures the worst inputs we could build.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import stat
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

import numpy as np
import soundfile as sf
import soxr

from . import ffmpeg, ogg
from .errors import AudioDecodeError, AudioTooShortError, SilentAudioError, first_line
from .ffmpeg import ffmpeg_executable  # re-exported: callers find it here
from .results import MAX_PAIRED_CHANNELS, MAX_SCREENED_CHANNELS
from .settings import DEFAULT_SETTINGS, Settings

# Refused from the header, before decoding. 384 kHz is the highest rate of real recordings
# (DXD); below 1 kHz nothing of music is left. 64 channels: third-order ambisonics uses 16.
MIN_SAMPLE_RATE_HZ = 1_000
MAX_SAMPLE_RATE_HZ = 384_000
MAX_CHANNELS = 64
# Native samples (all channels) decoded per second of settings.max_duration_s: the 20-minute cap
# then holds 20 minutes of 96 kHz stereo (230 M samples, about 4 s of FLAC decoding). Without it a
# 384 kHz 64-channel file would make the cap mean 29 G samples.
_NATIVE_SAMPLES_PER_CAP_S = 192_000
# Native mono samples kept in memory between the measuring and the resampling pass (64 MiB,
# 6 minutes at 44.1 kHz); longer files spill the rest to an unlinked temporary file, up to
# _REPLAY_SPILL_SAMPLES in all (256 MiB, 25 minutes at 44.1 kHz): decoding a 10-minute MP3 a
# second time cost 0.55 CPU-s, writing and reading it back 0.03 (issue #16). Beyond that, or
# when the spill cannot be written, the file is decoded twice.
_REPLAY_CACHE_SAMPLES = 1 << 24
_REPLAY_SPILL_SAMPLES = 1 << 26
_BLOCK_SAMPLES = 1 << 17  # per decoded block, all channels (65536 stereo frames)
# The replay cache is allocated in arrays of this many samples (8 MiB), which numpy backs with
# huge pages: one 256 KiB array per block cost 0.017 CPU-s more per 4-min MP3 in a process that
# only decodes (nothing measurable when fingerprinting frees memory in between; issue #16).
_REPLAY_CHUNK_SAMPLES = 1 << 21
# A channel that correlates below this with a block's loudest one is inverted before the mix
# (:func:`antiphase_signs`): a copy with one channel's polarity inverted.
ANTIPHASE_CORRELATION = -0.5
_MAX_NONFINITE_SHARE = 0.01
_MAX_SANE_PEAK = 1e3
_MAX_OGG_STREAMS = 1024  # logical audio streams decoded from one Ogg file (chain links)
_MAX_FFMPEG_AUDIO_STREAMS = 16  # each costs an ffmpeg run over the whole file
# first bytes of the first packet of an Ogg logical stream, for the codecs libsndfile reads
_LIBSNDFILE_OGG_CODECS = (b"\x01vorbis", b"OpusHead", b"\x7fFLAC")
# formats whose header states a length the stream itself need not end at (AU's data size,
# FLAC's total samples, an MP3's Xing frame count, an Ogg stream's last granule): libsndfile
# stops there, ffmpeg reads on. More than this left unread after the stated length, besides
# the tags that end a file and are not audio (:func:`_trailing_tags`), sends the file to
# ffmpeg (or is an error without it): 2 KiB is 2.7 s of 6 kbps Opus (16 KiB hid 14 s of it),
# 0.13 s at 128 kbps. The benchmark corpus's 700 FLAC and Ogg files leave none
_HEADER_LENGTH_FORMATS = ("AU", "FLAC", "MP3", "OGG")
# an Ogg stream whose packets hold more than this past its last granule position hides audio
# from libsndfile: an encoder trims at most one packet at the end (120 ms of Opus, half a long
# Vorbis block: 46 ms at 44.1 kHz)
_MAX_OGG_PAST_END_S = 0.5
_MAX_APE_TAG_BYTES = 16 << 20  # read whole to be checked: larger ones are not taken for tags
_MAX_UNREAD_TAIL_BYTES = 2 * 1024


@dataclass(frozen=True)
class Audio:
    """Decoded mono audio at the analysis rate."""

    samples: np.ndarray  # float32, mono
    sample_rate_hz: int
    source_duration_s: float  # duration decoded from the file (after the cap)
    truncated: bool  # the file held more than was decoded (duration cap, native-sample budget)
    sha256: str  # of the analysis-rate samples, quantised to 16 bits
    title: str | None = None
    artist: str | None = None
    # what the mix leaves out of a stereo recording, sample for sample beside ``samples``: half
    # the difference of its channels (their sum where the mix took the difference); zeros where
    # the file had one channel or more than two; None when it had no stereo part
    difference: np.ndarray | None = field(default=None, repr=False, compare=False)
    # each channel of a file of 3 or more channels, ``(samples, channels)``
    # beside ``samples`` (zeros where a part of the file had fewer); None when it had none
    channels: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


def difference_audio(
    audio: Audio, settings: Settings = DEFAULT_SETTINGS, span: tuple[float, float] | None = None
) -> Audio | None:
    """``audio``'s stereo difference as audio of its own (named the same; ``span``: only from
    ``span[0]`` to ``span[1]`` seconds), or None when it has none or it is below
    ``settings.silence_rms``."""
    if audio.difference is None:
        return None
    cut = _span_slice(span, audio.sample_rate_hz)
    return _heard_alone(audio, audio.difference[cut], settings, span)


def channel_audio(
    audio: Audio,
    side: Literal["left", "right"],
    settings: Settings = DEFAULT_SETTINGS,
    span: tuple[float, float] | None = None,
) -> Audio | None:
    """One channel of a stereo ``audio`` as audio of its own (the mix plus or minus its
    difference; ``span`` as in :func:`difference_audio`), or None when it has no difference or
    that channel is below ``settings.silence_rms``."""
    if audio.difference is None:
        return None
    cut = _span_slice(span, audio.sample_rate_hz)
    sign = 1.0 if side == "left" else -1.0
    return _heard_alone(audio, audio.samples[cut] + sign * audio.difference[cut], settings, span)


def numbered_part_audio(
    audio: Audio,
    channels: tuple[int, ...],
    settings: Settings = DEFAULT_SETTINGS,
    span: tuple[float, float] | None = None,
) -> Audio | None:
    """One channel of a multichannel ``audio`` (``channels`` = its index from 0), or half the
    difference of two (their indexes), as audio of its own (``span`` as in
    :func:`difference_audio`); None when it has no such channels or that is below
    ``settings.silence_rms``."""
    if audio.channels is None or not all(0 <= c < audio.channels.shape[1] for c in channels):
        return None
    rows = audio.channels[_span_slice(span, audio.sample_rate_hz)]
    if len(channels) == 1:
        part = np.ascontiguousarray(rows[:, channels[0]])
    else:
        part = (rows[:, channels[0]] - rows[:, channels[1]]) / np.float32(2.0)
    return _heard_alone(audio, part, settings, span)


def _span_slice(span: tuple[float, float] | None, rate: int) -> slice:
    """The samples from ``span[0]`` to ``span[1]`` seconds (all of them for None)."""
    return slice(None) if span is None else slice(round(span[0] * rate), round(span[1] * rate))


def _heard_alone(
    audio: Audio, part: np.ndarray, settings: Settings, span: tuple[float, float] | None
) -> Audio | None:
    """``part`` of ``audio`` (a stereo part's samples over ``span``) as audio of its own, named
    the same; None when it is empty or below ``settings.silence_rms``."""
    if len(part) == 0 or _loudest_second_rms(part, audio.sample_rate_hz) < settings.silence_rms:
        return None
    rate = audio.sample_rate_hz
    return Audio(
        samples=part,
        sample_rate_hz=rate,
        source_duration_s=audio.source_duration_s if span is None else len(part) / rate,
        truncated=audio.truncated,
        sha256=_sha256_16bit(part),
        title=audio.title,
        artist=audio.artist,
    )


class _Unparsed(AudioDecodeError):
    """libsndfile cannot parse or decode the file: ffmpeg may."""


def load_audio(path: str | Path, settings: Settings = DEFAULT_SETTINGS) -> Audio:
    """Decode ``path`` to mono float32 at ``settings.sample_rate_hz``.

    Raises
    ------
    AudioDecodeError
        Unreadable, empty, non-audio or unsupported file, or one beyond the cost limits.
    AudioTooShortError
        Less than ``settings.min_duration_s`` of audio.
    SilentAudioError
        No signal above ``settings.silence_rms``.
    """
    fd = _open_regular_file(path)
    try:
        links = _OggLinks(fd)
        try:
            with quiet_native_stderr():
                return _decode_with_soundfile(fd, settings, links)
        except _Unparsed as sf_error:
            ffmpeg_path = ffmpeg_executable()
            if ffmpeg_path is None:
                raise AudioDecodeError(f"{sf_error} ({ffmpeg.ffmpeg_absence_reason()})") from None
            segments, truncated = _decode_with_ffmpeg(ffmpeg_path, fd, settings, links)
            return _analysis_audio(segments, settings, truncated=truncated)
    finally:
        os.close(fd)


def audio_from_samples(
    samples: np.ndarray,
    sample_rate_hz: int,
    settings: Settings = DEFAULT_SETTINGS,
    *,
    truncated: bool = False,
    title: str | None = None,
    artist: str | None = None,
) -> Audio:
    """Validate, mix down and resample in-memory samples (mono ``(n,)`` or ``(n, channels)``).

    The same limits as for files apply: the sample rate must be within
    ``MIN_SAMPLE_RATE_HZ``..``MAX_SAMPLE_RATE_HZ`` and there may be ``MAX_CHANNELS`` channels.
    """
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2) or samples.size == 0:
        raise AudioDecodeError("no audio samples")
    if not float(sample_rate_hz).is_integer():
        raise AudioDecodeError(f"invalid sample rate {sample_rate_hz} Hz")
    segment = _ArraySegment(samples, int(sample_rate_hz))
    return _analysis_audio([segment], settings, truncated=truncated, title=title, artist=artist)


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


# --- opening ----------------------------------------------------------------------------------


def _open_regular_file(path: str | Path) -> int:
    """Open ``path`` read-only as a plain local file and return the descriptor.

    Anything but a non-empty regular file is refused here, with the system's reason; devices and
    pipes are refused from ``stat`` without being opened (opening one can block or rewind a tape).
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise AudioDecodeError("not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise AudioDecodeError("file not found") from None
    except OSError as exc:
        raise AudioDecodeError(f"cannot open file: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte in the name
        raise AudioDecodeError("invalid file name") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # replaced since the stat above
            raise AudioDecodeError("not a regular file")
        if info.st_size == 0:
            raise AudioDecodeError("empty file (0 bytes)")
    except BaseException:
        os.close(fd)
        raise
    return fd


# --- from native blocks to analysis samples -------------------------------------------------


class _Segment(Protocol):
    """Audio of one sample rate: a whole file, one Ogg logical stream, an in-memory array."""

    sample_rate_hz: int
    channels: int
    more: bool  # once blocks(max_frames) has run out: whether audio went on past max_frames
    # the stereo difference at the analysis rate when it is made before the first pass (the
    # blocks are then mono), else None; the same of the channels a multichannel one keeps
    difference: np.ndarray | None
    channels_kept: np.ndarray | None

    def blocks(self, max_frames: int) -> Iterator[np.ndarray]:
        """Float32 blocks at the native rate, ``max_frames`` frames at most; each call decodes
        from the start again. A block is mono ``(frames,)``, kept as it is, or
        ``(frames, channels)``, valid until the next block is asked for (a reused buffer)."""
        ...


@dataclass
class _Measure:
    """What the first pass learns about the native mono samples; nonfinite ones count as 0."""

    frames: int = 0
    nonfinite: int = 0
    total: float = 0.0  # sum of the samples, float64
    low: float = math.inf
    high: float = -math.inf

    def add(self, block: np.ndarray) -> np.ndarray:
        """Count ``block`` in and return it with nonfinite samples zeroed."""
        low, high = block.min(initial=np.inf), block.max(initial=-np.inf)
        # min and max propagate NaN, so finite ones mean every sample is: one pass, not two
        if not (np.isfinite(low) and np.isfinite(high)):
            finite = np.isfinite(block)
            self.nonfinite += int(block.size - np.count_nonzero(finite))
            block = _zero_nonfinite(block)
            low, high = block.min(initial=np.inf), block.max(initial=-np.inf)
        self.frames += block.size
        self.total += float(block.sum(dtype=np.float64))
        self.low = min(self.low, float(low))
        self.high = max(self.high, float(high))
        return block

    @property
    def peak(self) -> float:
        return max(abs(self.low), abs(self.high))


@dataclass
class _Plan:
    """The segments to resample and how many frames of each the first pass decoded."""

    segments: list[tuple[_Segment, int]] = field(default_factory=list)
    # per segment, its blocks in order: an array, or the size of a block written to ``spill``;
    # None: the second pass decodes again
    cache: list[list[np.ndarray | int]] | None = field(default_factory=list)
    cached_samples: int = 0
    spill: BinaryIO | None = None
    truncated: bool = False
    chunk: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    chunk_used: int = 0
    scratch: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    # per segment, its stereo difference at the analysis rate (None: not stereo), and the
    # analysis samples the second pass made of it
    differences: list[np.ndarray | None] = field(default_factory=list)
    # per segment of 3 or more channels, they at the analysis rate, ``(samples,
    # channels)`` (None: fewer or more channels)
    channels: list[np.ndarray | None] = field(default_factory=list)
    output_sizes: list[int] = field(default_factory=list)

    @property
    def source_duration_s(self) -> float:
        return sum(frames / segment.sample_rate_hz for segment, frames in self.segments)

    def memory_for(self, frames: int) -> np.ndarray:
        """Room for the next block's mono samples: in the replay cache's current array when
        :meth:`keep` will hold the block in memory, else in a scratch array it will not."""
        if self.cache is not None and self.cached_samples + frames <= _REPLAY_CACHE_SAMPLES:
            if self.chunk_used + frames > len(self.chunk):  # pages commit as they are written
                room = min(_REPLAY_CHUNK_SAMPLES, _REPLAY_CACHE_SAMPLES - self.cached_samples)
                self.chunk, self.chunk_used = np.empty(max(frames, room), np.float32), 0
            self.chunk_used += frames
            return self.chunk[self.chunk_used - frames : self.chunk_used]
        self.scratch = _at_least(self.scratch, frames)
        return self.scratch[:frames]

    def keep(self, block: np.ndarray) -> None:
        """Keep ``block`` for the second pass: in memory, else in the spill file."""
        if self.cache is None:
            return
        self.cached_samples += block.size
        if self.cached_samples <= _REPLAY_CACHE_SAMPLES:
            self.cache[-1].append(block)
            return
        if self.cached_samples > _REPLAY_SPILL_SAMPLES:
            self.drop_cache()  # too long to keep: the second pass decodes again
            return
        try:
            if self.spill is None:
                # closed by close(), after the second pass
                self.spill = tempfile.TemporaryFile(prefix="audiodup-replay-")  # noqa: SIM115
            self.spill.write(np.ascontiguousarray(block, np.float32).tobytes())
        except OSError:  # a full or read-only temporary folder: decode again instead
            self.drop_cache()
            return
        self.cache[-1].append(block.size)

    def drop_cache(self) -> None:
        self.cache = None
        self.chunk = np.empty(0, np.float32)
        self.close()

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()
            self.spill = None

    def replay(self, index: int) -> Iterator[np.ndarray]:
        """The blocks the first pass kept of segment ``index``, in order."""
        assert self.cache is not None
        for item in self.cache[index]:
            if isinstance(item, np.ndarray):
                yield item
                continue
            block = np.empty(item, np.float32)
            if self.spill is None or self.spill.readinto(memoryview(block).cast("B")) != 4 * item:
                raise AudioDecodeError("cannot read back the decoded audio")
            yield block


def _check_format(sample_rate_hz: int, channels: int) -> None:
    if not MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise AudioDecodeError(
            f"invalid sample rate {sample_rate_hz} Hz "
            f"(audiodup reads {MIN_SAMPLE_RATE_HZ} to {MAX_SAMPLE_RATE_HZ} Hz)"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioDecodeError(
            f"invalid channel count {channels} (audiodup reads 1 to {MAX_CHANNELS})"
        )


def _measure(
    segments: Iterable[_Segment], settings: Settings, keeping_streams: int
) -> tuple[_Plan, _Measure]:
    """First pass: decode up to the caps, counting what the conditioning needs
    (``keeping_streams``: how many segments keep their channels, :class:`_KeptChannelRoom`)."""
    plan, measure = _Plan(), _Measure()
    try:
        _measure_into(plan, measure, segments, settings, keeping_streams)
    except BaseException:
        plan.close()
        raise
    return plan, measure


def _measure_into(
    plan: _Plan,
    measure: _Measure,
    segments: Iterable[_Segment],
    settings: Settings,
    keeping_streams: int,
) -> None:
    remaining_s = settings.max_duration_s
    remaining_samples = int(settings.max_duration_s * _NATIVE_SAMPLES_PER_CAP_S)
    room = _KeptChannelRoom(kept_channel_budget(settings), keeping_streams)
    for segment in segments:
        rate_hz, channels = segment.sample_rate_hz, segment.channels
        _check_format(rate_hz, channels)  # before anything is decoded
        max_frames = min(int(remaining_s * rate_hz), remaining_samples // channels)
        if max_frames <= 0:
            plan.truncated = True
            break
        if plan.cache is not None:
            plan.cache.append([])
        frames = 0
        made = segment.difference  # ffmpeg's streams come mixed, their difference kept
        made_channels = segment.channels_kept  # and their channels
        stream: _DifferenceStream | _ChannelsStream | None = None
        if made is None and channels == 2 and settings.screens_stereo_parts:
            stream = _DifferenceStream(rate_hz, settings.sample_rate_hz, max_frames)
        elif made_channels is None and keeps_channels(channels, settings):
            stream = _ChannelsStream(
                rate_hz, settings.sample_rate_hz, max_frames, channels, room.share() // channels
            )
        for native in segment.blocks(max_frames):
            if stream is not None:
                block = measure.add(stream.mix(native, plan.memory_for))
            else:
                block = measure.add(_mono(native, plan.memory_for))
            plan.keep(block)
            frames += len(block)
        kept = stream.samples() if stream is not None else None
        plan.differences.append(kept if isinstance(stream, _DifferenceStream) else made)
        plan.channels.append(kept if isinstance(stream, _ChannelsStream) else made_channels)
        if isinstance(stream, _ChannelsStream):
            room.take(kept.size)
        plan.truncated = segment.more
        plan.segments.append((segment, frames))
        remaining_s -= frames / rate_hz
        remaining_samples -= frames * channels
        if plan.truncated:
            break


def _analysis_audio(
    segments: Iterable[_Segment],
    settings: Settings,
    *,
    truncated: bool = False,
    title: str | None = None,
    artist: str | None = None,
    no_frames_error: type[AudioDecodeError] = AudioDecodeError,
    keeping_streams: int = 1,
) -> Audio:
    """Measure, condition (zero nonfinite samples, scale absurd levels, remove DC), resample
    (``keeping_streams``: how many of the segments keep their channels as they are decoded).

    The same steps, in the same order and on the same float32 values, as when the whole file was
    held in memory: the samples and ``sha256`` of ordinary files are unchanged.
    """
    plan, measure = _measure(segments, settings, keeping_streams)
    try:
        return _conditioned_audio(
            plan, measure, settings, truncated, title, artist, no_frames_error
        )
    finally:
        plan.close()


def _conditioned_audio(
    plan: _Plan,
    measure: _Measure,
    settings: Settings,
    truncated: bool,
    title: str | None,
    artist: str | None,
    no_frames_error: type[AudioDecodeError],
) -> Audio:
    if measure.frames == 0:
        raise no_frames_error("no audio frames in file")
    if measure.nonfinite / measure.frames > _MAX_NONFINITE_SHARE:
        # float64 samples beyond float32's range (3.4e38) are read as infinite: say so too
        raise AudioDecodeError("audio holds NaN, infinite or out-of-range (over 3.4e38) samples")
    scale = np.float32(measure.peak) if measure.peak > _MAX_SANE_PEAK else None
    mean = measure.total / measure.frames / (float(scale) if scale is not None else 1.0)
    source_duration_s = plan.source_duration_s
    if source_duration_s < settings.min_duration_s:
        raise AudioTooShortError(
            f"too short: {source_duration_s:.2f} s of audio, minimum {settings.min_duration_s:g} s"
        )
    cut = truncated or plan.truncated
    if measure.low == measure.high:  # constant: zero once DC is removed, nothing to resample
        raise _silent(0.0, settings, cut)
    samples = _resample(plan, np.float32(mean), scale, settings.sample_rate_hz)
    # the loudest second, not the whole file: minutes of silence before a quiet copy brought
    # the file's RMS under the bound, and the copy was refused as silent (a review)
    rms = _loudest_second_rms(samples, settings.sample_rate_hz)
    if rms < settings.silence_rms:
        raise _silent(rms, settings, cut)
    return Audio(
        samples=samples,
        sample_rate_hz=settings.sample_rate_hz,
        source_duration_s=source_duration_s,
        truncated=truncated or plan.truncated,
        sha256=_sha256_16bit(samples),
        title=title,
        artist=artist,
        difference=_aligned_difference(plan, scale),
        channels=_aligned_channels(plan, scale, kept_channel_budget(settings)),
    )


def _aligned_difference(plan: _Plan, scale: np.float32 | None) -> np.ndarray | None:
    """The segments' stereo differences end to end, each as long as the analysis samples made
    of its segment (zeros for one that is not stereo), DC removed, divided by the mix's
    ``scale`` as the mix is (their levels compare), and by its own peak if it is still absurd;
    None when no segment is stereo."""
    if all(part is None for part in plan.differences):
        return None
    (part, *others), size = plan.differences, sum(plan.output_sizes)
    if not others and part is not None and len(part) >= size:  # one stereo stream: no copy
        out = part[:size]
    else:
        out = _aligned_parts(plan.differences, plan.output_sizes)
    if scale is not None:
        out /= scale
    out -= np.float32(out.mean(dtype=np.float64)) if len(out) else np.float32(0.0)
    peak = max(float(out.max(initial=0.0)), -float(out.min(initial=0.0)))  # no |out| copy
    if peak > _MAX_SANE_PEAK:
        out /= np.float32(peak)
    return out


def _aligned_channels(plan: _Plan, scale: np.float32 | None, budget: int) -> np.ndarray | None:
    """The channels of the segments of 3 or more channels end to end, as
    :func:`_aligned_difference` aligns and conditions the difference, each channel alone (zeros
    where a segment has fewer), as far as ``budget`` samples of all of them go (a 1-s link of
    63 channels before 20 minutes of mono must not make 20 minutes of 63); None when there is
    no such segment. Where the widest segment's channels would leave a later segment's out, the
    later ones' rows are kept and the channels are cut instead, to no fewer than
    :data:`MAX_PAIRED_CHANNELS` (the budget holds that many over the duration cap)."""
    if all(part is None for part in plan.channels):
        return None
    width = max(part.shape[1] for part in plan.channels if part is not None)
    starts = np.cumsum([0, *plan.output_sizes[:-1]])
    kept_end = max(
        start + min(size, len(part))
        for part, start, size in zip(plan.channels, starts, plan.output_sizes, strict=True)
        if part is not None
    )
    if kept_end * width > budget:
        width = max(budget // max(kept_end, 1), min(width, MAX_PAIRED_CHANNELS))
    length = min(sum(plan.output_sizes), budget // width)
    (part, *others) = plan.channels
    if not others and part is not None and len(part) >= length and part.shape[1] == width:
        out = part[:length]  # one stream: no copy
    else:
        out = np.zeros((length, width), np.float32)
        for part, start, size in zip(plan.channels, starts, plan.output_sizes, strict=True):
            if part is not None and start < length:
                n = min(size, len(part), length - start)
                columns = min(part.shape[1], width)
                out[start : start + n, :columns] = part[:n, :columns]
    if scale is not None:
        out /= scale
    if len(out):
        out -= out.mean(axis=0, dtype=np.float64).astype(np.float32)
    for channel in out.T:
        peak = max(float(channel.max(initial=0.0)), -float(channel.min(initial=0.0)))
        if peak > _MAX_SANE_PEAK:
            channel /= np.float32(peak)
    return out


def _aligned_parts(parts: list[np.ndarray | None], sizes: list[int]) -> np.ndarray:
    out = np.zeros(sum(sizes), np.float32)
    start = 0
    for part, size in zip(parts, sizes, strict=True):
        if part is not None:
            n = min(size, len(part))
            out[start : start + n] = part[:n]
        start += size
    return out


def _resample(
    plan: _Plan, mean: np.float32, scale: np.float32 | None, analysis_hz: int
) -> np.ndarray:
    """Second pass: condition each native block and resample it as it comes."""
    capacity = sum(frames * analysis_hz // seg.sample_rate_hz + 64 for seg, frames in plan.segments)
    out = np.empty(capacity, dtype=np.float32)  # pages are committed only as they are written
    size = 0
    scratch = np.empty(0, np.float32)  # each block is conditioned here, then resampled
    if plan.spill is not None:
        plan.spill.seek(0)
    for index, (segment, frames) in enumerate(plan.segments):
        segment_start = size
        cached = plan.replay(index) if plan.cache is not None else None
        rate_hz = segment.sample_rate_hz
        stream = _resample_stream(rate_hz, analysis_hz) if rate_hz != analysis_hz else None
        decoded = 0
        for block in cached if cached is not None else _decoded_again(segment, frames):
            decoded += len(block)
            scratch = _at_least(scratch, len(block))
            conditioned = scratch[: len(block)]
            if scale is not None:  # float files can hold any scale; fingerprints are scale-free
                block = np.divide(block, scale, out=conditioned)
            np.subtract(block, mean, out=conditioned)  # DC carries no information
            out, size = _append(
                out, size, stream.resample_chunk(conditioned) if stream else conditioned
            )
        if decoded != frames:
            raise AudioDecodeError("the file changed while it was being decoded")
        if stream is not None:
            out, size = _append(out, size, stream.resample_chunk(np.zeros(0, np.float32), True))
        plan.output_sizes.append(size - segment_start)
    return out[:size]


def _decoded_again(segment: _Segment, frames: int) -> Iterator[np.ndarray]:
    """The mono blocks of a segment the first pass could not keep, nonfinite samples zeroed."""
    scratch = np.empty(0, np.float32)

    def memory_for(frames: int) -> np.ndarray:
        nonlocal scratch
        scratch = _at_least(scratch, frames)
        return scratch[:frames]

    for native in segment.blocks(frames):
        block = _mono(native, memory_for)
        yield block if np.isfinite(block).all() else _zero_nonfinite(block)


def _at_least(array: np.ndarray, size: int) -> np.ndarray:
    return array if len(array) >= size else np.empty(size, array.dtype)


def _resample_stream(from_hz: int, to_hz: int) -> soxr.ResampleStream:
    # streaming output is bit-identical to soxr.resample() of the whole signal, any block size
    return soxr.ResampleStream(from_hz, to_hz, 1, dtype="float32", quality="HQ")


def _zero_nonfinite(block: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(block), block, np.float32(0.0)).astype(np.float32)


def _append(out: np.ndarray, size: int, values: np.ndarray) -> tuple[np.ndarray, int]:
    """``values`` written after the first ``size`` of ``out`` (``(samples,)`` or ``(samples,
    channels)``), which grows when they do not fit."""
    if size + len(values) > len(out):  # not expected: the capacity has a margin
        room = np.empty((len(values) + len(out) // 2, *out.shape[1:]), np.float32)
        out = np.concatenate([out[:size], room])
    out[size : size + len(values)] = values
    return out, size + len(values)


def _silent(rms: float, settings: Settings, cut: bool) -> SilentAudioError:
    """The error of audio whose loudest second is below ``settings.silence_rms``; ``cut``:
    decoding stopped at the limits, so only the part read is known to be silent."""
    rest = " (decoding stopped at the limits; the rest was not read)" if cut else ""
    return SilentAudioError(
        f"silent: the loudest second's RMS {rms:.1e} is below {settings.silence_rms:.0e}{rest}"
    )


def _loudest_second_rms(samples: np.ndarray, rate_hz: int) -> float:
    """The RMS of the loudest whole second of ``samples`` (of all of them when shorter),
    without a squared copy of the whole signal."""
    if len(samples) <= rate_hz:
        return _rms(samples)
    whole = len(samples) // rate_hz * rate_hz
    seconds = samples[:whole].reshape(-1, rate_hz)
    energy = np.einsum("ij,ij->i", seconds, seconds, dtype=np.float64)
    loudest = float(energy.max()) / rate_hz
    if whole < len(samples):  # the last part second, over a whole second as the others are
        loudest = max(loudest, _rms(samples[whole:]) ** 2 * (len(samples) - whole) / rate_hz)
    return math.sqrt(loudest)


def _rms(samples: np.ndarray) -> float:
    total = sum(
        float(np.square(samples[i : i + _BLOCK_SAMPLES], dtype=np.float64).sum())
        for i in range(0, len(samples), _BLOCK_SAMPLES)
    )
    return math.sqrt(total / len(samples)) if len(samples) else 0.0


def _sha256_16bit(samples: np.ndarray) -> str:
    """sha256 of ``clip(round(samples * 32767), -32768, 32767)`` as little-endian int16."""
    digest = hashlib.sha256()
    scaled = np.empty(min(len(samples), _BLOCK_SAMPLES), np.float32)
    quantised = np.empty(len(scaled), "<i2")
    for i in range(0, len(samples), _BLOCK_SAMPLES):
        n = min(_BLOCK_SAMPLES, len(samples) - i)
        values = np.multiply(samples[i : i + n], np.float32(32767.0), out=scaled[:n])
        np.clip(np.round(values, out=values), -32768, 32767, out=values)
        quantised[:n] = values  # integral and in range: the int16 cast is exact
        digest.update(quantised[:n])
    return digest.hexdigest()


@dataclass
class _ArraySegment:
    """In-memory samples, ``(n,)`` or ``(n, channels)``."""

    samples: np.ndarray
    sample_rate_hz: int
    more: bool = False
    # its stereo difference, made already (ffmpeg's streams, mixed as they are read)
    difference: np.ndarray | None = None
    channels_kept: np.ndarray | None = None  # and the channels it keeps (keeps_channels)

    @property
    def channels(self) -> int:
        return self.samples.shape[1] if self.samples.ndim == 2 else 1

    def blocks(self, max_frames: int) -> Iterator[np.ndarray]:
        self.more = len(self.samples) > max_frames
        step = _block_frames(self.channels)
        for start in range(0, min(len(self.samples), max_frames), step):
            yield np.asarray(self.samples[start : min(start + step, max_frames)], np.float32)


def _mono(block: np.ndarray, memory_for: Callable[[int], np.ndarray]) -> np.ndarray:
    """A segment's block as mono: a mono block as it is, else mixed into ``memory_for(frames)``."""
    return block if block.ndim == 1 else _mix_to_mono(block, memory_for(len(block)))


class _DifferenceStream:
    """A stereo segment's difference (:func:`_mix_to_mono`), resampled to the analysis rate as
    the first pass decodes it: the mix waits for its mean to be removed, the difference's mean
    is removed afterwards (:func:`_aligned_difference`)."""

    def __init__(self, native_hz: int, analysis_hz: int, max_frames: int):
        self._resampler = (
            _resample_stream(native_hz, analysis_hz) if native_hz != analysis_hz else None
        )
        # room for max_frames: pages are committed as they are written
        capacity = max_frames * analysis_hz // native_hz + 64
        self._out, self._size = np.empty(capacity, np.float32), 0
        self._scratch = np.empty(0, np.float32)

    def mix(self, block: np.ndarray, memory_for: Callable[[int], np.ndarray]) -> np.ndarray:
        """The mix of ``block`` into ``memory_for(frames)``; its difference kept here."""
        self._scratch = _at_least(self._scratch, len(block))
        difference = self._scratch[: len(block)]
        mixed = _mix_to_mono(block, memory_for(len(block)), difference)
        if not np.isfinite(difference).all():
            difference = _zero_nonfinite(difference)
        if self._resampler is not None:
            difference = self._resampler.resample_chunk(difference)
        self._out, self._size = _append(self._out, self._size, difference)
        return mixed

    def samples(self) -> np.ndarray:
        if self._resampler is not None:
            rest = self._resampler.resample_chunk(np.zeros(0, np.float32), True)
            self._out, self._size = _append(self._out, self._size, rest)
        return _released(self._out, self._size)


class _ChannelsStream:
    """The channels of a segment of 3 or more channels (:func:`keeps_channels`), as the mix
    takes them (a channel in antiphase inverted: the difference of two is then what their mix
    cancels), each resampled to the analysis rate as the first pass decodes them, ``(samples,
    channels)``, at most ``room`` samples of each (:func:`kept_channel_budget`); their means
    are removed afterwards (:func:`_aligned_channels`)."""

    def __init__(self, native_hz: int, analysis_hz: int, max_frames: int, channels: int, room: int):
        self._resampler = (
            soxr.ResampleStream(native_hz, analysis_hz, channels, dtype="float32", quality="HQ")
            if native_hz != analysis_hz
            else None
        )
        capacity = min(max_frames * analysis_hz // native_hz + 64, max(room, 0))
        self._out, self._size = np.empty((capacity, channels), np.float32), 0  # commit as written

    def mix(self, block: np.ndarray, memory_for: Callable[[int], np.ndarray]) -> np.ndarray:
        """The mix of ``block`` into ``memory_for(frames)``, bit for bit :func:`_mix_to_mono`'s;
        its channels kept here while there is room."""
        signed = _signed(block)
        if self._size < len(self._out):
            channels = signed if np.isfinite(signed).all() else _zero_nonfinite(signed)
            if self._resampler is not None:
                channels = self._resampler.resample_chunk(np.ascontiguousarray(channels))
            self._append(channels)
        return signed.mean(axis=1, dtype=np.float32, out=memory_for(len(block)))

    def _append(self, values: np.ndarray) -> None:
        n = min(len(values), len(self._out) - self._size)
        self._out[self._size : self._size + n] = values[:n]
        self._size += n

    def samples(self) -> np.ndarray:
        if self._resampler is not None and self._size < len(self._out):
            self._append(
                self._resampler.resample_chunk(np.zeros((0, self._out.shape[1]), np.float32), True)
            )
        return _released(self._out, self._size)


def _signed(block: np.ndarray) -> np.ndarray:
    """A ``(frames, channels)`` block of 3 or more channels as :func:`_mix_to_mono` takes its
    mean: each channel in antiphase (:func:`antiphase_signs`) inverted."""
    signs = antiphase_signs(block)
    return block if signs is None else block * signs


def keeps_channels(channels: int, settings: Settings) -> bool:
    """Whether a stream of ``channels`` channels keeps each of them, to screen them or their
    differences alone: 3 or more of them, with settings that screen such parts."""
    return 3 <= channels <= MAX_SCREENED_CHANNELS and settings.screens_stereo_parts


def kept_channel_budget(settings: Settings) -> int:
    """Analysis samples (all channels) a file's kept channels may hold: as many as 7.1 holds
    over ``settings.max_duration_s`` (423 MB for 20 minutes). A file of more channels keeps
    them as far as they fit; its mix is decoded on, as far as the other limits go."""
    return int(MAX_PAIRED_CHANNELS * settings.max_duration_s * settings.sample_rate_hz)


class _KeptChannelRoom:
    """What is left of :func:`kept_channel_budget` as a file's streams are decoded, shared out:
    a stream that keeps its channels may take the room left divided by the streams still to
    keep theirs, itself included. A red team's 160 s of 64 channels took it all, and the 5.1
    stream after it, a copy in antiphase between its back channels, kept none (`clean`)."""

    def __init__(self, budget: int, streams: int):
        self.left = budget
        self._streams = streams  # that keep their channels, not yet decoded

    def share(self) -> int:
        return max(self.left, 0) // max(self._streams, 1)

    def take(self, samples: int) -> None:
        """One stream kept ``samples`` (all channels)."""
        self.left -= samples
        self._streams -= 1


def _released(reserved: np.ndarray, size: int) -> np.ndarray:
    """The first ``size`` values of an array reserved for up to the whole duration cap: a copy
    when they fill less than half of it, so that the reservation goes (400 one-second stereo
    links of a chained Ogg file must not hold 400 of them)."""
    return reserved[:size].copy() if size < len(reserved) // 2 else reserved[:size]


def _mix_to_mono(
    block: np.ndarray, out: np.ndarray, difference: np.ndarray | None = None
) -> np.ndarray:
    """The channel mean of float32 ``(frames, channels)`` into ``out``, bit for bit what
    ``block.mean(axis=1, dtype=np.float32)`` gives (a reduction that starts from +0.0), ten
    times faster for one or two channels; a channel in antiphase (:func:`antiphase_signs`)
    inverted first, so that a stereo block in antiphase is half the difference of its
    channels. With ``difference`` (two channels only), what the mix leaves out goes there:
    half the difference of the channels, or half their sum where the mix took the
    difference."""
    zero = np.float32(0.0)
    if block.shape[1] == 1:
        return np.add(block[:, 0], zero, out=out)
    signs = antiphase_signs(block)
    if block.shape[1] == 2:
        # (l + r) + 0.0 is (l + 0.0) + r bit for bit (it only turns -0.0 + -0.0 into +0.0; NaN
        # and inf are zeroed afterwards), with one strided pass instead of two; l - r is
        # l + (-r) bit for bit
        mix, rest = (np.add, np.subtract) if signs is None else (np.subtract, np.add)
        with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN are zeroed after
            if difference is not None:
                rest(block[:, 0], block[:, 1], out=difference)
                difference /= np.float32(2.0)
            mix(block[:, 0], block[:, 1], out=out)
        out += zero
        out /= np.float32(2.0)
        return out
    if signs is not None:
        block = block * signs
    return block.mean(axis=1, dtype=np.float32, out=out)


def antiphase_signs(block: np.ndarray) -> np.ndarray | None:
    """The signs that undo a polarity-inverted channel of a ``(frames, channels)`` block: -1 for
    each channel that correlates below :data:`ANTIPHASE_CORRELATION` with the loudest one
    (in a stereo block, the other one; of more channels, with the louder channel it is most
    like: :func:`_inverted_among_many`), else +1; None when no channel does.

    The mean of channels in antiphase cancels what they share, the centre of the mix (a
    dual-mono track entirely: it would be "silent"), while a listener hears the recording
    almost as it was. With the signs undone, the mean is the original's, sample for sample
    when one channel of it was inverted (up to the sign of the whole when it was the loudest
    one). Music's own blocks rarely come near: of the benchmark corpus's 17,147 stereo blocks,
    25 correlate below -0.5 and 1 below -0.7, in wide orchestral recordings where the mean and
    the difference hold much the same. Non-finite samples (zeroed after the mix) count as
    silence here."""
    # one contiguous float64 row per channel, its products summed by einsum's own loop in one
    # pass without a temporary: BLAS dot products (their threads spin after each call) and sums
    # across the interleaved block each doubled the CPU of decoding on 2 cores (a surround
    # block's one matrix product costs 0.2 ms more); a copy per channel and numpy's sums of
    # squares took 0.38 ms a stereo block, this 0.2 (``benchmarks/CPU.md``, session 49)
    if block.shape[1] < 2:
        return None
    channels = list(np.ascontiguousarray(block.T, dtype=np.float64))  # one copy, row by row
    with np.errstate(all="ignore"):
        power = np.array([_dot(x, x) for x in channels])
        if not np.isfinite(power).all():
            for x in channels:
                x[~np.isfinite(x)] = 0.0
            power = np.array([_dot(x, x) for x in channels])
        # about the channels' means: a constant offset is inaudible, and offsets of opposite
        # signs (left = copy + 0.3, right = copy - 0.3) would pass for antiphase, leaving the
        # mix only the offset, refused as silent. Of the benchmark corpora's 30,956 stereo
        # blocks, none is decided otherwise
        sums, frames = np.array([x.sum() for x in channels]), len(block)
        power = np.maximum(power - sums * sums / frames, 0.0)
        if len(channels) > 2:
            inverted = _inverted_among_many(channels, power, sums)
        else:
            loudest = int(np.argmax(power))
            other = 1 - loudest
            cross = _dot(channels[other], channels[loudest]) - sums[other] * sums[loudest] / frames
            inverted = np.zeros(2, bool)
            inverted[other] = cross < ANTIPHASE_CORRELATION * np.sqrt(power[other] * power[loudest])
    if not inverted.any():
        return None
    return np.where(inverted, np.float32(-1.0), np.float32(1.0))


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """The sum of ``x * y`` (float64), in one pass."""
    return float(np.einsum("i,i->", x, y))


def _inverted_among_many(
    channels: list[np.ndarray], power: np.ndarray, sums: np.ndarray
) -> np.ndarray:
    """Of three or more channels, loudest first: each is inverted when, of the louder ones as
    already signed, the one it correlates with most strongly it correlates with below
    :data:`ANTIPHASE_CORRELATION`. A pair in antiphase beside a louder unrelated channel (a
    copy in front left, inverted in front right, under a loud centre) is undone too; for two
    channels this is the loudest-channel rule. ``power`` and the products are about the
    channels' means (``sums``)."""
    stack = np.stack(channels)
    scale = np.sqrt(np.outer(power, power))
    products = stack @ stack.T - np.outer(sums, sums) / stack.shape[1]
    correlation = np.divide(products, scale, out=np.zeros_like(scale), where=scale > 0)
    order = np.argsort(-power, kind="stable")
    signs = np.ones(len(channels))
    for position in range(1, len(order)):
        louder = order[:position]
        signed = correlation[order[position], louder] * signs[louder]
        strongest = signed[int(np.argmax(np.abs(signed)))]
        if strongest < ANTIPHASE_CORRELATION:
            signs[order[position]] = -1.0
    return signs < 0


def _block_frames(channels: int) -> int:
    """Frames per decoded block: 65536 for one or two channels, as always (libmpg123 conceals
    damaged MP3 frames differently for other read sizes: the sha256 would change); fewer for
    many channels, so a block stays 512 KB."""
    return max(1 << 12, _BLOCK_SAMPLES // max(2, channels))


# --- libsndfile -----------------------------------------------------------------------------


def _decode_with_soundfile(fd: int, settings: Settings, links: _OggLinks) -> Audio:
    segments = _soundfile_segments(fd, links)
    first = next(segments, None)
    if first is None:
        raise _Unparsed("no audio stream in file")
    if first.format in _SPDIF_PROBED_FORMATS and first.channels == 2 and _holds_spdif_bursts(fd):
        raise _Unparsed(
            "cannot decode: AC3 or DTS in S/PDIF frames, which libsndfile reads as noise"
        )
    return _analysis_audio(
        _chain([first], segments),
        settings,
        title=first.title,
        artist=first.artist,
        no_frames_error=_Unparsed,  # libsndfile read nothing: ffmpeg may read more
        keeping_streams=_streams_keeping_channels(fd, links, settings),
    )


def _streams_keeping_channels(fd: int, links: _OggLinks, settings: Settings) -> int:
    """How many of the streams libsndfile decodes keep their channels (:func:`keeps_channels`):
    of an Ogg file's links, those whose first packet states enough channels or none that can
    be read; else the file's one stream."""
    streams = _ogg_audio_streams(links)
    if streams is None:
        return 1
    counts = (_ogg_stated_channels(fd, stream) for stream in streams)
    return sum(
        settings.screens_stereo_parts if count is None else keeps_channels(count, settings)
        for count in counts
    )


def _ogg_stated_channels(fd: int, stream: ogg.OggStream) -> int | None:
    """The channels the first packet of an Ogg Vorbis, Opus or FLAC stream states, else None."""
    page = os.pread(fd, 27 + 255 + 64, stream.runs[0]) if stream.runs else b""
    body = page[27 + page[26] :] if len(page) > 27 else b""
    if body.startswith(b"\x01vorbis") and len(body) > 11:
        return body[11]
    if body.startswith(b"OpusHead") and len(body) > 9:
        return body[9]
    if body.startswith(b"\x7fFLAC") and body[9:13] == b"fLaC" and len(body) > 29:
        return ((body[29] >> 1) & 7) + 1  # STREAMINFO from byte 17, channels less one in 29
    return None


# IEC 61937's burst preamble, Pa = 0xF872 and Pb = 0x4E1F as 16-bit little-endian words: AC3 or
# DTS carried in a PCM WAV's (or Wave64's) samples, which ffmpeg's readers find and decode and
# libsndfile plays as loud noise (a copy hidden so was screened `clean`)
_SPDIF_PREAMBLE = b"\x72\xf8\x1f\x4e"
_SPDIF_PROBED_FORMATS = ("WAV", "WAVEX", "RF64", "W64")  # whose readers in ffmpeg look for it
_SPDIF_SNIFF_BYTES = 1 << 16


def _holds_spdif_bursts(fd: int) -> bool:
    """Whether the first 64 KiB of the file hold two S/PDIF burst preambles at even offsets
    (one is a 1-in-2^32 chance in PCM; ffmpeg looks as far)."""
    head, found, start = os.pread(fd, _SPDIF_SNIFF_BYTES, 0), 0, 0
    while found < 2:
        start = head.find(_SPDIF_PREAMBLE, start) + 1
        if start == 0:
            return False
        found += (start - 1) % 2 == 0
    return True


def _chain(head: list[_Segment], rest: Iterator[_Segment]) -> Iterator[_Segment]:
    yield from head
    yield from rest


@contextmanager
def _libsndfile_errors() -> Iterator[None]:
    """I/O failures are one clear error; what libsndfile cannot parse may go to ffmpeg."""
    try:
        yield
    except AudioDecodeError:
        raise
    except OSError as exc:
        raise AudioDecodeError(f"cannot read file: {exc.strerror or first_line(exc)}") from None
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError) as exc:
        message = re.sub(r"^Error opening .*?: ", "", first_line(exc))
        if "not a regular file" in message:  # libsndfile's words for a file it cannot parse
            message = "not a recognised audio format"
        raise _Unparsed(f"cannot decode: {message}") from None


class _SoundfileSegment:
    """One file (or one Ogg logical stream) that libsndfile reads; the header is read at once."""

    def __init__(
        self,
        open_file: Callable[[], sf.SoundFile],
        unread_bytes: Callable[[], int] | None = None,
        view: ogg.FileView | None = None,
        fd: int | None = None,
    ):
        self._open_file = open_file
        self._fd = fd  # the whole file's, when it is one stream
        # the bytes of the file (``unread_bytes``) or stream (``view``) after where libsndfile
        # stopped
        self._unread_bytes = unread_bytes or (lambda: view.size - view.tell())
        self._view = view  # where libsndfile reads through Python: its read errors are kept
        self.more = False
        self.difference = self.channels_kept = None  # made from the blocks, as they come
        with _libsndfile_errors():
            self._first: sf.SoundFile | None = open_file()
            self.sample_rate_hz = int(self._first.samplerate)
            self.channels = int(self._first.channels)
            self.title = self._first.title or None
            self.artist = self._first.artist or None
            self.format = str(self._first.format)
            self._stated_length = self.format in _HEADER_LENGTH_FORMATS
            self._ogg = self.format == "OGG" and self._first.subtype in ("OPUS", "VORBIS")

    def blocks(self, max_frames: int) -> Iterator[np.ndarray]:
        f, self._first = self._first, None
        if f is None:
            with _libsndfile_errors():
                f = self._open_file()
        with f:
            step, total = _block_frames(self.channels), 0
            # one array for every read: a fresh one per block cost about 0.01 CPU-s of page faults
            # per 4-min MP3 (issue #16); the block is mixed down before the next read
            buffer = np.empty((step, self.channels), np.float32)
            while total < max_frames:
                with _libsndfile_errors():
                    block = f.read(out=buffer[: _read_frames(f, min(step, max_frames - total))])
                if len(block) == 0:
                    break
                total += len(block)
                yield block
            with _libsndfile_errors():  # one frame more tells whether the cap cut the audio
                self.more = total >= max_frames and len(f.read(1, always_2d=True)) > 0
        if self._view is not None and self._view.error is not None:
            raise AudioDecodeError(f"cannot read file: {self._view.error.strerror}")
        if total < max_frames and self._stated_length:
            self._check_read_to_the_end(total)
            if self._ogg:
                self._check_packets_end_there()

    def _check_packets_end_there(self) -> None:
        """An Opus or Vorbis stream's packets hold no more audio than its last granule position
        states: one page of long packets before a last page stating an earlier end is read
        whole by libsndfile, so no bytes are left unread, yet ffmpeg plays what it drops."""
        if self._view is not None:
            read, size = self._view.read_at, self._view.size
        else:
            read, size = self._read_file, os.fstat(self._fd).st_size
        past = ogg.seconds_past_end(read, size)
        if math.isinf(past):
            raise _Unparsed(
                f"cannot decode: more than {ogg.MAX_CHECKED_PACKETS:,} Ogg packets in a stream "
                "libsndfile read to its stated end"
            )
        if past > _MAX_OGG_PAST_END_S:
            raise _Unparsed(
                f"cannot decode: its packets hold {past:.1f} s more than the stream states "
                "(libsndfile stops where it says it ends)"
            )

    def _read_file(self, offset: int, count: int) -> bytes:
        return os.pread(self._fd, count, offset)

    def _check_read_to_the_end(self, frames: int) -> None:
        """A header that states less audio than the stream holds (a copy hidden after a
        few seconds a lying header admits to) is read again by ffmpeg, which reads on."""
        left = self._unread_bytes()
        if left > _MAX_UNREAD_TAIL_BYTES:
            raise _Unparsed(
                f"cannot decode: {left:,} bytes follow the {frames / self.sample_rate_hz:.1f} s "
                "of audio libsndfile decoded (its header may state less than the file holds)"
            )


def _read_frames(f: sf.SoundFile, frames: int) -> int:
    """How many frames ``f.read(frames)`` asks libsndfile for: no more than the header says
    are left, as soundfile counts them when it makes the array itself (``read(out=...)`` asks
    for the whole ``out``). The read sizes stay those of every catalog's decoding: libmpg123
    conceals damaged frames differently for other ones."""
    if f.seekable():
        frames = min(frames, f.frames - f.tell())
    return max(frames, 0)


def _soundfile_segments(fd: int, links: _OggLinks) -> Iterator[_SoundfileSegment]:
    """The whole file, or each audio stream of a chained or multiplexed Ogg file in order."""
    streams = _ogg_audio_streams(links)
    if streams is None:  # not Ogg, or one plain stream: libsndfile reads the file as it is

        def unread() -> int:
            end = os.fstat(fd).st_size
            tags = _trailing_tags(fd, end, with_ffmpeg=ffmpeg_executable() is not None)
            return end - os.lseek(fd, 0, os.SEEK_CUR) - tags

        yield _SoundfileSegment(lambda: _soundfile_at_start(fd), unread, fd=fd)
        return
    for index, stream in enumerate(streams):
        if index >= _MAX_OGG_STREAMS:  # each costs a decoder: ffmpeg reads a chain as one
            raise _Unparsed(f"cannot decode: more than {_MAX_OGG_STREAMS} chained Ogg streams")
        view = ogg.FileView(fd, stream.runs)
        yield _SoundfileSegment(lambda view=view: sf.SoundFile(view.reopened()), view=view)


def _trailing_tags(fd: int, end: int, with_ffmpeg: bool) -> int:
    """Bytes of the tags that may end an audio file after its stream and that are not audio: an
    ID3v1 tag (128 bytes), then, only where no ffmpeg reads on, Lyrics3v2 and APEv2 tags
    stacked before it (up to four), each well formed over every byte it claims. A
    tag's size field is the uploader's: a forged footer claiming the whole file hid a copy
    after a header's stated length. Audio can also be wrapped in a well-formed tag's item, and
    ffmpeg's FLAC and Ogg readers play it, so with ffmpeg only the fixed-size ID3v1 counts."""
    total = 128 if end >= 128 and os.pread(fd, 3, end - 128) == b"TAG" else 0
    if with_ffmpeg:
        return total
    for _ in range(4):  # stacked in either order, or two APEv2 tags
        size = _lyrics3v2_size(fd, end - total) or _apev2_size(fd, end - total)
        if not size:
            break
        total += size
    return total


def _lyrics3v2_size(fd: int, end: int) -> int:
    """The size of a well-formed Lyrics3v2 tag ending at ``end`` (``LYRICSBEGIN``, fields of a
    three-letter name, a five-digit size and that many bytes, a six-digit size, ``LYRICS200``),
    else 0."""
    footer = os.pread(fd, 15, max(end - 15, 0))
    if len(footer) != 15 or footer[6:] != b"LYRICS200" or not footer[:6].isdigit():
        return 0
    size = int(footer[:6])
    start = end - 15 - size
    if size < 11 or start < 0:
        return 0
    body = os.pread(fd, size, start)
    if len(body) != size or not body.startswith(b"LYRICSBEGIN"):
        return 0
    position = 11
    while position < size:
        name, digits = body[position : position + 3], body[position + 3 : position + 8]
        if len(digits) != 5 or not (name.isalpha() and name.isupper()) or not digits.isdigit():
            return 0
        position += 8 + int(digits)
    return size + 15 if position == size else 0


def _apev2_size(fd: int, end: int) -> int:
    """The size of a well-formed APEv2 tag ending at ``end``: its footer, items that fill the
    size it states exactly, as many as it states, and its header where it says it has one;
    else 0."""
    footer = os.pread(fd, 32, max(end - 32, 0))
    if len(footer) != 32 or footer[:8] != b"APETAGEX":
        return 0
    version, size, count, flags = struct.unpack("<IIII", footer[8:24])
    header = 32 if flags & 0x80000000 else 0
    start = end - size - header
    if version not in (1000, 2000) or not 32 <= size <= _MAX_APE_TAG_BYTES or start < 0:
        return 0
    tag = os.pread(fd, size + header, start)
    if len(tag) != size + header or (header and tag[:8] != b"APETAGEX"):
        return 0
    items, position = tag[header : header + size - 32], 0
    for _ in range(count):
        if position + 8 > len(items):
            return 0
        value_size = int.from_bytes(items[position : position + 4], "little")
        key_end = items.find(b"\x00", position + 8)
        key = items[position + 8 : key_end]
        if key_end < 0 or not 2 <= len(key) <= 255 or not all(0x20 <= c <= 0x7E for c in key):
            return 0
        position = key_end + 1 + value_size
    return size + header if position == len(items) else 0


def _soundfile_at_start(fd: int) -> sf.SoundFile:
    os.lseek(fd, 0, os.SEEK_SET)
    return sf.SoundFile(fd, closefd=False)


class _OggLinks:
    """The audio streams of the Ogg file open as ``fd`` (:func:`audiodup.ogg.audio_streams`;
    None: not an Ogg file), its pages walked once for a decoding that falls back from
    libsndfile to ffmpeg; a failed walk raises its error again."""

    def __init__(self, fd: int):
        self._fd = fd
        self._walked: tuple[list[ogg.OggStream] | None, Exception | None] | None = None

    def streams(self) -> list[ogg.OggStream] | None:
        if self._walked is None:
            try:
                is_ogg = os.pread(self._fd, 4, 0) == b"OggS"
                self._walked = (ogg.audio_streams(self._fd) if is_ogg else None, None)
            except Exception as exc:
                self._walked = (None, exc)
        streams, error = self._walked
        if error is not None:
            raise error
        return streams


def _ogg_audio_streams(links: _OggLinks) -> list[ogg.OggStream] | None:
    """The audio streams of an Ogg file in play order, or None when libsndfile can read the file
    as it is (not Ogg, one link holding one stream, or no valid page at all)."""
    with _libsndfile_errors():
        try:
            streams = links.streams()
        except ogg.OggPageLimitError as exc:  # walked in Python: ffmpeg, in C, may take the file
            raise _Unparsed(f"cannot decode: {exc}") from None
    for stream in streams or ():
        if not stream.head.startswith(_LIBSNDFILE_OGG_CODECS):
            raise _Unparsed("cannot decode: an Ogg stream of a codec libsndfile does not read")
    return streams


# --- ffmpeg ---------------------------------------------------------------------------------


def _decode_with_ffmpeg(
    ffmpeg_path: str, fd: int, settings: Settings, links: _OggLinks
) -> tuple[list[_ArraySegment], bool]:
    """Each audio stream of the file, mono at the analysis rate (a stereo one mixed by
    :func:`_mix_to_mono`, as libsndfile's blocks are), within the caps; and whether the caps
    cut the audio."""
    with ExitStack() as copies:
        return _decode_ffmpeg_sources(
            ffmpeg_path, _ffmpeg_sources(ffmpeg_path, fd, copies, links), settings
        )


def _ffmpeg_sources(
    ffmpeg_path: str, fd: int, copies: ExitStack, links: _OggLinks
) -> list[tuple[int, int, ffmpeg.FfmpegStream]]:
    """``(file, stream index, stream)`` of every audio stream ffmpeg is to decode. ffmpeg reads
    only the first link of a chained Ogg file, so each logical stream of an Ogg file that holds
    several (chained or multiplexed) is copied alone to an anonymous temporary file first (held
    open by ``copies``) and decoded from there."""
    streams = None
    # too long to walk: ffmpeg reads it; a read error is one line
    with suppress(ogg.OggPageLimitError), _libsndfile_errors():
        streams = links.streams()
    if not streams or len(streams) < 2:
        sources = [(fd, i, s) for i, s in enumerate(ffmpeg.audio_streams(ffmpeg_path, fd))]
    else:
        sources = []
        for link in streams[: _MAX_FFMPEG_AUDIO_STREAMS + 1]:
            copy = _link_copy(fd, link, copies)
            probed = ffmpeg.audio_streams(ffmpeg_path, copy)
            sources += [(copy, i, s) for i, s in enumerate(probed)]
    if len(sources) > _MAX_FFMPEG_AUDIO_STREAMS:
        counted = (  # the links of a long chain are not all probed
            f"{len(streams):,} Ogg streams (chained or multiplexed)"
            if streams and len(streams) >= 2
            else f"{len(sources)} audio streams"
        )
        raise AudioDecodeError(
            f"cannot decode: {counted}, at most {_MAX_FFMPEG_AUDIO_STREAMS} through ffmpeg"
        )
    return sources


class _KeptDifference:
    """:func:`_mix_to_mono` for ffmpeg's blocks (an :data:`ffmpeg.Mix`) that keeps a stereo
    stream's difference, or the channels of a stream of ``channels`` (:func:`keeps_channels`;
    as :class:`_ChannelsStream` keeps them), at most ``max_samples`` of them: pages are
    committed as they are written, as ffmpeg's own output array's are."""

    def __init__(self, max_samples: int, channels: int = 0):
        shape = (max_samples, channels) if channels else max_samples
        self._kept = np.empty(shape, np.float32)
        self._size = 0

    def __call__(self, block: np.ndarray, out: np.ndarray) -> np.ndarray:
        if self._kept.ndim == 2 and block.shape[1] == self._kept.shape[1]:
            signed = _signed(block)  # as _ChannelsStream keeps them, while there is room
            n = min(len(block), len(self._kept) - self._size)
            self._kept[self._size : self._size + n] = signed[:n]
            self._size += n
            return signed.mean(axis=1, dtype=np.float32, out=out)
        end = self._size + len(block)
        if block.shape[1] != 2 or len(self._kept) == 0 or self._kept.ndim == 2:
            return _mix_to_mono(block, out)  # not stereo, or kept by no one
        mixed = _mix_to_mono(block, out, self._kept[self._size : end])
        self._size = end
        return mixed

    def result(self, samples: int) -> np.ndarray | None:
        """What was kept of the first ``samples`` mixed, or None for a stream that kept none."""
        if self._size == 0:
            return None
        kept = _released(self._kept, min(samples, self._size))
        # min and max propagate NaN and inf: no array of flags as long as the difference
        if np.isfinite(kept.min(initial=0.0)) and np.isfinite(kept.max(initial=0.0)):
            return kept
        return _zero_nonfinite(kept)


def _mixable(stream: ffmpeg.FfmpegStream) -> int | None:
    """The channels ffmpeg is to hand back to be mixed here; None (ffmpeg mixes down) when its
    probe did not tell them or they are more than :data:`MAX_CHANNELS`."""
    channels = stream.channels
    return channels if channels is not None and channels <= MAX_CHANNELS else None


def _link_copy(fd: int, link: ogg.OggStream, copies: ExitStack) -> int:
    """The file descriptor of an anonymous temporary file holding ``link``'s pages alone."""
    try:
        copy = copies.enter_context(tempfile.TemporaryFile(prefix="audiodup-ogg-"))  # noqa: SIM115
        view = ogg.FileView(fd, link.runs)
        while chunk := view.read(1 << 20):
            copy.write(chunk)
        copy.flush()
    except OSError as exc:
        where = "for a copy of an Ogg stream" if exc.errno == errno.ENOSPC else ""
        raise AudioDecodeError(f"cannot decode: {exc.strerror or exc} {where}".strip()) from None
    if view.error is not None:
        raise AudioDecodeError(f"cannot read file: {view.error.strerror}")
    return copy.fileno()


def _decode_ffmpeg_sources(
    ffmpeg_path: str, sources: list[tuple[int, int, ffmpeg.FfmpegStream]], settings: Settings
) -> tuple[list[_ArraySegment], bool]:
    for _, _, stream in sources:  # every header is checked before anything is decoded
        if stream.sample_rate_hz is not None:
            _check_format(stream.sample_rate_hz, stream.channels or 1)
    analysis_hz = settings.sample_rate_hz
    remaining_samples = int(settings.max_duration_s * analysis_hz)
    native_budget_samples = settings.max_duration_s * _NATIVE_SAMPLES_PER_CAP_S
    room = _KeptChannelRoom(
        kept_channel_budget(settings),
        sum(keeps_channels(_mixable(stream) or 0, settings) for _, _, stream in sources),
    )
    segments: list[_ArraySegment] = []
    for fd, index, stream in sources:
        # native samples (all channels) behind each output sample, 0 when the probe did not say
        native_per_sample = (stream.sample_rate_hz or 0) * (stream.channels or 1) / analysis_hz
        max_samples = remaining_samples
        if native_per_sample:  # the native-sample budget, as for libsndfile
            max_samples = min(max_samples, int(native_budget_samples / native_per_sample))
        if max_samples <= 0:
            return segments, True
        mixable = _mixable(stream)
        keeps = mixable is not None and keeps_channels(mixable, settings)
        if keeps:
            kept = _KeptDifference(min(max_samples, room.share() // mixable), mixable)
        else:
            kept = _KeptDifference(max_samples if settings.screens_stereo_parts else 0)
        samples, cut = ffmpeg.decode_stream(
            ffmpeg_path,
            fd,
            index,
            max_samples,
            analysis_hz,
            mixable,
            kept,
            stream.layout,
            stream.described,
            stream.demuxer,
        )
        made = kept.result(len(samples)) if len(samples) else None
        if keeps:
            room.take(0 if made is None else made.size)
        if len(samples):
            if mixable == 1 and made is not None and not made.any():  # it stayed mono throughout
                made = None
            segments.append(
                _ArraySegment(samples, analysis_hz)
                if made is None
                else _ArraySegment(samples, analysis_hz, difference=made)
                if made.ndim == 1
                else _ArraySegment(samples, analysis_hz, channels_kept=made)
            )
        remaining_samples -= len(samples)
        native_budget_samples -= len(samples) * native_per_sample
        if cut:
            return segments, True
    return segments, False
