"""Adding files to a catalog: walk the paths, fingerprint each file (in worker processes when
asked), and record each as an upload in the store, in input order and in batches. Content that
is already in the catalog is not stored again: the file becomes a new upload of it.

:class:`~audiodup.catalog.Catalog` delegates ``add_paths`` here; the store does the writing.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .audio import load_audio
from .errors import AudioDecodeError, AudiodupError
from .fingerprint import fingerprint_audio
from .results import AddResult, path_text
from .settings import DEFAULT_SETTINGS, Settings
from .store import OWN_DATABASE_FILE, CatalogStore, Committed, NewWork
from .workers import map_with_timeout

AUDIO_SUFFIXES = {
    ".wav",
    ".wave",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".au",
    ".w64",
    ".m4a",
    ".aac",
    ".mp4",
    ".wma",
    ".webm",
    ".mka",
    ".mkv",
    ".caf",
    # containers a copy was hidden from index add in while screen read it (AIFF-C and RF64 by
    # libsndfile, the others through ffmpeg). Not .ts: a folder's TypeScript would fail as audio
    ".aifc",
    ".rf64",
    ".mov",
    ".m4b",
    ".mp2",
    ".ac3",
    ".wv",
    ".tta",
    ".avi",
}


def expand_paths(
    paths: Iterable[str | Path], on_skip: Callable[[Path], None] | None = None
) -> Iterator[tuple[Path, str | None]]:
    """Files to add: explicit files as given, whatever their names, folders walked for audio
    files (a name ending in one of :data:`AUDIO_SUFFIXES`; no symlink following). Yields
    ``(path, error)``; ``error`` names what cannot be read, so one bad path (a name the system
    refuses as too long, a folder that cannot be entered or listed) fails alone and the batch
    goes on. ``on_skip`` is called with each file a folder walk leaves out for its name."""
    for raw in paths:
        path = Path(raw)
        try:
            is_dir = path.is_dir()
        except OSError as exc:
            yield path, _os_problem(exc)
            continue
        if is_dir:
            yield from _walk(path, on_skip)
            continue
        try:
            odd = path.exists() and not path.is_file()
        except OSError as exc:
            yield path, _os_problem(exc)
            continue
        # a missing explicit file is left to the decoder, which says "file not found"
        yield path, "not a regular file" if odd else None


def _walk(
    folder: Path, on_skip: Callable[[Path], None] | None
) -> Iterator[tuple[Path, str | None]]:
    """The audio files under ``folder``, and each folder that cannot be listed as an error;
    every other file goes to ``on_skip``."""
    unlisted: list[OSError] = []

    def failed() -> Iterator[tuple[Path, str]]:
        for exc in unlisted:
            yield (
                Path(exc.filename if exc.filename is not None else folder),
                (f"cannot read folder: {exc.strerror or exc}"),
            )
        unlisted.clear()

    for root, dirs, files in os.walk(folder, followlinks=False, onerror=unlisted.append):
        yield from failed()
        dirs.sort()
        for name in sorted(files):
            child = Path(root) / name
            if child.suffix.lower() in AUDIO_SUFFIXES:
                yield child, _file_problem(child)
            elif on_skip is not None:
                on_skip(child)
    yield from failed()


def _file_problem(path: Path) -> str | None:
    """Why a walked entry cannot be decoded, or None when it is a regular file."""
    try:
        if path.is_symlink() and not path.exists():
            return "broken or looping symbolic link"
        return None if path.is_file() else "not a regular file"
    except OSError as exc:
        return _os_problem(exc)


def _os_problem(exc: OSError) -> str:
    """One line for an OSError on a path (the path itself is named by the caller)."""
    return f"cannot read: {exc.strerror or exc}"


def source_path(path: str | Path) -> str:
    """The absolute, resolved path of a file as a catalog shows it (and matches metadata rows
    on): the same whatever the current folder or the symbolic links it was named through. The
    catalog records the path itself (:func:`file_key`), a name that is not UTF-8 by its bytes
    (:func:`audiodup.store._path_value`)."""
    return path_text(file_key(path))


def file_key(path: str | Path) -> str:
    """A file's absolute, resolved path exactly (a name that is not UTF-8 keeps its bytes, as
    ``os.fsdecode`` gives them): what a catalog records, and how ``index add`` matches metadata
    rows to files (two names shown alike by :func:`source_path` stay apart)."""
    return os.path.realpath(path)


def resolved_stat(path: str | Path) -> tuple[str, os.stat_result]:
    """:func:`file_key` and that file's own status: resolved first, so that a link retargeted
    meanwhile never pairs one file's size and times with another's path."""
    key = file_key(path)
    return key, os.stat(key)


def file_identity(stat: os.stat_result) -> tuple[int, ...]:
    """What tells one file's content from another's at one path without reading it: device,
    inode, size, modification and inode-change times (a file replaced by a rename is another
    inode; one written over in place has a newer ctime, which no one sets)."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def fingerprint_file(path: str | Path, settings: Settings = DEFAULT_SETTINGS) -> NewWork:
    """Decode and fingerprint one file for the catalog (runs in worker processes). The file
    must be the same before and after decoding (its resolved path and :func:`file_identity`):
    a file replaced or re-linked meanwhile would record one file's audio under another's path,
    size and time, which later runs trust unread. Raises ``AudioDecodeError`` then."""
    path = Path(path)
    try:
        key, stat = resolved_stat(path)
    except (OSError, ValueError):  # missing, unreadable, a NUL byte: the decoder's own words
        load_audio(path, settings)
        raise
    audio = load_audio(path, settings.mix_only())  # not screened here
    after, after_stat = resolved_stat(path)
    if after != key or file_identity(after_stat) != file_identity(stat):
        raise AudioDecodeError("the file changed while it was read; add it again")
    return NewWork(
        path=key,
        sha256=audio.sha256,
        duration_s=audio.duration_s,
        fingerprint=fingerprint_audio(audio, settings),
        title=audio.title,
        artist=audio.artist,
        file_size=stat.st_size,
        file_mtime=stat.st_mtime,
        truncated=audio.truncated,
        file_identity=file_identity(stat),
    )


