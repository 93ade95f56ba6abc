"""The JSON forms of rescan results, both ways, and of the store's bookkeeping.

The report document (:func:`report_to_dict`) is versioned and described by
``audiodup/schemas/rescan.schema.json``. The dataclass-to-JSON direction is
:func:`audiodup.results.to_jsonable` (non-finite floats become null); this module adds the way
back for the per-work results kept in ``rescan.sqlite``, so a stored result reads back as the
``WorkScan`` that was written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import fields

from ..results import Match, ReviewDecision, Section, to_jsonable
from ..schema import SCHEMA_VERSION
from .results import RescanReport, WorkScan

# Match fields that may be null (typed ``... | None``): None stays None for these; any other
# null was a non-finite float
_NULLABLE_MATCH_FIELDS = frozenset(f.name for f in fields(Match) if "None" in str(f.type))


def report_to_dict(report: RescanReport, decisions: Sequence[ReviewDecision] = ()) -> dict:
    """What ``rescan --out FILE.json`` writes (``rescan.schema.json``): ``schema_version``,
    a ``summary`` of counts, then ``to_jsonable`` of the report, whose ``errors`` carry their
    cause under ``error`` as screen's error entries do, and the review ``decisions`` in force
    on its uploads (``review_decisions``)."""
    data = to_jsonable(report)
    data["errors"] = [
        {"work_id": e["work_id"], "path": e["path"], "error": e["note"]} for e in data["errors"]
    ]
    data["review_decisions"] = to_jsonable(list(decisions))
    return {"schema_version": SCHEMA_VERSION, "summary": report_summary(report), **data}


def report_summary(report: RescanReport) -> dict[str, int]:
    """The counts of a report: the facts the exit code is made of, and ``partly_scanned``,
    which it leaves out."""
    return {
        "duplicate_pairs": len(report.pairs),
        "suspect_pairs": len(report.suspect_pairs),
        "clusters": len(report.clusters),
        "errors": len(report.errors),
        "fallbacks": len(report.fallbacks),
        "unscanned": len(report.unscanned),
        "partly_scanned": len(report.partly_scanned),
    }


def scan_to_json(scan: WorkScan) -> str:
    """One work's result as compact JSON text, as ``rescan.sqlite`` stores it."""
    return json.dumps(to_jsonable(scan))


def scan_from_json(text: str) -> WorkScan:
    """The inverse of :func:`scan_to_json`. Raises ``KeyError``, ``TypeError`` or
    ``ValueError`` on text that another version wrote."""
    data = json.loads(text)
    return WorkScan(
        work_id=data["work_id"],
        query_source=data["query_source"],
        matches=tuple(match_from_dict(m) for m in data["matches"]),
        note=data.get("note"),
        error=data.get("error"),
        truncated=data.get("truncated"),  # None: stored before the field existed
    )


def match_from_dict(data: dict) -> Match:
    """A ``Match`` from its JSON form; unknown keys are ignored."""
    known = {f.name for f in fields(Match)}
    values = {k: v for k, v in data.items() if k in known}
    values["sections"] = tuple(Section(**s) for s in data.get("sections", ()))
    for key, value in values.items():
        if value is None and key not in _NULLABLE_MATCH_FIELDS:
            values[key] = math.nan
    return Match(**values)


def ids_to_json(ids: list[int]) -> str:
    return json.dumps(ids)


def ids_from_json(text: str) -> list[int]:
    return json.loads(text)


def store_identity(recipe: str, result_format: str) -> str:
    """What the stored results depend on, as the text ``rescan.sqlite`` compares."""
    return json.dumps({"recipe": recipe, "format": result_format})
