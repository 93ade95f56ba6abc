"""Typed per-query results and the one place that turns them into JSON lines.

``results.jsonl`` holds one ``{"type": "meta", ...}`` line (machine, corpus, performance,
scaling, conventions), then one ``{"type": "query", ...}`` line per screened query. The report
is rendered from this file alone (``python -m benchmarks report``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.queries import Query

MATCH_FIELDS = (
    "work_id",
    "path",
    "score",
    "false_match_probability",
    "tempo_ratio",
    "pitch_shift_semitones",
    "query_start_s",
    "query_end_s",
    "ref_start_s",
    "ref_end_s",
    "coverage",
    "matched_hashes",
    "relation",
    "tempo_drift",
)


@dataclass(frozen=True)
class MatchRecord:
    """An engine match, copied field by field (missing fields stay None)."""

    work_id: int | None = None
    path: str | None = None
    score: float | None = None
    false_match_probability: float | None = None
    tempo_ratio: float | None = None
    pitch_shift_semitones: float | None = None
    query_start_s: float | None = None
    query_end_s: float | None = None
    ref_start_s: float | None = None
    ref_end_s: float | None = None
    coverage: float | None = None
    coverage_s: float | None = None
    matched_hashes: int | None = None
    relation: str | None = None
    chroma_similarity: float | None = None
    tempo_drift: float | None = None  # end tempo / start tempo of a ramp (None: steady)
    track_id: str | None = None  # which corpus track the matched work is (None: distractor)

    @staticmethod
    def from_engine(match: Any, track_id: str | None) -> MatchRecord:
        vals = {}
        for f in MATCH_FIELDS:
            v = getattr(match, f, None)
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            vals[f] = v if v is None or isinstance(v, (int, float, str)) else str(v)
        return MatchRecord(track_id=track_id, **vals)


@dataclass(frozen=True)
class EngineResult:
    verdict: str  # duplicate | suspect | clean | error
    matches: tuple[MatchRecord, ...] = ()
    error: str | None = None
    fingerprint_s: float | None = None
    search_s: float | None = None
    total_s: float | None = None  # wall time of the screen() call


@dataclass(frozen=True)
class PeerResult:
    top_track_id: str | None
    score: float | None  # 1 - bit error rate of the best work
    second_score: float | None = None
    search_s: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class QueryResult:
    query: Query
    engine: EngineResult | None
    peer: PeerResult | None = None


@dataclass
class RunMeta:
    """Everything in the report that is not per query."""

    mode: str = "full"
    date: str = ""
    commit: str = "uncommitted"
    machine: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    engine: str = ""
    corpus: dict[str, Any] = field(default_factory=dict)
    conventions: dict[str, Any] = field(default_factory=dict)
    performance: dict[str, Any] = field(default_factory=dict)
    scaling: list[dict[str, Any]] = field(default_factory=list)
    scaling_notes: list[str] = field(default_factory=list)
    peer: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_jsonl(path: Path, meta: RunMeta, results: list[QueryResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        f.write(json.dumps({"type": "meta", **_clean(dataclasses.asdict(meta))}) + "\n")
        for r in results:
            f.write(json.dumps({"type": "query", **_clean(dataclasses.asdict(r))}) + "\n")
    tmp.replace(path)


def _engine_from(d: dict | None) -> EngineResult | None:
    if d is None:
        return None
    d = dict(d)
    d["matches"] = tuple(MatchRecord(**m) for m in d.get("matches", ()))
    return EngineResult(**d)


def read_jsonl(path: Path) -> tuple[RunMeta, list[QueryResult]]:
    meta = RunMeta()
    results: list[QueryResult] = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        kind = d.pop("type")
        if kind == "meta":
            known = {f.name for f in dataclasses.fields(RunMeta)}
            meta = RunMeta(**{k: v for k, v in d.items() if k in known})
        elif kind == "query":
            peer = d.get("peer")
            results.append(
                QueryResult(
                    query=Query.from_json(d["query"]),
                    engine=_engine_from(d.get("engine")),
                    peer=PeerResult(**peer) if peer else None,
                )
            )
    return meta, results
