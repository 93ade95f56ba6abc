"""ffmpeg, for what libsndfile cannot read: finding it, probing the audio streams of an open
file, and decoding one of them to mono float32 within a sample budget.

``AUDIODUP_FFMPEG`` names the executable and ``AUDIODUP_FFMPEG=none`` disables it (the tests run
both decoder paths on one machine this way); unset, ``ffmpeg`` is looked up on ``PATH``.

A file name never reaches ffmpeg: it gets the open file as its standard input and reads it as
``file:/proc/self/fd/0`` (``/dev/fd/0`` without ``/proc``): seekable, so an MP4 with its index at
the end decodes. It may only use the ``file`` protocol and only the container formats in
``_FORMATS``: playlists (HLS, ffconcat) that would make it open other files or URLs are refused.
An MP4, M4A or MOV (the ``mov`` demuxer) whose edit lists leave media of a sound track out
(:mod:`audiodup.mp4`) is decoded whole, its edit lists ignored. Its output is read in blocks
into the caller's sample budget and it is stopped once that is full; it runs under an
address-space limit (``_ADDRESS_SPACE_BYTES``) and a time limit (``_TIMEOUT_S``), and what is
kept of its stderr is bounded whatever it prints.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import selectors
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from . import mp4
from .errors import AudioDecodeError, first_line

_TIMEOUT_S = 600.0
_ADDRESS_SPACE_BYTES = 4 << 30  # ffmpeg decoding audio maps ~0.3 GB; hostile headers more
# Container formats ffmpeg may read. Not on the list: playlists and scripts (hls, concat, dash,
# imf) that open further files or URLs, image sequences, devices and raw formats.
_FORMATS = (
    "aac", "ac3", "aiff", "amr", "amrnb", "amrwb", "ape", "asf", "au", "avi", "caf", "dsf",
    "dts", "dtshd", "eac3", "flac", "flv", "gsm", "ircam", "live_flv", "loas", "matroska", "mlp",
    "mov", "mp3", "mpc", "mpc8", "mpeg", "mpegts", "mxf", "nistsphere", "nut", "ogg", "oma", "qcp",
    "rm", "shn", "sox", "spdif", "tak", "truehd", "tta", "voc", "w64", "wav", "wtv", "wv", "xwma",
)  # fmt: skip
# a stream's line: its index, then (after tags such as its language, which are the file's own)
# its type and description; the last type marker is ffmpeg's, one inside a tag comes before it
_STREAM_START = re.compile(rb"^\s*Stream #\d+:(\d+)")
_STREAM_TYPE = re.compile(rb".*: (Audio|Video|Subtitle|Data|Attachment|Unknown): (.*)$")
_REFUSED_FORMAT = re.compile(rb"^\[([\w,]+) @ 0x[0-9a-f]+\] Format not on whitelist")
_INPUT_FORMAT = re.compile(rb"^Input #\d+, ([\w,]+), from ")
# the demuxer of MP4, MOV and M4A: it plays only what an edit list (elst) selects, and media
# outside the edit would never be decoded (a red team: 5 s played of 45, the copy in the rest;
# audiodup.mp4 tells an encoder's plain edit from one that leaves media out)
_MOV_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"
# a line of a run at "level+verbose": [context @ 0x...] [level] message
_LEVELED = re.compile(
    rb"^(?P<context>\[[^\]]* @ 0x[0-9a-f]+\] )?\[(?P<level>[a-z]+)\] (?P<message>.*)$"
)
# the frames a filter graph was (re)configured for: one line per layout the stream turns to
_FRAME_LAYOUT = re.compile(rb"^\[graph\S* @ 0x[0-9a-f]+\] \[verbose\] .*\bchlayout:(.+?)\s*$")
_NEW_AUDIO_STREAM = re.compile(rb"^(\[\S+ @ 0x[0-9a-f]+\] )?\[warning\] New audio stream ")
# ffmpeg's named channel layouts that are not numbers (5.1, 7.1.4, 22.2 count their channels)
_LAYOUT_CHANNELS = {
    b"mono": 1, b"stereo": 2, b"downmix": 2, b"binaural": 2, b"quad": 4, b"hexagonal": 6,
    b"octagonal": 8, b"cube": 8, b"hexadecagonal": 16,
}  # fmt: skip
_CHANNEL_NAME = re.compile(rb"[A-Za-z][A-Za-z0-9]*|USR\d+")
_UNORDERED = re.compile(r"\d+ channels")  # a layout of no stated order


def ffmpeg_executable() -> str | None:
    """The ffmpeg executable that reads what libsndfile cannot, or None.

    ``AUDIODUP_FFMPEG`` names it (a path or a name looked up on ``PATH``); ``none`` disables the
    fallback; unset or empty, ``ffmpeg`` is looked up on ``PATH``.
    """
    choice = os.environ.get("AUDIODUP_FFMPEG", "").strip()
    if choice.lower() == "none":
        return None
    return shutil.which(choice or "ffmpeg")


def ffmpeg_absence_reason() -> str:
    """Why :func:`ffmpeg_executable` found none, for the error of a file only ffmpeg might read."""
    choice = os.environ.get("AUDIODUP_FFMPEG", "").strip()
    if choice.lower() == "none":
        return "ffmpeg, which reads more formats, is disabled by AUDIODUP_FFMPEG=none"
    if choice:
        return f"ffmpeg, which reads more formats, is not found: AUDIODUP_FFMPEG={choice}"
    return "ffmpeg, which reads more formats, is not installed"


@dataclass(frozen=True)
class FfmpegStream:
    """An audio stream as ffmpeg's probe describes it (None: not stated). ``layout`` names its
    channels in their order (``quad``, ``5.1(side)``, ``FL+FR+BL+BR``) where the probe does:
    decoded in that layout, they come as they are, where ``-ac`` would remix a layout other than
    ffmpeg's default for their number (a quad file's back channels summed into one: a copy in
    antiphase between them cancelled)."""

    sample_rate_hz: int | None
    channels: int | None
    layout: str | None = None
    described: str | None = None  # the layout as the probe describes it (``4 channels``)
    demuxer: str | None = None  # the container's reader (``mov,mp4,m4a,3gp,3g2,mj2``)


def audio_streams(ffmpeg: str, fd: int) -> list[FfmpegStream]:
    """The audio streams of the open file ``fd`` in index order, from ffmpeg's description of
    its input.

    Raises
    ------
    AudioDecodeError
        A container not on the whitelist, no audio stream, or one ffmpeg cannot read.
    """
    run = _run(_input_args(ffmpeg, "info"), fd, 0)
    if run.refused_format is None and run.input_opened:
        streams = _described_streams(run.stream_lines, run.input_format)
    else:
        streams = {}
    if run.refused_format is not None:
        raise AudioDecodeError(
            f"cannot decode: {run.refused_format} is not an audio container audiodup reads "
            "(playlists and scripts that open other files or URLs, image sequences, devices and "
            "raw formats are refused)"
        )
    if not streams:
        reason = "no audio stream" if run.input_opened else run.message
        raise AudioDecodeError(f"cannot decode ({reason or 'ffmpeg cannot read it'})")
    return [streams[i] for i in sorted(streams)]


def decode_stream(
    ffmpeg: str,
    fd: int,
    stream_index: int,
    max_samples: int,
    analysis_hz: int,
    channels: int | None = None,
    mix: Mix | None = None,
    layout: str | None = None,
    described: str | None = None,
    demuxer: str | None = None,
) -> tuple[np.ndarray, bool]:
    """Audio stream ``stream_index`` of the open file ``fd``, mono float32 at ``analysis_hz``:
    at most ``max_samples`` samples and whether there was more. A stream of 2 or more
    ``channels`` is read as its channels and mixed by ``mix`` in blocks of
    :data:`_MIX_BLOCK_FRAMES` as they arrive (a polarity-inverted channel is undone there:
    ``audio.antiphase_signs``; ffmpeg's own mix-down would cancel it), in the probe's ``layout``
    where it named one (:class:`FfmpegStream`); a mono one as two channels, its mono frames
    mixed back to their own level; one whose channels the probe did not tell, or without
    ``mix``, is mixed down by ffmpeg. Frames of a layout other than the probe's ``described``
    one (or mono) are an error (:func:`_check_one_layout`). A stream of the MP4 family's
    ``demuxer`` whose edit lists leave media out is decoded whole, its edit lists ignored (the
    encoder's priming then comes with it: 512 samples at 11,025 Hz of AAC)."""
    mixed = channels if channels and channels >= 2 and mix is not None else None
    keep = ["-ch_layout", layout] if mixed is not None and layout else ["-ac", str(mixed or 1)]
    gain = None
    if channels == 1 and mix is not None:
        # ffmpeg keeps a stream's first layout and mixes later frames down to it: a mono stream
        # that turns stereo (concatenated ADTS or MP3 frames) would cancel a copy in antiphase
        keep, mixed, gain = ["-ac", "2"], 2, _MONO_UPMIX_GAIN
    # verbose: each (re)configuration of the filters names the frames' layout, and a stream
    # that starts after ffmpeg listed the file's streams is a warning
    whole = demuxer == _MOV_DEMUXER and mp4.edits_leave_media_out(
        lambda at, count: os.pread(fd, count, at), os.fstat(fd).st_size
    )
    args = [
        *_input_args(ffmpeg, "level+verbose", whole), "-nostats", "-map",
        f"0:a:{stream_index}", "-vn", "-sn", "-dn", *keep, "-ar", str(analysis_hz), "-f", "f32le",
        "pipe:1",
    ]  # fmt: skip
    run = _run(args, fd, max_samples, None if mixed is None else (mix, mixed, gain))
    if run.new_audio_stream:
        raise AudioDecodeError(
            "cannot decode: an audio stream starts mid-file, after ffmpeg listed the file's "
            "streams (it would not be decoded)"
        )
    if mixed is not None:
        _check_one_layout(run.frame_layouts, "stereo" if gain is not None else described)
    if not run.cut and run.returncode != 0:
        raise AudioDecodeError(f"cannot decode ({run.message or 'ffmpeg failed'})")
    return run.output, run.cut


def _check_one_layout(layouts: list[str], kept: str | None) -> None:
    """Frames of one layout, ``kept`` (the one asked for; else the first frames'), or mono:
    ffmpeg mixes frames of any other layout down to it, and a copy in channels that mix
    cancels would be gone (a red team: stereo frames, then 5.1 ones with the copy in a front
    and a side channel)."""
    first = kept or next((layout for layout in layouts if layout != "mono"), None)
    if not all(layout == "mono" or _same_layout(layout, first) for layout in layouts):
        raise AudioDecodeError(
            f"cannot decode: its channel layout changes mid-stream ({', then '.join(layouts[:4])})"
            ": ffmpeg would mix the later channels down to the first ones"
        )


def _same_layout(a: str, b: str | None) -> bool:
    """Whether frames of layout ``a`` come through as ``b``'s channels, one by one: the same
    layout, or as many channels where either states no order (``6 channels``, as an ADTS
    stream's frames are described under its probe's ``5.1``)."""
    if b is None or a == b:
        return True
    if not (_UNORDERED.fullmatch(a) or _UNORDERED.fullmatch(b)):
        return False
    return _layout(a.encode())[0] == _layout(b.encode())[0] is not None


def _described_streams(lines: list[bytes], demuxer: str | None) -> dict[int, FfmpegStream]:
    """The audio streams ffmpeg's description of its input lists, by stream index, read by
    ``demuxer``. A line of a
    stream whose type cannot be told (a tag of the file broke it), or a stream described twice
    in two ways, is an error: the list would be the file's to write."""
    seen: dict[int, bytes] = {}
    streams: dict[int, FfmpegStream] = {}
    for line in lines:
        start = _STREAM_START.match(line)
        typed = _STREAM_TYPE.match(line, start.end()) if start else None
        if typed is None:
            raise AudioDecodeError("cannot decode: ffmpeg's list of its streams is garbled")
        index = int(start[1])
        if seen.setdefault(index, line) != line:
            raise AudioDecodeError(f"cannot decode: ffmpeg describes stream {index} twice")
        if typed[1] == b"Audio":
            streams[index] = replace(_stream(typed[2]), demuxer=demuxer)
    return streams


def _stream(description: bytes) -> FfmpegStream:
    """Sample rate, channel count and layout from ``aac (LC), 44100 Hz, stereo, fltp, 128
    kb/s``."""
    fields = [part.strip() for part in description.split(b",")]
    for position, text in enumerate(fields[:-1]):
        if match := re.fullmatch(rb"(\d+) Hz", text):
            described = fields[position + 1].decode("ascii", "replace")
            return FfmpegStream(int(match[1]), *_layout(fields[position + 1]), described)
    return FfmpegStream(None, None)


def _layout(text: bytes) -> tuple[int | None, str | None]:
    """The channel count of a layout as ffmpeg describes it, and the name that decodes its
    channels as they are: a named layout (``5.1(side)``, ``quad``) as it is, a list of channels
    (``4 channels (FL+FR+BL+BR)``) as that list; None for channels of no stated order (``4
    channels``: ffmpeg keeps their order for ``-ac``) or a layout not understood."""
    base = text.split(b"(")[0].strip()
    count = _LAYOUT_CHANNELS.get(base)
    if count is None and re.fullmatch(rb"\d+(\.\d+)+", base):  # 5.1, 7.1.4, 22.2
        count = sum(int(part) for part in base.split(b"."))
    if count is not None:
        return count, text.decode("ascii") if re.fullmatch(rb"[\w.]+(\([\w-]+\))?", text) else None
    if match := re.fullmatch(rb"(\d+) channels(?: \(([^()]*)\))?", text):
        names = (match[2] or b"").split(b"+")
        listed = len(names) == int(match[1]) and all(_CHANNEL_NAME.fullmatch(n) for n in names)
        return int(match[1]), match[2].decode("ascii") if listed else None
    return None, None


def _input_args(ffmpeg: str, log_level: str, whole_mp4: bool = False) -> list[str]:
    """Arguments that make ffmpeg read its standard input as a plain seekable local file (an
    MP4 whose edit lists it ignores, with ``whole_mp4``)."""
    # /proc/self/fd/0 opens the file anew (its own offset); /dev/fd/0 where there is no /proc
    url = "file:/proc/self/fd/0" if os.path.isdir("/proc/self/fd") else "file:/dev/fd/0"
    # an option of the mov demuxer alone: given for another container, ffmpeg fails
    whole = ["-ignore_editlist", "1"] if whole_mp4 else []
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-v", log_level, "-protocol_whitelist", "file",
        "-format_whitelist", ",".join(_FORMATS), *whole, "-i", url,
    ]  # fmt: skip


@dataclass
class _Run:
    """What one ffmpeg run gave."""

    returncode: int | None  # None when it was stopped
    output: np.ndarray  # float32 samples read from stdout
    stream_lines: list[bytes]  # stderr lines that describe an input stream
    message: str  # last stderr line, for errors
    input_opened: bool  # ffmpeg recognised the container
    input_format: str | None  # the demuxer that read it (``mov,mp4,m4a,3gp,3g2,mj2``)
    refused_format: str | None  # ffmpeg found a container it may not read
    cut: bool  # stopped because the output budget was full
    frame_layouts: list[str]  # the decoded frames' channel layouts, as they came (verbose)
    new_audio_stream: bool  # an audio stream appeared after the streams were listed


def _run(
    args: list[str], fd: int, max_samples: int, mix: tuple[Mix, int, float | None] | None = None
) -> _Run:
    """Run ffmpeg on the open file ``fd``: f32le samples from stdout, at most ``max_samples``
    (then ffmpeg is stopped; with ``mix`` = (mix, channels, gain), frames of that many channels
    mixed to as many mono samples, times the gain), and what its stderr says about the input."""
    os.lseek(fd, 0, os.SEEK_SET)  # where /dev/fd/0 shares our offset
    try:
        process = subprocess.Popen(
            args, stdin=fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True
        )
    except OSError as exc:
        raise AudioDecodeError(f"ffmpeg failed to start: {first_line(exc)}") from None
    with contextlib.suppress(OSError, ValueError):  # best effort: not every system allows it
        limit = (_ADDRESS_SPACE_BYTES, _ADDRESS_SPACE_BYTES)
        resource.prlimit(process.pid, resource.RLIMIT_AS, limit)
    try:
        sink = _Samples(max_samples) if mix is None else _MixedFrames(max_samples, *mix)
        cut, stderr = _collect(process, sink)
        output = sink.result()
        returncode = None if cut else process.wait()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()
    return _Run(
        returncode=returncode,
        output=output,
        stream_lines=stderr.stream_lines,
        message=stderr.last_line(),
        input_opened=stderr.input_opened,
        input_format=stderr.input_format,
        refused_format=stderr.refused_format,
        cut=cut,
        frame_layouts=stderr.frame_layouts,
        new_audio_stream=stderr.new_audio_stream,
    )


def _collect(process: subprocess.Popen, sink: _Samples | _MixedFrames) -> tuple[bool, _StderrLines]:
    """Read stdout into ``sink`` and stderr into lines, both as they come; kill ffmpeg when the
    sink is full and it has more to say. Returns whether it had (the budget cut the audio)."""
    cut, stderr = False, _StderrLines()
    deadline = time.monotonic() + _TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        while selector.get_map():
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise AudioDecodeError(f"ffmpeg ran for over {_TIMEOUT_S:g} s")
            for key, _ in selector.select(timeout=remaining_s):
                if key.fileobj is process.stderr:
                    chunk = os.read(key.fd, 1 << 16)
                    stderr.feed(chunk)
                    done = not chunk
                elif (room := sink.room()) is not None:
                    read = os.readv(key.fd, [room])
                    sink.received(read)
                    done = read == 0
                else:  # the budget is full: one byte more means the cap cut the audio
                    cut, done = bool(os.read(key.fd, 1)), True
                if done:
                    selector.unregister(key.fileobj)
                if cut:
                    process.kill()
    return cut, stderr


# mixes float32 (frames, channels) into a mono array of as many samples (audio._mix_to_mono)
Mix = Callable[[np.ndarray, np.ndarray], np.ndarray]
# frames mixed at a time: 1.49 s at 11,025 Hz, as libsndfile's 65,536 stereo frames at 44.1 kHz
_MIX_BLOCK_FRAMES = 1 << 14
# undoes ffmpeg's mono-to-stereo upmix, which puts a mono frame at -3 dB in each channel
_MONO_UPMIX_GAIN = float(np.float32(np.sqrt(2.0)))


class _Samples:
    """ffmpeg's f32le output as it is, into a budget of ``max_samples``."""

    def __init__(self, max_samples: int):
        self._output = np.empty(max_samples, np.float32)  # pages committed as written
        self._bytes = memoryview(self._output).cast("B")
        self._size = 0

    def room(self) -> memoryview | None:
        """Where the next read goes (None: the budget is full)."""
        if self._size == len(self._bytes):
            return None
        return self._bytes[self._size : self._size + (1 << 20)]

    def received(self, n_bytes: int) -> None:
        self._size += n_bytes

    def result(self) -> np.ndarray:
        return self._output[: self._size // 4]


class _MixedFrames:
    """ffmpeg's f32le output of ``channels`` channels, mixed to mono by ``mix`` (times ``gain``)
    a block of :data:`_MIX_BLOCK_FRAMES` at a time (fixed blocks: the mix of a block does not
    depend on how the pipe delivered it), into a budget of ``max_frames``: the memory of the
    mono result and one block."""

    def __init__(self, max_frames: int, mix: Mix, channels: int, gain: float | None = None):
        self._output = np.empty(max_frames, np.float32)
        self._gain = None if gain is None else np.float32(gain)
        self._block = np.empty((_MIX_BLOCK_FRAMES, channels), np.float32)
        self._bytes = memoryview(self._block).cast("B")
        self._frame_bytes = 4 * channels
        self._frames = 0  # mixed into the output
        self._staged = 0  # bytes of the block received
        self._mix = mix

    def _block_bytes(self) -> int:
        return self._frame_bytes * min(_MIX_BLOCK_FRAMES, len(self._output) - self._frames)

    def room(self) -> memoryview | None:
        end = self._block_bytes()
        return None if end == 0 else self._bytes[self._staged : end]

    def received(self, n_bytes: int) -> None:
        self._staged += n_bytes
        if self._staged == self._block_bytes():
            self._flush()

    def _flush(self) -> None:
        frames = self._staged // self._frame_bytes  # a last frame cut short is dropped
        if frames:
            end = self._frames + frames
            mixed = self._mix(self._block[:frames], self._output[self._frames : end])
            if self._gain is not None:
                mixed *= self._gain
            self._frames = end
        self._staged = 0

    def result(self) -> np.ndarray:
        self._flush()
        return self._output[: self._frames]


class _StderrLines:
    """What is kept of ffmpeg's stderr, bounded whatever it prints: the lines that describe input
    streams (a hostile file may print pages of metadata before them; too many of them are an
    error, not a list cut short) and the last line."""

    _MAX_LINE_BYTES = 4096
    _MAX_STREAM_LINES = 4096

    def __init__(self) -> None:
        self.stream_lines: list[bytes] = []
        self.input_opened = False
        self.input_format: str | None = None
        self.refused_format: str | None = None  # a container not in _FORMATS
        self.frame_layouts: list[str] = []  # each distinct one once, in order
        self.new_audio_stream = False
        self._partial = b""
        self._last = b""

    def feed(self, chunk: bytes) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = self._clipped(lines.pop())
        for line in lines:
            line = self._clipped(line.rstrip(b"\r"))
            leveled = _LEVELED.match(line)  # runs at "level+verbose": each line's level said
            if leveled is None and line.strip():
                self._last = line
            elif leveled is not None and leveled["level"] in (b"error", b"fatal", b"panic"):
                self._last = (leveled["context"] or b"") + leveled["message"]
            if leveled is not None and (layout := _FRAME_LAYOUT.match(line)):
                text = layout[1].decode("ascii", "replace")
                if text not in self.frame_layouts and len(self.frame_layouts) < 64:
                    self.frame_layouts.append(text)
            self.new_audio_stream = self.new_audio_stream or bool(_NEW_AUDIO_STREAM.match(line))
            self.input_opened = self.input_opened or line.startswith(b"Input #")
            if self.input_format is None and (opened := _INPUT_FORMAT.match(line)):
                self.input_format = opened[1].decode("ascii")
            if refused := _REFUSED_FORMAT.match(line):
                self.refused_format = refused[1].decode("ascii", "replace")
            if _STREAM_START.match(line):  # a tag's line is indented under its key: never one
                if len(self.stream_lines) == self._MAX_STREAM_LINES:
                    raise AudioDecodeError(
                        f"cannot decode: ffmpeg lists over {self._MAX_STREAM_LINES:,} streams"
                    )
                self.stream_lines.append(line)

    def _clipped(self, line: bytes) -> bytes:
        """A long line's start and end (a stream's index, its type and description), without
        what its tags put between them."""
        if len(line) <= 2 * self._MAX_LINE_BYTES:
            return line
        return line[: self._MAX_LINE_BYTES] + line[-self._MAX_LINE_BYTES :]

    def last_line(self) -> str:
        text = (self._partial.strip() or self._last).decode("utf-8", "replace").strip()
        text = re.sub(r"^\[[^\]]* @ 0x[0-9a-f]+\] ", "", text)  # [mov,mp4,... @ 0x55...]
        return re.sub(r"^file:/(proc/self|dev)/fd/0: ", "", text)[:200]
