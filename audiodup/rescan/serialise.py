"""The JSON forms of rescan results, both ways, and of the store's bookkeeping.

The dataclass-to-JSON direction is :func:`audiodup.results.to_jsonable` (non-finite floats
become null); this module adds the way back for the per-work results kept in
``rescan.sqlite``, so a stored result reads back as the ``WorkScan`` that was written.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields

from ..results import Match, Section, to_jsonable
from .results import RescanReport, WorkScan

# Match fields that may be null; any other null was a non-finite float
_NULLABLE_MATCH_FIELDS = ("title", "chroma_similarity", "matched_peaks")


def report_to_dict(report: RescanReport) -> dict:
    """The JSON form of a report (``to_jsonable`` of the dataclasses)."""
    return to_jsonable(report)


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
