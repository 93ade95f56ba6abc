"""Distributor metadata for works: read and validate a CSV before anything is added.

The CSV has a header row with at least a ``path`` column. Known columns are ``path``,
``work_id`` (the distributor's own identifier, kept as text), ``title``, ``artist``, ``isrc``,
``uploader`` and ``uploaded_at`` (ISO 8601 date or date-time); any other column is kept as is.
Paths may be absolute, relative to the CSV's folder or relative to the current directory.

>>> table = read_metadata("uploads.csv")                        # doctest: +SKIP
>>> matched, unused = metadata_for_paths(table, ["uploads/"])   # doctest: +SKIP
>>> catalog.add_paths(["uploads/"], metadata=matched)           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from .catalog import expand_paths
from .errors import MetadataError
from .results import shown_text

KNOWN_COLUMNS = ("path", "work_id", "title", "artist", "isrc", "uploader", "uploaded_at")
_ISRC = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}\d{7}$")
_DELIMITERS = (",", ";", "\t")


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 date or date-time as an aware datetime; naive values are taken as UTC.

    Raises ``ValueError`` for anything else (``05/01/2024``, ``2024-13-01``, ``yesterday``).
    """
    text = text.strip()
    if not text:
        raise ValueError("empty date")
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def read_metadata(csv_path: str | Path, cwd: str | Path | None = None) -> dict[str, dict[str, str]]:
    """Read and validate a metadata CSV.

    Parameters
    ----------
    csv_path
        The CSV file.
    cwd
        The folder that relative paths may also be relative to [default: the current directory].

    Returns
    -------
    dict
        ``{resolved absolute path of the file: {column: value}}`` with the non-empty cells of
        every column except ``path``; known column names are lower-case.

    Raises
    ------
    MetadataError
        Listing every invalid row with its line number (the header is line 1): no ``path``
        column, an empty path, a file that exists neither relative to the CSV nor to ``cwd``,
        an ambiguous path, the same file twice, a repeated ``work_id``, an ``uploaded_at`` that
        is not ISO 8601, an invalid ISRC, a row with more cells than the header.
    """
    csv_path = Path(csv_path)
    source = str(csv_path)
    text = _read_text(csv_path)
    base_dirs = [csv_path.resolve().parent, Path(cwd).resolve() if cwd else Path.cwd()]
    first_line = text.split("\n", 1)[0]
    delimiter = max(_DELIMITERS, key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise MetadataError(
            source, [(1, "empty file: expected a header with a 'path' column")]
        ) from None
    except csv.Error as exc:
        raise MetadataError(source, [(1, f"unreadable CSV header: {exc}")]) from None
    columns, problems = _columns(header)
    if problems:
        raise MetadataError(source, problems)

    table: dict[str, dict[str, str]] = {}
    first_seen: dict[str, int] = {}
    work_ids: dict[str, int] = {}
    problems = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append((reader.line_num, f"unreadable CSV: {exc}"))
            break
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
            problems.append((line, f"{len(cells)} cells but the header has {len(header)} columns"))
            continue
        row = {
            name: cells[i].strip()
            for i, name in enumerate(columns)
            if name is not None and i < len(cells) and cells[i].strip()
        }
        key, row_problems = _check_row(row, base_dirs)
        row.pop("path", None)
        if key is not None:
            if key in first_seen:
                row_problems.append(
                    f"{shown_text(key)} is already described on line {first_seen[key]}"
                )
            else:
                first_seen[key] = line
        if "work_id" in row:
            if row["work_id"] in work_ids:
                row_problems.append(
                    f"work_id {row['work_id']!r} repeats line {work_ids[row['work_id']]}"
                )
            else:
                work_ids[row["work_id"]] = line
        if row_problems:
            problems.extend((line, p) for p in row_problems)
            continue
        table[key] = row
    if problems:
        raise MetadataError(source, problems)
    return table


def metadata_for_paths(
    table: dict[str, dict[str, str]], paths: Iterable[str | Path]
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Match a metadata table to the files ``index add`` will see for ``paths``.

    Returns ``(metadata, unused)``: ``metadata`` is keyed the way
    :meth:`audiodup.Catalog.add_paths` looks files up (the path as walked), ``unused`` lists the
    table's files that are not among ``paths``.
    """
    matched: dict[str, dict[str, str]] = {}
    used: set[str] = set()
    for path, error in expand_paths(paths):
        if error is not None:
            continue
        try:
            key = str(Path(path).resolve())
        except (OSError, RuntimeError):
            continue
        if key in table:
            matched[str(path)] = table[key]
            used.add(key)
    return matched, sorted(k for k in table if k not in used)


def _read_text(csv_path: Path) -> str:
    try:
        raw = csv_path.read_bytes()
    except OSError as exc:
        raise MetadataError(str(csv_path), [(0, f"cannot read: {exc.strerror}")]) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise MetadataError(
            str(csv_path), [(line, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})")]
        ) from None


def _columns(header: list[str]) -> tuple[list[str | None], list[tuple[int, str]]]:
    """Column names (known ones lower-case, unnamed ones None) and header problems."""
    names: list[str | None] = []
    problems: list[tuple[int, str]] = []
    seen: set[str] = set()
    for cell in header:
        name = cell.strip()
        if name.lower() in KNOWN_COLUMNS:
            name = name.lower()
        if not name:
            names.append(None)  # a trailing delimiter; cells under it must stay empty
            continue
        if name in seen:
            problems.append((1, f"column {name!r} appears twice in the header"))
        seen.add(name)
        names.append(name)
    if "path" not in seen:
        found = ", ".join(repr(n) for n in names if n) or "none"
        problems.append((1, f"no 'path' column in the header (columns: {found})"))
    return names, problems


def _check_row(row: dict[str, str], base_dirs: list[Path]) -> tuple[str | None, list[str]]:
    """The resolved absolute path of the row's file (None if it names none) and the row's
    problems."""
    problems = []
    key = None
    if "path" not in row:
        problems.append("empty path")
    else:
        resolved = _resolve(row["path"], base_dirs)
        if isinstance(resolved, str):
            problems.append(resolved)
        else:
            key = str(resolved)
    if "uploaded_at" in row:
        try:
            parse_timestamp(row["uploaded_at"])
        except ValueError:
            problems.append(
                f"uploaded_at {row['uploaded_at']!r} is not an ISO 8601 date "
                "(e.g. 2024-03-01 or 2024-03-01T14:30:00Z)"
            )
    if "isrc" in row and not _ISRC.match(row["isrc"].replace("-", "").upper()):
        problems.append(f"isrc {row['isrc']!r} is not an ISRC (CC-XXX-YY-NNNNN)")
    return key, problems


def _resolve(text: str, base_dirs: list[Path]) -> Path | str:
    """The file ``text`` names, or a description of why it names none (or two). Paths in the
    description are shown escaped (:func:`shown_text`): each problem stays one line."""
    path = Path(text)
    with contextlib.suppress(RuntimeError):  # ~name of no known user stays a literal name
        path = path.expanduser()
    candidates = [path] if path.is_absolute() else [base / path for base in base_dirs]
    found: list[Path] = []
    unreadable = None  # why a candidate could not be looked at: a name too long, no access
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
            exists = resolved.exists()
        except RuntimeError:  # a symlink loop
            continue
        except OSError as exc:
            unreadable = exc.strerror or str(exc)
            continue
        if exists and resolved not in found:
            found.append(resolved)
    if not found and unreadable:
        return f"cannot read {shown_text(text)}: {unreadable}"
    if not found:
        where = "" if path.is_absolute() else " (looked next to the CSV and in the current folder)"
        return f"file not found: {shown_text(text)}{where}"
    if len(found) > 1:
        first, second = (shown_text(f) for f in found[:2])
        return f"ambiguous path {shown_text(text)}: both {first} and {second} exist"
    try:
        regular = found[0].is_file()
    except OSError as exc:
        return f"cannot read {shown_text(text)}: {exc.strerror or exc}"
    return found[0] if regular else f"not a regular file: {shown_text(text)}"
