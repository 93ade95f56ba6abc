"""Receiving an upload's bytes: a raw body (``audio/*`` or ``application/octet-stream``) or a
multipart form with one ``file`` part and text fields. The bytes are streamed into a file of
the server's own naming (never a name the client gave) while they are counted and hashed;
over the size cap the request stops with 413, another content type gets 415.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import socket
import stat
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from ..durable import fsync_folder
from ..results import shown_text
from .errors import ApiError

# the suffix a received file is kept under, from the declared content type (display only: the
# decoder reads the content, never the name)
SUFFIXES = {
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/vnd.wave": ".wav",
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/ogg": ".ogg",
    "application/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/aac": ".aac",
    "audio/aiff": ".aiff",
    "audio/x-aiff": ".aiff",
    "audio/webm": ".webm",
}
RAW_TYPES = ("application/octet-stream",)
_MAX_FIELD_BYTES = 16 * 1024
_CHUNK = 1 << 20


@dataclass
class Received:
    """An upload's bytes, kept in ``path`` (the server's temporary file) until it is recorded
    or dropped."""

    path: Path
    size: int
    sha256: str | None  # of the bytes as received (None: not asked for)
    suffix: str
    filename: str | None = None  # as the client gave it: shown, never used as a path
    fields: dict[str, str] = field(default_factory=dict)  # multipart text fields

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def accepted_audio_type(kind: str) -> bool:
    return kind.startswith("audio/") or kind in RAW_TYPES or kind in SUFFIXES


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the upload is larger than {limit:,} bytes")


def part_name(pid: int) -> str:
    """A received body's file name while it streams in: the receiving process and host in it,
    so a replacement worker removes what a killed one left (:func:`orphaned_part`)."""
    return f"{pid}@{_HOST}-{uuid.uuid4().hex}.part"


def orphaned_part(name: str, alive: Callable[[int], bool]) -> bool:
    """Whether the part file ``name`` belongs to a process of this host that is gone."""
    pid, at, rest = name.partition("@")
    if not (
        at
        and pid.isascii()
        and pid.isdigit()
        and rest.startswith(f"{_HOST}-")
        and name.endswith(".part")
    ):
        return False
    return not alive(int(pid))


_HOST = hashlib.sha256(socket.gethostname().encode("utf-8", "surrogateescape")).hexdigest()[:16]


async def receive(
    request: Request, incoming: Path, max_bytes: int, *, hash_bytes: bool = True
) -> Received:
    """Read the request body into a new file in ``incoming``; see the module docstring.
    ``hash_bytes``: also hash them (recording needs it; screening alone does not, and it is
    6 ms of the event loop per 10 MB)."""
    kind = media_type(request.headers.get("content-type"))
    if kind != "multipart/form-data" and not accepted_audio_type(kind):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the audio as the body (audio/* or application/octet-stream) or as the 'file' "
            "part of a multipart/form-data body",
        )
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > max_bytes + 64 * 1024
    ):
        raise _too_large(max_bytes)
    target = incoming / part_name(os.getpid())
    try:
        incoming.mkdir(parents=True, exist_ok=True)
        if kind == "multipart/form-data":
            received = await _receive_form(request, target, max_bytes, hash_bytes)
        else:
            size, digest = await _write(_limited(request.stream(), max_bytes), target, hash_bytes)
            received = Received(target, size, digest, SUFFIXES.get(kind, ".audio"))
    except OSError as exc:
        with contextlib.suppress(OSError):
            target.unlink(missing_ok=True)
        raise storage_error(exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            target.unlink(missing_ok=True)
        raise
    if received.size == 0:
        received.discard()
        raise ApiError(422, "empty", "the upload holds no bytes")
    return received


def text_pairs(raw: bytes, where: str) -> list[tuple[str, str]]:
    """The name-value pairs of a URL-encoded ``raw`` (a query string or a form body), decoded
    strictly: bytes that are no UTF-8 are refused, not replaced (two different byte strings
    must never become the same uploader)."""
    try:
        return urllib.parse.parse_qsl(
            raw.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="strict"
        )
    except UnicodeDecodeError:
        raise ApiError(422, "invalid_request", f"the {where} is not UTF-8 text") from None


def check_query(request: Request, allowed: Collection[str]) -> None:
    """Refuse a query that is no UTF-8 text, names a parameter twice or names one the route
    does not take (a misspelt ``uplaoder`` would otherwise drop the uploader unseen)."""
    seen: set[str] = set()
    for name, _ in text_pairs(request.scope.get("query_string", b""), "query"):
        if name not in allowed:
            raise ApiError(422, "invalid_request", f"unknown query parameter {shown_text(name)!r}")
        if name in seen:
            raise ApiError(422, "invalid_request", f"the query gives {name} twice")
        seen.add(name)


async def capped_body(request: Request, max_bytes: int, what: str) -> bytes:
    """The whole request body, refused with 413 as soon as it holds more than ``max_bytes``
    (declared or sent, chunked or not), and with 408 when it has not all come within the
    service's ``request_timeout_s`` (a body sent a byte at a time held a worker's connection
    for as long as its sender liked, before any key was checked: a red team)."""
    too_large = ApiError(413, "too_large", f"{what} is at most {max_bytes} bytes")
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > max_bytes
    ):
        raise too_large

    async def whole() -> bytes:
        chunks = _limited(request.stream(), max_bytes, too_large)
        return b"".join([chunk async for chunk in chunks])

    try:
        return await asyncio.wait_for(whole(), request.app.state.config.request_timeout_s)
    except TimeoutError:
        raise ApiError(408, "request_timeout", f"{what} was not received in time") from None


def storage_error(exc: OSError) -> ApiError:
    """A received file that cannot be written: 507 when the disk (or the quota, or the file
    size limit) is full, else 503; the client may retry either later."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return ApiError(507, "disk_full", "the upload cannot be stored: no space left")
    return ApiError(503, "storage_error", f"the upload cannot be stored: {exc.strerror or exc}")


