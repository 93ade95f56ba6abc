"""Report files for ``screen --out`` and ``rescan --out``: JSON, CSV or self-contained HTML,
chosen by the file's suffix.

* JSON: ``screen`` writes the document that ``screen --json`` prints
  (:func:`audiodup.results.screen_document`); ``rescan`` writes
  :func:`audiodup.rescan.report_to_dict` (``clusters``, ``links``, ``linked_uploads``,
  ``pairs``, ``suspect_pairs``, ``uploaders``, ...). Both carry ``schema_version`` and follow
  the schemas of :mod:`audiodup.schema`.
* CSV: ``screen`` writes one row per (upload, match), an upload without matches gets one row;
  ``rescan`` writes one row per matching pair (duplicates, then suspects) with both works'
  names and uploads (ids, uploaders, dates, roles, external ids), the typed link (``relation``,
  ``derived_work_id``, ``source_work_id``, ``direction``, ``caveats``), the share of each work
  the other explains, the cluster and its original upload. Rows end in CRLF (RFC 4180), so a
  cell holding a carriage return is quoted too. A text cell that a spreadsheet would run as a
  formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is written
  with a ``'`` in front, and so is one that starts with ``'``: a text cell that starts with
  ``'`` is the value after it.
* HTML: see :mod:`audiodup.report_html`.

Every target is checked (:func:`check_report_path`) before the work that fills it starts.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from .catalog import Catalog
from .durable import replace_file
from .errors import AudiodupError
from .rescan import Member, Pair, RescanReport, report_to_dict
from .results import (
    Match,
    ReviewDecision,
    UploadInfo,
    Verdict,
    dumps,
    ids_text,
    listed_text,
    partly_screened,
    screen_document,
    to_jsonable,
)

REPORT_SUFFIXES = (".json", ".csv", ".html")

_MATCH_COLUMNS = (
    "relation",
    "score",
    "false_match_probability",
    "tempo_ratio",
    "pitch_shift_semitones",
    "query_start_s",
    "query_end_s",
    "ref_start_s",
    "ref_end_s",
    "coverage",
    "coverage_s",
    "matched_hashes",
    "chroma_similarity",
    "matched_peaks",
    "matched_onsets",
    "matched_on_shared_material",
    "signal",
)


def report_format(out: str | Path) -> str:
    """``json``, ``csv`` or ``html`` from the file name; raises ``AudiodupError`` otherwise."""
    suffix = Path(out).suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise AudiodupError(f"cannot write {out}: the report must end in .json, .csv or .html")
    return suffix[1:]


def check_report_path(
    out: str | Path, inputs: Sequence[str | Path] = (), catalog_dir: str | Path | None = None
) -> str:
    """:func:`report_format` and :func:`check_writable`: call it before the work, so a report
    that cannot be written fails at once instead of after hours of screening. A report is
    never written over one of ``inputs`` (an upload it reports on) or into ``catalog_dir``."""
    fmt = report_format(out)
    check_output_path(out, inputs, catalog_dir)
    return fmt


def check_output_path(
    out: str | Path, inputs: Sequence[str | Path] = (), catalog_dir: str | Path | None = None
) -> None:
    """:func:`check_writable`, and ``out`` is neither one of ``inputs`` nor inside
    ``catalog_dir`` (through a symbolic link either), which writing it would destroy."""
    check_writable(out)
    target = os.path.realpath(out)
    if catalog_dir is not None:
        folder = os.path.realpath(catalog_dir)
        if os.path.commonpath([folder, target]) == folder:
            raise AudiodupError(f"cannot write {out}: it is inside the catalog folder")
    if any(os.path.realpath(path) == target for path in inputs):
        raise AudiodupError(f"cannot write {out}: it is one of the uploads")


def check_writable(out: str | Path) -> None:
    """Raise ``AudiodupError`` (one line) unless a file can be written at ``out``: its folder
    exists and may be written, and ``out`` is not a folder or a file that may not be written.
    Nothing is created."""
    out = Path(out)
    folder = out.parent
    try:
        if out.is_dir():
            raise AudiodupError(f"cannot write {out}: it is a folder")
        if not folder.is_dir():
            raise AudiodupError(f"cannot write {out}: there is no folder {folder}")
        exists = out.exists()
    except OSError as exc:  # a name too long, a folder that cannot be entered
        raise AudiodupError(f"cannot write {out}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK) or (exists and not os.access(out, os.W_OK)):
        raise AudiodupError(f"cannot write {out}: permission denied")


def write_screen_report(
    verdicts: Sequence[Verdict],
    out: str | Path,
    catalog: Catalog | None = None,
    files: Sequence[str | Path] | None = None,
) -> Path:
    """Write screening results; HTML needs the ``catalog`` for pictures and reference audio, and
    reads each upload from ``files`` (the screened paths, one per verdict), else from its shown
    path, which names a file whose name is not UTF-8 only in print."""
    fmt = report_format(out)
    if fmt == "json":
        text = dumps(screen_document(verdicts))
    elif fmt == "csv":
        text = screen_csv(verdicts)
    else:
        from .report_html import screen_html

        text = screen_html(verdicts, catalog, files=files)
    return _write(out, text)


def write_rescan_report(
    report: RescanReport, out: str | Path, catalog: Catalog | None = None
) -> Path:
    """Write a rescan report; HTML needs the ``catalog`` for pictures and audio."""
    fmt = report_format(out)
    decisions, uploads = _review_of(catalog)
    if fmt == "json":
        live = {u.upload_id for u in uploads}
        text = dumps(report_to_dict(report, [d for d in decisions if d.upload_id in live]))
    elif fmt == "csv":
        text = with_decision_columns(rescan_csv(report), report, decisions, uploads)
    else:
        from .report_html import rescan_html, with_decisions_section

        page = rescan_html(report, catalog)
        text = with_decisions_section(page, report, decisions, uploads)
    return _write(out, text)


# who a matched work is (audiodup.owners): the upload that names it and its identifiers
_OWNER_COLUMNS = (
    "upload_id",
    "role",
    "uploader",
    "isrc",
    "upc",
    "external_id",
    "attribution",
    "identical_content",
)


def screen_csv(verdicts: Sequence[Verdict]) -> str:
    """One row per match (one for an upload without any); ``partly_screened``: true where only
    the upload's first ``duration_s`` were screened and held no duplicate."""
    header = ("path", "verdict", "error", "duration_s", "rank", "work_id", "work_path", "title")
    rows = []
    for v in verdicts:
        base = [v.path, v.verdict or "error", v.error or "", _cell(v.duration_s)]
        part = [_cell(partly_screened(v))]
        if not v.matches:
            rows.append(base + [""] * (4 + len(_OWNER_COLUMNS) + len(_MATCH_COLUMNS)) + part)
        for rank, m in enumerate(v.matches, start=1):
            rows.append(
                base
                + [rank, m.work_id, m.path, m.title or ""]
                + _owner_cells(m)
                + _match_cells(m)
                + part
            )
    return _csv(header + _OWNER_COLUMNS + _MATCH_COLUMNS + ("partly_screened",), rows)


