"""Distributor metadata for uploads: read and validate a CSV before anything is written.

The CSV has a header row. Known columns are ``path``, ``external_id`` (the distributor's own
identifier, kept as text; ``work_id`` is read as its older name), ``title``, ``artist``,
``isrc``, ``upc``, ``uploader``, ``uploaded_at`` (ISO 8601 date or date-time) and ``role``
(``reference``: what a rights holder registers as their own, or ``upload``); any other column
is kept as is. Paths may be absolute, relative to the CSV's folder or relative to the current
directory, and are matched as resolved absolute paths, never by base name.

For ``index add`` (:func:`read_metadata`) every row names a file by ``path``. For ``index
update`` (:func:`read_metadata_update`) a row names an upload already in the catalog by
``upload_id``, ``external_id`` or ``path``; an unknown or ambiguous key is an error for that
line, and nothing is applied unless every line is valid.

>>> table = read_metadata("uploads.csv")                        # doctest: +SKIP
>>> matched, unused = metadata_for_paths(table, ["uploads/"])   # doctest: +SKIP
>>> catalog.add_paths(["uploads/"], metadata=matched)           # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .errors import MetadataError
from .ingest import expand_paths, file_key, source_path
from .results import UploadInfo, listed_text

KNOWN_COLUMNS = (
    "path",
    "upload_id",
    "external_id",
    "title",
    "artist",
    "isrc",
    "upc",
    "uploader",
    "uploaded_at",
    "role",
)
_OLD_NAMES = {"work_id": "external_id"}  # the distributor's id had this name before the ledger
ROLES = ("reference", "upload")
_UPC = re.compile(r"^\d{12,14}$")
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


# a clock a day ahead of this machine's (time zones, a skewed clock) is still believed
FUTURE_DATE_SLACK = timedelta(days=1)


def upload_date_problem(text: str, now: datetime | None = None) -> str | None:
    """Why ``text`` cannot be an upload's ``uploaded_at``, or None: it must be an ISO 8601 date
    or date-time, and not later than now (a day's slack): a date still to come cannot be the
    first upload, and would decide who the original is (the earliest dated upload)."""
    try:
        when = parse_timestamp(text)
    except (ValueError, OverflowError):
        return f"{text!r} is not an ISO 8601 date (e.g. 2024-03-01 or 2024-03-01T14:30:00Z)"
    if is_future(when, now):
        return f"{text!r} is in the future"
    return None


def is_future(when: datetime, now: datetime | None = None) -> bool:
    """Whether ``when`` is later than ``now`` (default: the current time) by more than a day."""
    return when > (now or datetime.now(UTC)) + FUTURE_DATE_SLACK


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
        an ambiguous path, the same file twice, a repeated ``external_id``, an ``uploaded_at``
        that is not ISO 8601, an invalid ISRC or UPC, an unknown role, a row with more cells
        than the header.
    """
    table: dict[str, dict[str, str]] = {}
    first_seen: dict[str, int] = {}
    external_ids: dict[str, int] = {}
    problems: list[tuple[int, str]] = []
    for line, row, base_dirs in _rows(csv_path, cwd, required="path"):
        if isinstance(row, str):
            problems.append((line, row))
            continue
        if "upload_id" in row:
            problems.append((line, "upload_id belongs in 'index update', not in 'index add'"))
            continue
        key, row_problems = _check_row(row, base_dirs)
        row.pop("path", None)
        if key is not None:
            if key in first_seen:
                row_problems.append(
                    f"{listed_text(key)} is already described on line {first_seen[key]}"
                )
            else:
                first_seen[key] = line
        external = row.get("external_id")
        if external is not None:
            if external in external_ids:
                row_problems.append(
                    f"external_id {external!r} repeats line {external_ids[external]}"
                )
            else:
                external_ids[external] = line
        if row_problems:
            problems.extend((line, p) for p in row_problems)
            continue
        table[key] = row
    if problems:
        raise MetadataError(str(csv_path), sorted(problems))
    return table


def read_metadata_update(
    csv_path: str | Path, uploads: list[UploadInfo], cwd: str | Path | None = None
) -> list[tuple[int, dict[str, str]]]:
    """Read an ``index update`` CSV against the catalog's ``uploads``: ``[(upload id, fields to
    change)]`` in file order. A row names its upload by ``upload_id``, else ``external_id``,
    else ``path`` (the file's resolved absolute path, as recorded); empty cells change nothing.

    Raises
    ------
    MetadataError
        Every invalid line: no key, an unknown or ambiguous key, an upload named twice, an
        invalid value (as for :func:`read_metadata`).
    """
    by_id = {u.upload_id: u for u in uploads}
    by_external: dict[str, list[int]] = {}
    by_path: dict[str, list[int]] = {}
    for u in uploads:
        if u.external_id:
            by_external.setdefault(u.external_id, []).append(u.upload_id)
        by_path.setdefault(u.source_path, []).append(u.upload_id)
    changes: list[tuple[int, dict[str, str]]] = []
    first_seen: dict[int, int] = {}
    problems: list[tuple[int, str]] = []
    for line, row, base_dirs in _rows(csv_path, cwd, required=None, outcome="changed"):
        if isinstance(row, str):
            problems.append((line, row))
            continue
        key_problems: list[str] = []
        if "upload_id" in row:
            text = row.pop("upload_id")
            found = [int(text)] if text.isascii() and text.isdigit() and int(text) in by_id else []
            what = f"upload_id {text!r}"
        elif "external_id" in row:
            found = by_external.get(row["external_id"], [])
            what = f"external_id {row['external_id']!r}"
            row.pop("external_id")  # the key itself does not change
        elif "path" in row:
            resolved = _resolve(row["path"], base_dirs)
            key = row["path"] if isinstance(resolved, str) else source_path(resolved)
            found = by_path.get(key, []) or by_path.get(row["path"], [])
            what = f"path {listed_text(row['path'])}"
        else:
            found, what = [], ""
            key_problems.append("no upload_id, external_id or path to name the upload")
        row.pop("path", None)
        if what and not found:
            key_problems.append(f"{what} names no upload in the catalog")
        elif len(found) > 1:
            ids = ", ".join(str(i) for i in found[:5])
            key_problems.append(f"{what} is ambiguous: uploads {ids} (use upload_id)")
        field_problems = _value_problems(row)
        if key_problems or field_problems:
            problems.extend((line, p) for p in key_problems + field_problems)
            continue
        upload_id = found[0]
        if upload_id in first_seen:
            problems.append(
                (line, f"upload {upload_id} is already changed on line {first_seen[upload_id]}")
            )  # noqa: E501
            continue
        first_seen[upload_id] = line
        if row:
            changes.append((upload_id, row))
    if problems:
        raise MetadataError(str(csv_path), sorted(problems), outcome="changed")
    return changes


def _rows(
    csv_path: str | Path, cwd: str | Path | None, required: str | None, outcome: str = "added"
):
    """``(line number, {column: non-empty cell} or a problem, base folders for paths)`` per
    data row, known column names lower-case (older names renamed); raises
    :class:`MetadataError` for the header's problems (nothing was ``outcome``)."""
    csv_path = Path(csv_path)
    source = str(csv_path)
    text = _read_text(csv_path, outcome)
    base_dirs = [csv_path.resolve().parent, Path(cwd).resolve() if cwd else Path.cwd()]
    first_line = text.split("\n", 1)[0]
    delimiter = max(_DELIMITERS, key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise MetadataError(
            source, [(1, "empty file: expected a header with a 'path' column")], outcome
        ) from None
    except csv.Error as exc:
        raise MetadataError(source, [(1, f"unreadable CSV header: {exc}")], outcome) from None
    columns, problems = _columns(header, required)
    if problems:
        raise MetadataError(source, problems, outcome)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield reader.line_num, f"unreadable CSV: {exc}", base_dirs
            break
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
            yield line, f"{len(cells)} cells but the header has {len(header)} columns", base_dirs
            continue
        yield (
            line,
            {
                name: _cell(name, cells[i])
                for i, name in enumerate(columns)
                if name is not None and i < len(cells) and cells[i].strip()
            },
            base_dirs,
        )


# cells of a format, read with the spaces around them dropped; every other cell (a path, a
# title, an uploader, an id, any column not known) is kept as written: an uploader chooses
# file names and titles, and "hit.ogg " is another file than "hit.ogg"
_FORMATTED_COLUMNS = frozenset({"upload_id", "uploaded_at", "isrc", "upc", "role"})


def _cell(column: str, text: str) -> str:
    return text.strip() if column in _FORMATTED_COLUMNS else text


def metadata_for_paths(
    table: dict[str, dict[str, str]], paths: Iterable[str | Path]
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Match a metadata table to the files ``index add`` will see for ``paths``.

    Returns ``(metadata, unused)``: ``metadata`` holds the table's rows of those files, keyed
    the way :meth:`audiodup.Catalog.add_paths` looks them up (the resolved absolute path,
    :func:`audiodup.ingest.file_key`); ``unused`` lists the table's files that are not among
    ``paths``.
    """
    matched: dict[str, dict[str, str]] = {}
    for path, error in expand_paths(paths):
        if error is not None:
            continue
        try:
            key = file_key(path)
        except (OSError, ValueError):
            continue
        if key in table:
            matched[key] = table[key]
    return matched, sorted(k for k in table if k not in matched)


def _read_text(csv_path: Path, outcome: str = "added") -> str:
    try:
        raw = csv_path.read_bytes()
    except OSError as exc:
        raise MetadataError(str(csv_path), [(0, f"cannot read: {exc.strerror}")], outcome) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise MetadataError(
            str(csv_path), [(line, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})")], outcome
        ) from None


def _columns(
    header: list[str], required: str | None
) -> tuple[list[str | None], list[tuple[int, str]]]:
    """Column names (known ones lower-case and older names renamed, unnamed ones None) and
    header problems; ``required`` names a column that must be there."""
    names: list[str | None] = []
    problems: list[tuple[int, str]] = []
    seen: set[str] = set()
    for cell in header:
        name = cell.strip()
        if name.lower() in KNOWN_COLUMNS or name.lower() in _OLD_NAMES:
            name = _OLD_NAMES.get(name.lower(), name.lower())
        if not name:
            names.append(None)  # a trailing delimiter; cells under it must stay empty
            continue
        if name in seen:
            problems.append((1, f"column {name!r} appears twice in the header"))
        seen.add(name)
        names.append(name)
    found = ", ".join(repr(n) for n in names if n) or "none"
    if required is not None and required not in seen:
        problems.append((1, f"no {required!r} column in the header (columns: {found})"))
    if required is None and not seen & {"upload_id", "external_id", "path"}:
        problems.append(
            (1, f"no 'upload_id', 'external_id' or 'path' column in the header (columns: {found})")
        )
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
            key = file_key(resolved)
    return key, problems + _value_problems(row)


def _value_problems(row: dict[str, str]) -> list[str]:
    """What is wrong with a row's values (dates, ISRC, UPC, role)."""
    problems = []
    if "uploaded_at" in row:
        problem = upload_date_problem(row["uploaded_at"])
        if problem:
            problems.append(f"uploaded_at {problem}")
    if "isrc" in row and not _ISRC.match(row["isrc"].replace("-", "").upper()):
        problems.append(f"isrc {row['isrc']!r} is not an ISRC (CC-XXX-YY-NNNNN)")
    if "upc" in row and not _UPC.match(row["upc"]):
        problems.append(f"upc {row['upc']!r} is not a UPC/EAN (12 to 14 digits)")
    if "role" in row:
        row["role"] = row["role"].lower()
        if row["role"] not in ROLES:
            problems.append(f"role {row['role']!r} is not one of: {', '.join(ROLES)}")
    return problems


def _resolve(text: str, base_dirs: list[Path]) -> Path | str:
    """The file ``text`` names, or a description of why it names none (or two). Paths in the
    description are :func:`listed_text` (a path that holds a space is quoted, so its spaces
    show); it is escaped where it is shown, once."""
    path = Path(text)  # literal: "~/x" names x in a folder "~", never in a home folder
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
        return f"cannot read {listed_text(text)}: {unreadable}"
    if not found:
        where = "" if path.is_absolute() else " (looked next to the CSV and in the current folder)"
        if text != text.strip() and not isinstance(_resolve(text.strip(), base_dirs), str):
            where += f"; {listed_text(text.strip())} exists, but a path is read as written"
        return f"file not found: {listed_text(text)}{where}"
    if len(found) > 1:
        first, second = (listed_text(str(f)) for f in found[:2])
        return f"ambiguous path {listed_text(text)}: both {first} and {second} exist"
    try:
        regular = found[0].is_file()
    except OSError as exc:
        return f"cannot read {listed_text(text)}: {exc.strerror or exc}"
    return found[0] if regular else f"not a regular file: {listed_text(text)}"