async def _limited(
    stream: AsyncIterator[bytes], max_bytes: int, too_large: ApiError | None = None
) -> AsyncIterator[bytes]:
    """``stream``'s chunks, refused with ``too_large`` (default: the upload's 413) as soon as
    they hold more than ``max_bytes``."""
    total = 0
    try:
        async for chunk in stream:
            total += len(chunk)
            if total > max_bytes:
                raise too_large or _too_large(max_bytes)
            yield chunk
    except ClientDisconnect:
        raise ApiError(400, "disconnected", "the client went away mid-request") from None


async def _write(
    chunks: AsyncIterator[bytes], target: Path, hash_bytes: bool
) -> tuple[int, str | None]:
    digest = hashlib.sha256() if hash_bytes else None
    size = 0
    with open(target, "wb") as handle:
        async for chunk in chunks:
            handle.write(chunk)
            if digest is not None:
                digest.update(chunk)
            size += len(chunk)
    return size, None if digest is None else digest.hexdigest()


def sent_filename(disposition: bytes) -> bytes | None:
    """The ``filename`` parameter of a part's Content-Disposition as the client sent it (None:
    none): unquoted as python-multipart unquotes it (``\\\\`` and ``\\"``), but whole, where
    python-multipart keeps only what follows the last backslash of a name that looks like a
    Windows path."""
    text = disposition.decode("latin-1")
    params, start, quoted, escaped = [], 0, False, False
    for at, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            params.append(text[start:at])
            start = at + 1
    params.append(text[start:])
    found = None
    for param in params[1:]:  # the last one counts, as in python-multipart
        key, _, value = param.partition("=")
        if key.strip(" \t").lower() != "filename":
            continue
        value = value.strip(" \t")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace("\\\\", "\\").replace('\\"', '"')
        found = value.encode("latin-1")
    return found


class _TextFieldsParser(MultiPartParser):
    """Starlette's parser, but a field or a file name that is no UTF-8 text is refused (Starlette
    reads it as Latin-1, which would record other text than was sent), and a file name is kept
    as sent (:func:`sent_filename`)."""

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = self._current_part
        sent = None if part.file is None else sent_filename(part.content_disposition or b"")
        if sent is not None:
            try:
                part.file.filename = sent.decode("utf-8")
            except UnicodeDecodeError:
                raise MultiPartException("the file name is not UTF-8 text") from None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._current_part
        if part.file is None and len(part.data) + end - start > self.max_part_size:
            name = shown_text(part.field_name)
            raise MultiPartException(
                f"the field {name!r} is over {self.max_part_size // 1024} KB: a text field, since "
                "its part names no file (a file part needs filename= in its Content-Disposition)"
            )
        super().on_part_data(data, start, end)

    def on_part_end(self) -> None:
        part = getattr(self, "_current_part", None)
        if part is not None and part.file is None:
            try:
                bytes(part.data).decode("utf-8")
            except UnicodeDecodeError:
                name = shown_text(part.field_name)
                raise MultiPartException(f"the field {name!r} is not UTF-8 text") from None
            self._charset = "utf-8"  # read as checked, whatever charset the client declared
        super().on_part_end()


async def _parsed_form(parser: _TextFieldsParser) -> FormData:
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise ApiError(422, "bad_form", f"the multipart body is malformed: {exc.message}") from None


