"""Scores from per-query results: recall@1, suspect rate, parameter errors, false positives."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from benchmarks.alterations import BY_NAME, FAMILIES, VARIANTS
from benchmarks.records import QueryResult


def engine_correct(r: QueryResult) -> bool:
    """recall@1 hit: verdict 'duplicate' and the right source on top."""
    e = r.engine
    return bool(
        e and e.verdict == "duplicate" and e.matches and e.matches[0].track_id == r.query.track_id
    )


def engine_top_right(r: QueryResult) -> bool:
    """Right source on top, whatever the verdict (used for parameter errors)."""
    e = r.engine
    return bool(e and e.matches and e.matches[0].track_id == r.query.track_id)


def peer_threshold(results: Iterable[QueryResult]) -> float | None:
    """Smallest Chromaprint score threshold with zero false positives on negatives.

    A query is flagged when its best score is strictly above the threshold, so the threshold
    is the highest best-score seen on any negative query. None if there are no negatives.
    """
    scores = [
        r.peer.score
        for r in results
        if r.query.role == "negative" and r.peer is not None and r.peer.score is not None
    ]
    return max(scores) if scores else None


def peer_correct(r: QueryResult, threshold: float | None) -> bool | None:
    p = r.peer
    if p is None or p.error:
        return None if p is None else False
    return bool(
        p.top_track_id == r.query.track_id
        and p.score is not None
        and (threshold is None or p.score > threshold)
    )


def _tempo_err_pct(r: QueryResult) -> float | None:
    m = r.engine.matches[0] if r.engine and r.engine.matches else None
    if m is None or m.tempo_ratio is None:
        return None
    return abs(m.tempo_ratio / r.query.tempo_ratio - 1.0) * 100.0


def _pitch_err_st(r: QueryResult) -> float | None:
    m = r.engine.matches[0] if r.engine and r.engine.matches else None
    if m is None or m.pitch_shift_semitones is None:
        return None
    return abs(m.pitch_shift_semitones - r.query.pitch_shift_semitones)


def alignment_err_s(r: QueryResult) -> float | None:
    """|reported ref_start_s - true source time at the reported query_start_s| (contiguous only)."""
    q = r.query
    m = r.engine.matches[0] if r.engine and r.engine.matches else None
    if not q.contiguous or m is None or m.query_start_s is None or m.ref_start_s is None:
        return None
    if m.query_start_s < q.query_offset_s - 0.5:
        return None  # the match starts before the source's content (prepended material)
    expected = q.ref_start_s + (m.query_start_s - q.query_offset_s) * q.tempo_ratio
    return abs(m.ref_start_s - expected)


def _q(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else math.nan


def _rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


@dataclass(frozen=True)
class VariantRow:
    variant: str
    family: str
    n: int
    recall: float
    suspect: float
    wrong_duplicate: float  # 'duplicate' with the wrong work on top
    tempo_err_med_pct: float
    tempo_err_p95_pct: float
    pitch_err_med_st: float
    pitch_err_p95_st: float
    align_err_med_s: float
    peer_recall: float | None
    errors: int


@dataclass(frozen=True)
class NegativeRow:
    variant: str
    family: str
    n: int
    false_positive: float
    suspect: float
    peer_false_positive: float | None


def _variant_order(names: Iterable[str]) -> list[str]:
    rank = {v.name: i for i, v in enumerate(VARIANTS)}
    return sorted(set(names), key=lambda n: (rank.get(n, 10**6), n))


def positive_rows(results: list[QueryResult], threshold: float | None) -> list[VariantRow]:
    by: dict[str, list[QueryResult]] = defaultdict(list)
    for r in results:
        if r.query.role == "positive":
            by[r.query.variant].append(r)
    rows = []
    for name in _variant_order(by):
        rs = by[name]
        right = [r for r in rs if engine_correct(r)]
        tempo = [x for r in right if (x := _tempo_err_pct(r)) is not None]
        pitch = [x for r in right if (x := _pitch_err_st(r)) is not None]
        align = [x for r in right if (x := alignment_err_s(r)) is not None]
        peer = [peer_correct(r, threshold) for r in rs]
        peer_known = [p for p in peer if p is not None]
        rows.append(
            VariantRow(
                variant=name,
                family=rs[0].query.family,
                n=len(rs),
                recall=_rate([engine_correct(r) for r in rs]),
                suspect=_rate([bool(r.engine and r.engine.verdict == "suspect") for r in rs]),
                wrong_duplicate=_rate(
                    [
                        bool(r.engine and r.engine.verdict == "duplicate" and not engine_correct(r))
                        for r in rs
                    ]
                ),
                tempo_err_med_pct=_q(tempo, 50),
                tempo_err_p95_pct=_q(tempo, 95),
                pitch_err_med_st=_q(pitch, 50),
                pitch_err_p95_st=_q(pitch, 95),
                align_err_med_s=_q(align, 50),
                peer_recall=_rate(peer_known) if peer_known else None,
                errors=sum(1 for r in rs if r.engine is None or r.engine.verdict == "error"),
            )
        )
    return rows


def negative_rows(results: list[QueryResult], threshold: float | None) -> list[NegativeRow]:
    by: dict[str, list[QueryResult]] = defaultdict(list)
    for r in results:
        if r.query.role == "negative":
            by[r.query.variant].append(r)
    rows = []
    for name in _variant_order(by):
        rs = by[name]
        peer = [
            r.peer.score > threshold
            for r in rs
            if r.peer and r.peer.score is not None and threshold is not None
        ]
        rows.append(
            NegativeRow(
                variant=name,
                family=rs[0].query.family,
                n=len(rs),
                false_positive=_rate(
                    [bool(r.engine and r.engine.verdict == "duplicate") for r in rs]
                ),
                suspect=_rate([bool(r.engine and r.engine.verdict == "suspect") for r in rs]),
                peer_false_positive=_rate(peer) if peer else None,
            )
        )
    return rows


def family_summary(rows: list[VariantRow]) -> dict[str, dict[str, float]]:
    """Query-weighted recall per family (and overall)."""
    out: dict[str, dict[str, float]] = {}
    for fam in (*FAMILIES, "all"):
        rs = [r for r in rows if fam == "all" or r.family == fam]
        n = sum(r.n for r in rs)
        if not n:
            continue
        peer_rs = [r for r in rs if r.peer_recall is not None]
        peer_n = sum(r.n for r in peer_rs)
        out[fam] = {
            "n": n,
            "recall": sum(r.recall * r.n for r in rs) / n,
            "suspect": sum(r.suspect * r.n for r in rs) / n,
            "peer_recall": (sum(r.peer_recall * r.n for r in peer_rs) / peer_n)
            if peer_n
            else math.nan,
        }
    return out


def sweep_points(rows: list[VariantRow], sweep: str) -> list[tuple[float, float, float | None]]:
    """(x, audiodup recall, Chromaprint recall) for the variants of one sweep."""
    pts = []
    for r in rows:
        v = BY_NAME.get(r.variant)
        if v is not None and v.sweep == sweep and v.x is not None:
            pts.append((v.x, r.recall, r.peer_recall))
    if sweep in ("tempo", "pitch", "speed"):
        base = next((r for r in rows if r.variant == "excerpt 60 s"), None)
        if base is not None:  # the unaltered 60-s excerpt is the x=1 / x=0 point
            pts.append((0.0 if sweep == "pitch" else 1.0, base.recall, base.peer_recall))
    return sorted(pts)


def latency_summary(results: list[QueryResult]) -> dict[str, float]:
    search = [r.engine.search_s for r in results if r.engine and r.engine.search_s is not None]
    total = [r.engine.total_s for r in results if r.engine and r.engine.total_s is not None]
    fp = [
        r.engine.fingerprint_s for r in results if r.engine and r.engine.fingerprint_s is not None
    ]
    qdur = [r.query.duration_s for r in results if r.engine and r.engine.total_s is not None]
    return {
        "queries": len(total),
        "search_p50_ms": _q(search, 50) * 1000,
        "search_p95_ms": _q(search, 95) * 1000,
        "fingerprint_p50_ms": _q(fp, 50) * 1000,
        "total_p50_ms": _q(total, 50) * 1000,
        "total_p95_ms": _q(total, 95) * 1000,
        "query_audio_s_per_wall_s": (sum(qdur) / sum(total)) if total and sum(total) else math.nan,
    }


def score_samples(results: list[QueryResult]) -> dict[str, list[float]]:
    """-log10(false_match_probability) of the top match: true matches vs false ones.

    'true' = positive query with the right work on top; 'false' = the top match of a negative
    query, or a wrong work on top of a positive query. Also the Chromaprint scores.
    """
    out: dict[str, list[float]] = {"true": [], "false": [], "peer_true": [], "peer_false": []}
    for r in results:
        e = r.engine
        if e and e.matches and e.matches[0].false_match_probability is not None:
            fmp = max(float(e.matches[0].false_match_probability), 1e-300)
            key = "true" if engine_top_right(r) and r.query.role == "positive" else "false"
            out[key].append(-math.log10(fmp))
        p = r.peer
        if p and p.score is not None:
            right = r.query.role == "positive" and p.top_track_id == r.query.track_id
            out["peer_true" if right else "peer_false"].append(p.score)
    return out
