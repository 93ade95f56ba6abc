"""Typed results and the one place that turns them into JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

Relation = Literal["same_recording", "same_composition"]
VerdictLabel = Literal["duplicate", "suspect", "clean"]


@dataclass(frozen=True)
class Section:
    """One aligned stretch: upload time ``query_*`` lines up with reference time ``ref_*``."""

    query_start_s: float
    query_end_s: float
    ref_start_s: float
    ref_end_s: float
    matched_hashes: int


@dataclass(frozen=True)
class Match:
    """A catalog work that explains part of an upload, with the evidence."""

    work_id: int
    path: str
    title: str | None
    relation: Relation
    score: float  # -log10(false_match_probability), capped at 300
    false_match_probability: float
    tempo_ratio: float  # upload tempo / reference tempo
    pitch_shift_semitones: float  # upload pitch - reference pitch
    query_start_s: float
    query_end_s: float
    ref_start_s: float
    ref_end_s: float
    coverage: float  # share of the upload explained by this work, 0..1
    coverage_s: float  # seconds of the upload explained by this work
    matched_hashes: int
    chroma_similarity: float | None
    sections: tuple[Section, ...] = ()
    # upload peaks landing on the work's peaks under the alignment, when the guided peak check
    # made or confirmed the match
    matched_peaks: int | None = None


@dataclass(frozen=True)
class Verdict:
    """The screening result of one upload."""

    path: str
    verdict: VerdictLabel | None
    matches: tuple[Match, ...] = ()
    error: str | None = None
    duration_s: float | None = None
    truncated: bool = False  # only the first max_duration_s of a longer file was screened
    fingerprint_s: float = 0.0
    search_s: float = 0.0

    @property
    def flagged(self) -> bool:
        return self.verdict == "duplicate"


@dataclass(frozen=True)
class AddResult:
    path: str
    status: Literal["added", "present", "failed"]
    work_id: int | None = None
    error: str | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class WorkInfo:
    work_id: int
    path: str
    title: str | None
    artist: str | None
    duration_s: float
    sha256: str
    added_at: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogStats:
    works: int
    hours: float
    index_bytes: int
    catalog_bytes: int
    bytes_per_work: float
    bytes_per_hour: float
    hash_entries: int
    chroma_vectors: int
    shards: int


def path_text(path) -> str:
    """A path as printable UTF-8 text; undecodable bytes of a file name appear as ``\\xNN``."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def to_jsonable(obj):
    """Dataclasses (and lists of them) to plain JSON types; NaN/inf become null."""
    if hasattr(obj, "__dataclass_fields__"):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else float(f"{obj:.6g}")
    return obj


def verdict_to_dict(verdict: Verdict) -> dict:
    if verdict.error is not None:
        return {"path": verdict.path, "error": verdict.error}
    data = to_jsonable(verdict)
    data.pop("error")
    return data


def dumps(obj) -> str:
    return json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False)