async def text_form(request: Request, body: bytes, max_fields: int) -> FormData:
    """The text fields of a multipart form ``body`` read whole (a review form), each refused
    with 422 when it is no UTF-8 text, as an upload's fields are."""

    async def whole() -> AsyncIterator[bytes]:
        yield body

    parser = _TextFieldsParser(request.headers, whole(), max_files=0, max_fields=max_fields)
    return await _parsed_form(parser)


async def _receive_form(
    request: Request, target: Path, max_bytes: int, hash_bytes: bool
) -> Received:
    parser = _TextFieldsParser(
        request.headers,
        _limited(request.stream(), max_bytes + 64 * 1024),
        max_files=1,
        max_fields=32,
        max_part_size=_MAX_FIELD_BYTES,
    )
    form = await _parsed_form(parser)
    try:
        fields: dict[str, str] = {}
        upload: UploadFile | None = None
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != "file":
                    raise ApiError(422, "bad_form", "the audio goes in a part named 'file'")
                upload = value
            elif name in fields:
                raise ApiError(422, "bad_form", f"the field {name!r} is given twice")
            else:
                fields[name] = value
        if upload is None:
            raise ApiError(422, "bad_form", "the multipart body has no 'file' part")
        kind = media_type(upload.content_type) or "application/octet-stream"
        if not accepted_audio_type(kind):
            raise ApiError(
                415, "unsupported_media_type", "the 'file' part must be audio/* or octet-stream"
            )

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await upload.read(_CHUNK):
                yield chunk

        size, digest = await _write(chunks(), target, hash_bytes)
        if size > max_bytes:
            raise _too_large(max_bytes)
        return Received(target, size, digest, SUFFIXES.get(kind, ".audio"), upload.filename, fields)
    finally:
        await form.close()


def kept_path(received: Received, folder: Path) -> Path:
    """Where :func:`keep` puts ``received``: the same bytes always land on the same name."""
    if received.sha256 is None:
        raise ValueError("keep() needs the received bytes' hash (receive with hash_bytes)")
    return folder / f"{received.sha256}{received.suffix}"


@dataclass(frozen=True)
class Kept:
    """A received file kept by :func:`keep`: where, which file this request put there, and
    whether none was there before (an upload of the same bytes may hold it)."""

    path: Path
    identity: tuple[int, int, int]  # device, inode and change time: a freed inode is reused
    created: bool


# keeping a file and dropping one take this lock, held for a rename or an unlink: several
# service processes keep the same bytes under one name
_KEEP_LOCK = ".keep.lock"


def keep(received: Received, folder: Path) -> Kept:
    """Move the received file to :func:`kept_path` and make it durable."""
    final = kept_path(received, folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(received.path, "rb") as handle:
            os.fsync(handle.fileno())
        with FileLock(str(folder / _KEEP_LOCK)):
            created = not final.exists()
            os.replace(received.path, final)
            identity = _identity(final)
        fsync_folder(folder)
    except OSError as exc:
        raise storage_error(exc) from None
    return Kept(final, identity, created)


# the names :func:`kept_path` gives: the bytes' SHA-256 and a suffix of :data:`SUFFIXES`
_KEPT_NAME = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,8}")


def sweep_unrecorded(folder: Path, recorded: Collection[str], older_than: float) -> int:
    """Remove the kept files no upload records: those of :func:`keep`'s names that are not in
    ``recorded`` (file names) and were last written or kept before ``older_than`` (a time
    stamp). A request whose recording failed leaves one when another request of the same
    bytes kept it too and failed as well (:func:`drop` lets neither remove it). Returns how
    many were removed."""
    try:
        names = [entry for entry in os.scandir(folder) if _KEPT_NAME.fullmatch(entry.name)]
    except OSError:
        return 0
    removed = 0
    for entry in names:
        if entry.name in recorded:
            continue
        with contextlib.suppress(OSError), FileLock(str(folder / _KEEP_LOCK)):
            found = entry.stat(follow_symlinks=False)
            # a request that keeps these bytes now renames its own file here: a new change time
            if stat.S_ISREG(found.st_mode) and max(found.st_mtime, found.st_ctime) < older_than:
                os.unlink(entry.path)
                removed += 1
    return removed


def _identity(path: Path) -> tuple[int, int, int]:
    found = path.stat()
    return found.st_dev, found.st_ino, found.st_ctime_ns


def drop(kept: Kept, folder: Path) -> None:
    """Remove a kept file whose upload was not recorded, when this request made it and it is
    still the file this request put there: a request of the same bytes that found it (and may
    record an upload of it) never loses it, nor one that put its own file there since."""
    if not kept.created:
        return
    with contextlib.suppress(OSError), FileLock(str(folder / _KEEP_LOCK)):
        if _identity(kept.path) == kept.identity:
            kept.path.unlink()
