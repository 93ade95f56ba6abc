"""Whether an MP4 / MOV file's edit lists leave media of its sound tracks out (pure: reads
through a callable).

ffmpeg plays only what a track's edit list (``moov/trak/edts/elst``) selects. An encoder writes
one edit that skips its priming (about 1,024-2,112 samples of AAC) and plays the rest; a red
team's edits played 5 s of a 45-s track, or started after the copy, so the copy was never
decoded. An edit list is *plain* when each sound track has at most one edit that plays media,
at the normal rate, starting within :data:`MAX_SKIP_S` of the media's start and playing it to
within :data:`MAX_SKIP_S` of its end (empty edits, which only delay the start, are allowed).
The media's end is where its samples' durations add up to (``stts``), or its header's stated
length if longer: a header stating the edit's own length hid the rest too.
Anything else, or a file whose boxes cannot be walked, leaves media out: the caller decodes it
whole (ffmpeg's ``-ignore_editlist``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

MAX_SKIP_S = 0.5  # an encoder's priming and padding: AAC's 2,112 samples are 48 ms at 44.1 kHz
_MAX_BOXES = 100_000  # boxes walked before the file counts as leaving media out
_MAX_TIME_ENTRIES = 1 << 21  # time-to-sample entries read (16 MiB) before it counts so too
_MAX_HEADER_BYTES = 64 << 20  # boxes besides the media data read whole to look for a movie box

Read = Callable[[int, int], bytes]  # (offset, count) -> bytes


class _Unwalkable(Exception):
    pass


def edits_leave_media_out(read: Read, size: int) -> bool:
    """Whether an edit list of a sound track of the MP4 file (``size`` bytes, read by
    ``read(offset, count)``) leaves some of its media undecoded (see the module docstring)."""
    try:
        walked = [0]
        movie = _the_movie(read, size, walked)
        if movie is None:
            return True
        scale = _movie_timescale(read, *movie, walked)
        for trak, start, end in _boxes(read, *movie, walked):
            if trak == b"trak" and not _plain_track(read, start, end, scale, walked):
                return True
    except (_Unwalkable, struct.error, IndexError, ZeroDivisionError):
        return True
    return False


def _the_movie(read: Read, size: int, walked: list[int]) -> tuple[int, int] | None:
    """The payload of the file's one movie box, or None unless it is once at the top level and
    nowhere else: ffmpeg also finds one inside other boxes (a ``udta``, ``edts`` or ``dinf``
    wrapping it hid its edit list from this check), and uses the first it finds."""
    top = list(_boxes(read, 0, size, walked))
    movies = [(start, end) for kind, start, end in top if kind == b"moov"]
    if len(movies) != 1:
        return None
    read_bytes = 0
    for kind, start, end in top:
        if kind == b"mdat":
            continue
        read_bytes += end - start
        if read_bytes > _MAX_HEADER_BYTES:
            return None
        if _holds_a_movie_box(read(start, end - start)):
            return None
    return movies[0]


def _holds_a_movie_box(payload: bytes) -> bool:
    """Whether ``moov`` stands in ``payload`` where a box's type would, after a size that fits
    (a title of "moovie night" does not)."""
    at = payload.find(b"moov", 4)
    while at >= 0:
        size = struct.unpack(">I", payload[at - 4 : at])[0]
        if size == 1 or 8 <= size <= len(payload) - (at - 4):
            return True
        at = payload.find(b"moov", at + 1)
    return False


def _boxes(read: Read, start: int, end: int, walked: list[int]) -> Iterator[tuple]:
    """``(type, payload start, payload end)`` of each box between ``start`` and ``end``."""
    at = start
    while at + 8 <= end:
        walked[0] += 1
        if walked[0] > _MAX_BOXES:
            raise _Unwalkable
        head = read(at, 16)
        size, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", head[8:16])[0], 16
        elif size == 0:  # to the end of its container
            size = end - at
        if size < header or at + size > end:
            raise _Unwalkable
        yield kind, at + header, at + size
        at += size


def _child(read: Read, start: int, end: int, kind: bytes, walked: list[int]) -> tuple | None:
    """The one box of ``kind`` between ``start`` and ``end``, or None. Two are unwalkable:
    ffmpeg reads the last of them, this the first (a second edit list, a second timescale)."""
    found = [(s, e) for k, s, e in _boxes(read, start, end, walked) if k == kind]
    if len(found) > 1:
        raise _Unwalkable
    return found[0] if found else None


def _movie_timescale(read: Read, start: int, end: int, walked: list[int]) -> int:
    found = _child(read, start, end, b"mvhd", walked)
    if found is None:
        raise _Unwalkable
    payload = read(found[0], 32)
    offset = 20 if payload[0] == 1 else 12  # version 1: 64-bit creation and modification times
    return struct.unpack(">I", payload[offset : offset + 4])[0]


def _sample_table_length(read: Read, start: int, end: int, walked: list[int]) -> int:
    """The media's length in its timescale as its time-to-sample table (``minf/stbl/stts``)
    adds it up: what ffmpeg indexes, whatever the media header states."""
    minf = _child(read, start, end, b"minf", walked)
    stbl = _child(read, *minf, b"stbl", walked) if minf is not None else None
    stts = _child(read, *stbl, b"stts", walked) if stbl is not None else None
    if stts is None:
        return 0
    count = struct.unpack(">I", read(stts[0] + 4, 4))[0]
    if count > _MAX_TIME_ENTRIES or stts[0] + 8 + 8 * count > stts[1]:
        raise _Unwalkable
    table = read(stts[0] + 8, 8 * count)
    return sum(n * delta for n, delta in struct.iter_unpack(">II", table))


def _plain_track(read: Read, start: int, end: int, movie_scale: int, walked: list[int]) -> bool:
    mdia = _child(read, start, end, b"mdia", walked)
    if mdia is None:
        return True
    handler = _child(read, *mdia, b"hdlr", walked)
    if handler is not None and read(handler[0] + 8, 4) == b"vide":
        return True  # ffmpeg takes a track of another handler for sound by its codec
    edts = _child(read, start, end, b"edts", walked)
    elst = _child(read, *edts, b"elst", walked) if edts is not None else None
    if elst is None:
        return True
    mdhd = _child(read, *mdia, b"mdhd", walked)
    if mdhd is None:
        raise _Unwalkable
    head = read(mdhd[0], 36)
    if head[0] == 1:
        media_scale, media_length = struct.unpack(">IQ", head[20:32])
    else:
        media_scale, media_length = struct.unpack(">II", head[12:20])
    # the header's length is the file's claim: its samples' durations may hold more
    media_length = max(media_length, _sample_table_length(read, *mdia, walked))
    version, count = read(elst[0], 1)[0], struct.unpack(">I", read(elst[0] + 4, 4))[0]
    entry = 20 if version == 1 else 12
    if count > 64 or elst[0] + 8 + count * entry > elst[1]:
        return False
    played = []
    for i in range(count):
        raw = read(elst[0] + 8 + i * entry, entry)
        duration, media_time, rate = struct.unpack(">QqI" if version == 1 else ">IiI", raw)
        if media_time == -1:  # an empty edit: a delay before the media starts
            continue
        played.append((duration / movie_scale, media_time / media_scale, rate))
    if not played:
        return True
    if len(played) > 1:
        return False
    duration_s, start_s, rate = played[0]
    if rate != 0x10000 or not 0 <= start_s <= MAX_SKIP_S:
        return False
    if media_length == 0:  # no length stated (a fragmented file): only an edit of no length
        return duration_s == 0
    return duration_s >= media_length / media_scale - start_s - MAX_SKIP_S