def _owner_cells(m: Match) -> list:
    ids = m.external_ids
    return [
        _cell(m.upload_id),
        m.role or "",
        m.uploader or "",
        *(ids.get(name, "") for name in ("isrc", "upc", "external_id")),
        m.attribution or "",
        _cell(m.identical_content),
    ]


def rescan_csv(report: RescanReport) -> str:
    """One row per matching pair (duplicates, then suspects): both works with their uploads,
    the typed link (``relation``: which work is derived from which, the share of each that the
    other explains, why that direction, caveats) and the evidence."""
    uploads: dict[int, list[Member]] = {}
    for m in report.linked_uploads:
        uploads.setdefault(m.work_id, []).append(m)
    cluster_of = {w: c for c in report.clusters for w in c.work_ids}
    link_of = {tuple(sorted((k.work_id, k.source_work_id))): k for k in report.links}
    header = (
        "label",
        "relation",
        "derived_work_id",
        "source_work_id",
        "direction",
        "caveats",
        "cluster_id",
        "cluster_original",
        "query_work_id",
        "query_path",
        "query_title",
        *(f"query_{column}" for column in _UPLOAD_COLUMNS),
        "query_share",
        "reference_work_id",
        "reference_path",
        "reference_title",
        *(f"reference_{column}" for column in _UPLOAD_COLUMNS),
        "reference_share",
        # the evidence's relation beside the link's: one name each, for readers by name
        *(f"match_{c}" if c == "relation" else c for c in _MATCH_COLUMNS),
        "found_both_ways",
        "query_source",
        "note",
    )
    rows = []
    for pair in (*report.pairs, *report.suspect_pairs):
        link = link_of.get(pair.work_ids) if pair.label == "duplicate" else None
        ids = {c.cluster_id if c else None for c in map(cluster_of.get, pair.work_ids)}
        cluster = cluster_of.get(pair.query_work_id) if len(ids) == 1 else None
        rows.append(
            [
                pair.label,
                link.kind if link else "",
                link.work_id if link else "",
                link.source_work_id if link else "",
                link.direction if link else "",
                "; ".join(link.caveats) if link else "",
                cluster.cluster_id if cluster else "",
                cluster.original_upload_id if cluster and cluster.determined else "",
                *_work_cells(pair.query_work_id, uploads, pair, query=True),
                _cell(pair.share_of(pair.query_work_id)),
                *_work_cells(pair.reference_work_id, uploads, pair, query=False),
                _cell(pair.share_of(pair.reference_work_id)),
                *_match_cells(pair.evidence),
                pair.found_both_ways,
                pair.query_source,
                pair.note or "",
            ]
        )
    return _csv(header, rows)