# a file's times come from the kernel's coarse clock, which may trail the clock read here
CTIME_MARGIN = timedelta(seconds=1)


def _now() -> datetime:
    return datetime.now(UTC)


def _as_committed(item: NewWork) -> NewWork:
    """``item`` without its size and time when its file changed since it was decoded: the
    quick check of a later run (:func:`_unchanged`) then reads the file instead of taking the
    change for this upload. An unchanged one carries a time before this look (``checked_at``,
    :data:`CTIME_MARGIN` early) that the ctime of any later change passes."""
    checked_at = (_now() - CTIME_MARGIN).isoformat(timespec="microseconds")
    try:
        unchanged = file_identity(os.stat(item.path)) == item.file_identity
    except (OSError, ValueError):
        unchanged = False
    if unchanged:
        return replace(item, checked_at=checked_at)
    return replace(item, file_size=None, file_mtime=None)


def _fingerprint_job(args) -> NewWork | str:
    _, path, settings = args
    try:
        return fingerprint_file(path, settings)
    except AudiodupError as exc:
        return str(exc)
    except OSError as exc:  # e.g. the file's folder became unreadable after the walk
        return _os_problem(exc)
    except MemoryError:
        return "out of memory while decoding"
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a batch
        return f"unexpected error: {type(exc).__name__}: {str(exc)[:200]}"


