"""Files replaced whole: written under a temporary name in their folder, flushed to disk and
renamed over the earlier file, so a crash, a kill or a full disk leaves the earlier file or the
new one, never a truncated mix."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def replace_file(
    final: Path,
    write: Callable[[BinaryIO], object],
    *,
    tmp: Path | None = None,
    mode: int = 0o666,
    sync_data: bool = True,
    sync_folder: bool = True,
) -> None:
    """Write ``final`` through ``write(handle)`` and rename it into place.

    ``tmp``: the temporary file, removed first if it exists (a fixed name: the caller's lock
    must keep other writers out); by default a new random name in ``final``'s folder, created
    exclusively (never a file a symlink of that name points to) and of fixed length (a long
    ``final`` name cannot make it too long). ``mode``: a new file's permissions, under the umask.
    ``sync_data`` fsyncs the file before the rename, ``sync_folder`` the folder after it. A
    failure removes the temporary file and raises."""
    path = tmp or final.with_name(f".audiodup-{secrets.token_hex(8)}.tmp")
    if tmp is not None:  # one a killed writer left: made anew, with ``mode``, not written through
        tmp.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if sync_data:
                os.fsync(handle.fileno())
        os.replace(path, final)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    if sync_folder:
        fsync_folder(final.parent)


def fsync_folder(path: Path) -> None:
    """Flush ``path``'s entries (a file renamed into it) to disk."""
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