# -- review decisions (the review queue of ``audiodup serve``) -----------------------------
_DECISION_COLUMNS = (
    "decision_id",
    "upload_id",
    "work_id",
    "decision",
    "note",
    "reviewer",
    "decided_at",
)
# one value per upload decided on, joined by "; " in the order of reviewed_upload_ids
_DECISION_PAIR_COLUMNS = (
    "reviewed_upload_ids",
    "review_decision",
    "review_note",
    "reviewer",
    "reviewed_at",
)


def decisions_csv(decisions: Sequence[ReviewDecision]) -> str:
    """The review decisions export as CSV (``GET /v1/reviews/export?format=csv``): one row
    per decision, text cells formula-safe like every CSV report."""
    return _csv(
        _DECISION_COLUMNS, [[getattr(d, name) for name in _DECISION_COLUMNS] for d in decisions]
    )


def decisions_by_pair(
    decisions: Sequence[ReviewDecision], uploads: Sequence[UploadInfo]
) -> dict[tuple[int, int], tuple[ReviewDecision, ...]]:
    """The decisions in force on each pair of works (ascending ids, as ``Pair.work_ids``), by
    upload id: a decision on an upload is about its work and the matched work, and a work's
    uploads are decided on one by one (an honest upload ``not_a_copy``, a thief's of the same
    audio ``copy``); each upload's latest decision on the pair is in force."""
    work_of = {u.upload_id: u.work_id for u in uploads}
    found: dict[tuple[int, int], dict[int, ReviewDecision]] = {}
    for d in sorted(decisions, key=lambda d: d.decision_id):
        work = work_of.get(d.upload_id)
        if work is not None and work != d.work_id:
            found.setdefault((min(work, d.work_id), max(work, d.work_id)), {})[d.upload_id] = d
    return {pair: tuple(by[u] for u in sorted(by)) for pair, by in found.items()}


def decisions_on_same_audio(
    decisions: Sequence[ReviewDecision], uploads: Sequence[UploadInfo]
) -> tuple[ReviewDecision, ...]:
    """The decisions in force on uploads compared with their own work: an identical upload
    of another's audio (a thief's re-upload of the same file) is decided on against the
    upload that owns the work. No pair of works holds them."""
    work_of = {u.upload_id: u.work_id for u in uploads}
    return tuple(d for d in decisions if work_of.get(d.upload_id) == d.work_id)


