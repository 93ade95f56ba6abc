"""The Ogg container: its pages, chained links and multiplexed logical streams.

libsndfile reads only the first link of a chained Ogg file (``cat a.ogg b.ogg > c.ogg``) and one
stream of a link that holds several. The pages are walked and CRC-checked here, as libogg does,
so that each logical audio stream can be handed to libsndfile on its own, as a
:class:`FileView` of its pages: chains play in full without ffmpeg. Video, subtitle and
skeleton streams are skipped.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .errors import AudioDecodeError

_PAGE_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, ...
_BOS = 0x02
_MAX_PAGE_BYTES = 27 + 255 + 255 * 255
_READ_BYTES = 1 << 20
# pages walked in one Ogg file: a 20-minute Vorbis file has about 3,000, 512 Ki pages hold 36
# hours of it; walking them takes about 2 s
_MAX_PAGES = 1 << 19
# first bytes of the first packet of a logical stream
_NOT_AUDIO = (  # video, subtitles, metadata: skipped
    b"\x80theora", b"fishead\x00", b"fisbone\x00", b"\x80kate", b"BBCD\x00", b"CMML\x00",
    b"\x80daala", b"OVP80",
)  # fmt: skip
# packets whose durations are summed: 20 minutes of 2.5-ms Opus frames are 480,000 (a stream of
# more, stating a shorter end, is not read on: infinity); about 1 CPU-s of the walk in Python
MAX_CHECKED_PACKETS = 1_000_000
_MAX_HEADER_PACKET_BYTES = 1 << 20  # a Vorbis setup header (its codebooks) is a few KiB
OPUS_SAMPLE_RATE_HZ = 48_000  # of its granule positions and packet durations, whatever it plays at
_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


class OggPageLimitError(AudioDecodeError):
    """The file holds more pages than the walk in Python takes on (a decoder in C may read it)."""


@dataclass
class OggStream:
    """One logical stream of one link: its pages, as byte ranges of the file."""

    serial: int
    head: bytes  # start of its first packet: names the codec
    runs: array = field(default_factory=lambda: array("q"))  # start, end, start, end, ...

    def add_page(self, start: int, end: int) -> None:
        if self.runs and self.runs[-1] == start:
            self.runs[-1] = end  # pages in a row make one range
        else:
            self.runs.extend((start, end))


def audio_streams(fd: int) -> list[OggStream] | None:
    """The audio streams of the Ogg file open as ``fd``, in play order, or None when it is one
    link holding one stream (or holds no valid page): a decoder reads such a file as it is.

    Raises
    ------
    OggPageLimitError
        More than ``_MAX_PAGES`` pages.
    OSError
        The file cannot be read.
    """
    links = _links(fd)
    if len(links) <= 1 and all(len(link) == 1 for link in links):
        return None
    return [stream for link in links for stream in link if not stream.head.startswith(_NOT_AUDIO)]


def _links(fd: int) -> list[list[OggStream]]:
    """The links of an Ogg file, each a list of its logical streams in the order they begin.

    A link starts with its streams' BOS pages; a BOS page after other pages starts the next link
    (how libvorbisfile and players find chain boundaries).
    """
    links: list[list[OggStream]] = []
    current: dict[int, OggStream] = {}
    data_seen = False
    for start, end, flags, serial, head in _pages(fd, os.fstat(fd).st_size):
        if flags & _BOS:
            if not links or data_seen or serial in current:
                current, data_seen = {}, False
                links.append([])
            current[serial] = OggStream(serial, head)
            links[-1].append(current[serial])
        elif serial not in current:
            continue  # a page of no stream begun in this link: players skip it too
        else:
            data_seen = True
        current[serial].add_page(start, end)
    return links


def _pages(fd: int, size: int) -> Iterator[tuple[int, int, int, int, bytes]]:
    """Yield ``(start, end, flags, serial, body_start)`` of each valid Ogg page."""
    for offset, page in _valid_pages(lambda at, n: os.pread(fd, n, at), size):
        _, _, flags, _, serial, _, _, n_segments = _PAGE_HEADER.unpack_from(page)
        body = 27 + n_segments
        yield offset, offset + len(page), flags, serial, bytes(page[body : body + 8])


def _valid_pages(read: Callable[[int, int], bytes], size: int) -> Iterator[tuple[int, memoryview]]:
    """Yield ``(start, page)`` of each valid Ogg page of the ``size`` bytes ``read(offset, n)``
    reads.

    As libogg does: a page counts only when its CRC matches; after anything else the walk
    resynchronises at the next ``OggS``, so bytes a player skips are skipped here too.
    """
    buffer, buffer_start, offset, pages = b"", 0, 0, 0
    while offset < size:
        if offset + _MAX_PAGE_BYTES > buffer_start + len(buffer) < size:
            buffer, buffer_start = read(offset, _READ_BYTES), offset
        at = offset - buffer_start
        length = _page_length(buffer, at)
        if length is None:
            found = buffer.find(b"OggS", at + 1)
            if found < 0:
                if buffer_start + len(buffer) >= size:
                    return
                found = max(at + 1, len(buffer) - 3)
            offset = buffer_start + found
            continue
        pages += 1
        if pages > _MAX_PAGES:  # walked in Python: ffmpeg, in C, may take the file
            raise OggPageLimitError(f"more than {_MAX_PAGES} Ogg pages")
        yield offset, memoryview(buffer)[at : at + length]
        offset += length


def seconds_past_end(read: Callable[[int, int], bytes], size: int) -> float:
    """Seconds of audio that the packets of the one Opus or Vorbis stream ``read`` reads (a
    file, or a :class:`FileView` of one stream) hold past its last granule position; 0 for
    another codec, or a Vorbis setup header whose modes cannot be found; infinity past
    ``MAX_CHECKED_PACKETS`` packets.

    The last granule position is where the stream says it ends, and libsndfile stops there,
    while ffmpeg plays every packet. An Opus packet's duration is in its first byte (RFC 6716,
    3.1); a Vorbis packet's follows from its mode's block size and the one before it. An honest
    encoder ends at most one packet before its packets do (end trimming); a page of up to 255
    long packets before a last page stating an earlier end hid up to 30 s of Opus."""
    packets = _packets(read, size)
    head = next(packets, None)
    if head is None or not head[0].startswith((b"OpusHead", b"\x01vorbis")):
        return 0.0
    if head[0].startswith(b"OpusHead"):
        rate, durations = OPUS_SAMPLE_RATE_HZ, _opus_durations(packets)
    else:
        rate = struct.unpack_from("<I", head[0], 12)[0] or 1
        durations = _vorbis_durations(head[0], packets)
    samples, last_granule = 0, head[1]
    for count, (duration, granule) in enumerate(durations):
        if count >= MAX_CHECKED_PACKETS:
            return math.inf
        samples += duration
        if granule >= 0:
            last_granule = granule
    return max(samples - last_granule, 0) / rate  # an Opus pre-skip is in both


def _packets(read: Callable[[int, int], bytes], size: int) -> Iterator[tuple[bytes, int]]:
    """``(packet, granule)`` of each packet of one logical stream, the three header packets up
    to 1 MiB and the others' first 2 bytes (their durations are there); ``granule``: the
    position of the page it ends on when it is the last to end there, else -1."""
    parts: list[bytes] = []
    kept, packets = 0, 0
    for _, page in _valid_pages(read, size):
        granule, n_segments = struct.unpack_from("<q", page, 6)[0], page[26]
        lacing, body = page[27 : 27 + n_segments], 27 + n_segments
        ends = [i for i, value in enumerate(lacing) if value < 255]
        for i, value in enumerate(lacing):
            keep = (_MAX_HEADER_PACKET_BYTES if packets < 3 else 2) - kept
            if keep > 0:  # parts joined once: a packet over many pages costs no copies
                parts.append(bytes(page[body : body + min(value, keep)]))
                kept += min(value, keep)
            body += value
            if value < 255:
                yield b"".join(parts), granule if i == ends[-1] else -1
                parts, kept, packets = [], 0, packets + 1


def _opus_durations(packets: Iterator[tuple[bytes, int]]) -> Iterator[tuple[int, int]]:
    next(packets, None)  # OpusTags
    for packet, granule in packets:
        yield _opus_packet_samples(packet), granule


def _vorbis_durations(
    identification: bytes, packets: Iterator[tuple[bytes, int]]
) -> Iterator[tuple[int, int]]:
    """Each audio packet's samples: a quarter of its block and a quarter of the one before."""
    sizes = (1 << (identification[28] & 0x0F), 1 << (identification[28] >> 4))
    next(packets, None)  # comments
    setup = next(packets, (b"", -1))[0]
    long_blocks = _vorbis_mode_blockflags(setup)
    if not long_blocks:
        return
    mode_bits = (len(long_blocks) - 1).bit_length()
    previous = None
    for packet, granule in packets:
        if not packet or packet[0] & 1:  # not an audio packet
            yield 0, granule
            continue
        mode = (packet[0] >> 1) & ((1 << mode_bits) - 1)
        block = sizes[long_blocks[mode]] if mode < len(long_blocks) else sizes[0]
        yield (0 if previous is None else previous // 4 + block // 4), granule
        previous = block


def _vorbis_mode_blockflags(setup: bytes) -> list[int]:
    """The block flag of each mode of a Vorbis setup header, read back from its end (the modes
    come last, before the framing bit: each a block flag, a zero window type and transform
    type, a mapping; their count minus one in 6 bits before them), as ffmpeg's parser and
    liboggz find them; [] when nothing there fits."""
    bits = int.from_bytes(setup, "little")  # Vorbis packs bits from the least significant
    framing = bits.bit_length() - 1
    if framing < 0:
        return []
    found, modes = 0, []
    for count in range(1, 65):
        start = framing - 41 * count
        if start - 6 < 56:  # the 7-byte packet header and nothing before it
            break
        entry = bits >> start
        if (entry >> 1) & 0xFFFFFFFF or (entry >> 33) & 0xFF > 63:  # window, transform, mapping
            break
        modes.insert(0, entry & 1)
        if (bits >> (start - 6)) & 0x3F == count - 1:
            found = count
    return modes[len(modes) - found :] if found else []


def _opus_packet_samples(packet: bytes) -> int:
    """48 kHz samples of an Opus packet from its TOC byte (0 for an empty packet)."""
    if not packet:
        return 0
    config, code = packet[0] >> 3, packet[0] & 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        frame = (480, 960, 1920, 2880)[config % 4]
    elif config < 16:  # hybrid: 10, 20 ms
        frame = (480, 960)[config % 2]
    else:  # CELT: 2.5, 5, 10, 20 ms
        frame = (120, 240, 480, 960)[config % 4]
    frames = 1 if code == 0 else 2 if code < 3 else (packet[1] & 0x3F if len(packet) > 1 else 0)
    return frame * frames


def _page_length(buffer: bytes, at: int) -> int | None:
    """Length of the valid page at ``buffer[at:]``, None if there is none (or it is cut)."""
    if len(buffer) - at < 27 or buffer[at : at + 5] != b"OggS\x00":
        return None
    n_segments = buffer[at + 26]
    length = 27 + n_segments + sum(buffer[at + 27 : at + 27 + n_segments])
    if at + length > len(buffer):
        return None
    crc = _crc_field(buffer[at : at + 22], buffer[at + 26 : at + length])
    return length if crc == buffer[at + 22 : at + 26] else None


def _page_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, initial 0) of a page whose CRC field
    is zeroed."""
    return int.from_bytes(_crc_field(page[:22], page[26:]), "little")


def _crc_field(head: bytes, body: bytes) -> bytes:
    """The 4 CRC bytes of the page ``head`` + CRC field + ``body``, as stored (little-endian).

    zlib's CRC-32 is the same polynomial, reflected: on bit-reversed bytes, with its initial and
    final inversion undone, it gives the Ogg CRC bit-reversed, at C speed.
    """
    crc = zlib.crc32(head.translate(_BIT_REVERSED), 0xFFFFFFFF)
    crc = zlib.crc32(b"\x00\x00\x00\x00", crc)  # the CRC field counts as zeros
    crc = zlib.crc32(body.translate(_BIT_REVERSED), crc) ^ 0xFFFFFFFF
    return crc.to_bytes(4, "big").translate(_BIT_REVERSED)  # reversing 32 bits, bytewise


class FileView(io.RawIOBase):
    """Read-only, seekable view of byte ranges of an open file, seen as one file.

    ``runs`` holds ``start, end, start, end, ...`` byte offsets, as :attr:`OggStream.runs`.
    """

    def __init__(self, fd: int, runs: array):
        super().__init__()
        bounds = np.frombuffer(runs, dtype=np.int64).reshape(-1, 2)
        self._fd = fd
        self._starts = bounds[:, 0]
        lengths = bounds[:, 1] - bounds[:, 0]
        self._offsets = np.concatenate([[0], np.cumsum(lengths)])  # of each range in the view
        self._size = int(self._offsets[-1])
        self._position = 0
        self.error: OSError | None = None  # libsndfile sees a failed read as the end of file

    def read_at(self, offset: int, count: int) -> bytes:
        """Up to ``count`` bytes of the view from ``offset``; the position moves on."""
        self.seek(offset)
        return self.read(count) or b""

    def reopened(self) -> FileView:
        self.seek(0)
        if self.error is not None:
            raise self.error
        return self

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    @property
    def size(self) -> int:
        return self._size

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        view, done = memoryview(buffer).cast("B"), 0
        while done < len(view) and self._position < self._size:
            index = int(np.searchsorted(self._offsets, self._position, side="right")) - 1
            inside = self._position - int(self._offsets[index])
            count = min(len(view) - done, int(self._offsets[index + 1]) - self._position)
            try:
                data = os.pread(self._fd, count, int(self._starts[index]) + inside)
            except OSError as exc:
                self.error = exc
                break
            if not data:
                break
            view[done : done + len(data)] = data
            done += len(data)
            self._position += len(data)
        return done