def add_paths(
    store: CatalogStore,
    settings: Settings,
    paths: Iterable[str | Path],
    workers: int = 1,
    metadata: dict[str, dict] | None = None,
    on_result: Callable[[AddResult], None] | None = None,
    batch_size: int = 32,
    batch_seconds: float = 30.0,
    timeout_s: float | None = None,
    role: str = "upload",
    on_skip: Callable[[Path], None] | None = None,
) -> list[AddResult]:
    """Fingerprint files (folders recursively) and record each as an upload.

    ``metadata`` maps a file's absolute resolved path (:func:`file_key`, as
    :func:`audiodup.metadata.read_metadata` keys it) to its upload's fields; a ``role`` field
    there overrides ``role`` (``"reference"``: what a rights holder registers as their own).
    Results, and so upload and work ids, follow input order whatever ``workers`` is. Work is
    committed in batches, so an interrupted run keeps what it finished; re-running it finds
    the files already recorded (``present``). With ``timeout_s`` (or ``workers > 1``) each file
    is decoded in a worker process that is killed when it runs over ``timeout_s``.
    ``on_skip`` is called with each file a folder walk leaves out for its name (no audio
    extension; the catalog's own files, when its folder is among those walked, are left out
    unnamed): a file named in ``paths`` is always read.
    """
    metadata = metadata or {}
    results: list[AddResult] = []
    # results wait here in input order until the uploads among them are committed
    pending: list[AddResult | tuple[NewWork, str]] = []
    last_commit = time.monotonic()

    def flush() -> None:
        nonlocal pending, last_commit
        items = [_as_committed(entry[0]) for entry in pending if isinstance(entry, tuple)]
        outcome = iter(store.commit_batch(items) if items else ())
        for entry in pending:
            if isinstance(entry, tuple):
                item, shown = entry
                done = next(outcome)
                entry = AddResult(
                    shown,
                    done.status,
                    done.work_id,
                    duration_s=item.duration_s,
                    upload_id=done.upload_id,
                    truncated=item.truncated,
                )
            results.append(entry)
            if on_result is not None:
                on_result(entry)
        pending, last_commit = [], time.monotonic()

    # one slot per input, in order: a result known before decoding, or a file to decode
    slots: list[Path | AddResult] = []

    def skipped(path: Path) -> None:
        if on_skip is not None and not store.holds(path):  # no one uploaded the catalog's files
            on_skip(path)

    for path, error in expand_paths(paths, skipped):
        if error is None and store.is_own_database(path):
            error = OWN_DATABASE_FILE
        if error is not None:
            slots.append(AddResult(path_text(path), "failed", error=error))
            continue
        known = _unchanged(store, path)
        slots.append(
            path
            if known is None
            else AddResult(path_text(path), "present", known.work_id, upload_id=known.upload_id)
        )
    jobs = [(i, p, settings) for i, p in enumerate(slots) if isinstance(p, Path)]
    if workers > 1 or timeout_s is not None:
        outputs = (
            (item[0], value if status == "ok" else str(value))
            for item, status, value in map_with_timeout(_fingerprint_job, jobs, workers, timeout_s)
        )
    else:
        outputs = ((job[0], _fingerprint_job(job)) for job in jobs)
    decoded: dict[int, NewWork | str] = {}
    next_slot = 0
    for slot, output in itertools.chain([(None, None)], outputs):  # first: leading results
        if slot is not None:
            decoded[slot] = output
        while next_slot < len(slots) and (
            isinstance(slots[next_slot], AddResult) or next_slot in decoded
        ):
            entry = slots[next_slot]
            if isinstance(entry, Path):
                output = decoded.pop(next_slot)
                if isinstance(output, str):
                    entry = AddResult(path_text(entry), "failed", error=output)
                else:
                    extra = metadata.get(file_key(entry)) or {}
                    entry = (_for_upload(output, extra, role), path_text(entry))
            pending.append(entry)
            next_slot += 1
        if len(pending) >= batch_size or time.monotonic() - last_commit > batch_seconds:
            flush()
    flush()
    if not any(r.status == "added" for r in results):  # no commit made a merge due or ran one
        store.finish_interrupted()
    return results


def _unchanged(store: CatalogStore, path: Path) -> Committed | None:
    """The upload of this very file, found without reading it (:meth:`find_unchanged_file`)."""
    try:
        key, stat = resolved_stat(path)
    except (OSError, ValueError):  # ValueError: a NUL byte in the name (the decoder says so)
        return None
    return store.find_unchanged_file(key, stat)


def _for_upload(item: NewWork, extra: dict, role: str) -> NewWork:
    return replace(
        item,
        title=extra.get("title") or item.title,
        artist=extra.get("artist") or item.artist,
        metadata={**item.metadata, **extra},
        role=extra.get("role") or role,
    )