def with_decision_columns(
    text: str,
    report: RescanReport,
    decisions: Sequence[ReviewDecision],
    uploads: Sequence[UploadInfo],
) -> str:
    """:func:`rescan_csv` ``text`` with the review decisions in force on each pair in its last
    columns, one per upload decided on (empty where none was made). Its rows are the report's
    pairs, duplicates then suspects; cells are copied as written (already formula-safe), only
    the new ones are made safe."""
    reviewed = decisions_by_pair(decisions, uploads)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    pairs = (*report.pairs, *report.suspect_pairs)
    if len(rows) != len(pairs) + 1:
        raise AudiodupError("the rescan CSV does not have one row per pair")
    rows[0] += _DECISION_PAIR_COLUMNS
    for row, pair in zip(rows[1:], pairs, strict=True):
        found = reviewed.get(pair.work_ids, ())
        added = [
            "; ".join(str(d.upload_id) for d in found),
            *(
                "; ".join(listed_text(getattr(d, name)) for d in found)
                for name in ("decision", "note", "reviewer", "decided_at")
            ),
        ]
        row += [_text_cell(cell) for cell in added]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def _review_of(
    catalog: Catalog | None,
) -> tuple[list[ReviewDecision], list[UploadInfo]]:
    """The decisions in force and the ledger, to show beside rescan pairs (none without a
    catalog)."""
    if catalog is None:
        return [], []
    return catalog.latest_decisions(), catalog.uploads()


# per side of a pair, the uploads of that work (several joined by "; ")
_UPLOAD_COLUMNS = ("upload_ids", "uploader", "uploaded_at", "role", "external_ids")


def _work_cells(work_id: int, uploads: dict[int, list[Member]], pair: Pair, query: bool) -> list:
    path = pair.query_path if query else pair.evidence.path
    title = pair.query_title if query else pair.evidence.title
    members = uploads.get(work_id)
    if not members:  # a report without a ledger: each work stands for itself
        return [work_id, path, title or "", *[""] * len(_UPLOAD_COLUMNS)]
    return [
        work_id,
        members[0].path,
        members[0].title or title or "",
        "; ".join(str(m.upload_id) for m in members),
        "; ".join(listed_text(m.uploader or "") for m in members),
        "; ".join(m.uploaded_at or "" for m in members),
        "; ".join(m.role for m in members),
        "; ".join(ids_text(m.external_ids) for m in members),
    ]


def _match_cells(m: Match) -> list:
    return [_cell(getattr(m, name)) for name in _MATCH_COLUMNS]


def _cell(value):
    """A number stays a number (a pitch shift of -2.0 is no formula), None is empty."""
    value = to_jsonable(value)
    return "" if value is None else value


# OWASP's advice against CSV injection: a cell that starts with one of these is run as a formula
# by spreadsheets (=HYPERLINK(...), +cmd|..., -1+1, @SUM(...); tab and carriage return can hide
# the sign), so such a text cell gets a leading ' that makes it text. Text that starts with '
# gets one too, so nothing is lost: a text cell that starts with ' is the value after it.
# Numbers are never text cells, so a pitch shift of -2.0 stays a number.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text_cell(text: str) -> str:
    return "'" + text if text.startswith((*_FORMULA_STARTS, "'")) else text


def _csv(header: Sequence[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    # CRLF: the writer then quotes a cell with a lone CR, which a spreadsheet would otherwise
    # take for a row break (and the rest of the cell for a new, unchecked one)
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([_text_cell(c) if isinstance(c, str) else c for c in row] for row in rows)
    return buffer.getvalue()


def _write(out: str | Path, text: str) -> Path:
    return write_atomically(Path(out), text.encode("utf-8"))


def write_atomically(out: Path, data: bytes) -> Path:
    """Write ``data`` to ``out`` through a new temporary file in its folder, fsynced and
    renamed into place: a full disk or a kill leaves the earlier file whole, never a truncated
    one. A symlink is written through (its target is replaced, as :func:`check_report_path`
    judged it), and an earlier file's mode is kept (a new file's follows the umask). A failure
    is one :class:`AudiodupError`."""
    target = Path(os.path.realpath(out))
    try:
        earlier = target.stat().st_mode
    except OSError:
        earlier = None

    def write(handle) -> None:
        handle.write(data)
        if earlier is not None:
            os.fchmod(handle.fileno(), stat.S_IMODE(earlier))

    try:
        replace_file(target, write, sync_folder=False)
    except OSError as exc:
        raise AudiodupError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
