"""From per-work results to pairs and clusters (pure): one pair per two matching works, the
connected components of the duplicate pairs, each cluster's likely original and how every other
member was altered relative to it."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..metadata import parse_timestamp
from ..results import Match, WorkInfo
from ..settings import Settings
from ..verdict import decide
from .results import Alteration, Cluster, Member, Pair, PairLabel, WorkScan

_LABEL_RANK = {"duplicate": 1, "suspect": 0}

Edges = dict[int, list[tuple[int, Pair]]]  # work id -> (other work id, their pair)


def find_pairs(
    scans: dict[int, WorkScan], info: dict[int, WorkInfo], settings: Settings
) -> tuple[tuple[Pair, ...], tuple[Pair, ...]]:
    """``(duplicate pairs, suspect pairs)``: one pair per two works, the stronger direction's
    evidence kept, in order of ``work_ids``."""
    found: dict[tuple[int, int], list[tuple[PairLabel, Match, WorkScan]]] = {}
    for query_id, scan in scans.items():
        if scan.error:
            continue
        for match in scan.matches:
            if match.work_id == query_id or match.work_id not in info:
                continue
            label = decide([match], settings)
            if label == "clean":
                continue
            key = (min(query_id, match.work_id), max(query_id, match.work_id))
            found.setdefault(key, []).append((label, match, scan))
    duplicates, suspects = [], []
    for key in sorted(found):
        label, match, scan = max(
            found[key],
            key=lambda c: (
                _LABEL_RANK[c[0]],
                c[1].score,
                c[1].matched_hashes,
                c[1].coverage_s,
                -c[2].work_id,
            ),
        )
        pair = Pair(
            work_ids=key,
            label=label,
            query_work_id=scan.work_id,
            query_path=info[scan.work_id].path,
            query_title=info[scan.work_id].title,
            reference_work_id=match.work_id,
            query_source=scan.query_source,
            found_both_ways=len({c[2].work_id for c in found[key]}) == 2,
            evidence=replace(match, path=info[match.work_id].path),
            note=scan.note,
        )
        (duplicates if label == "duplicate" else suspects).append(pair)
    return tuple(duplicates), tuple(suspects)


def connected_work_ids(pairs: tuple[Pair, ...]) -> list[list[int]]:
    """The connected components of the graph whose edges are ``pairs``: each component's work
    ids ascending, components in order of their lowest work id."""
    # here, not at import: `screen` imports rescan (through report), and csgraph costs 0.4 CPU-s
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids = sorted({w for pair in pairs for w in pair.work_ids})
    if not ids:
        return []
    index = {work_id: i for i, work_id in enumerate(ids)}
    ends = np.array([[index[a], index[b]] for a, b in (p.work_ids for p in pairs)])
    graph = coo_matrix((np.ones(len(ends)), (ends[:, 0], ends[:, 1])), shape=(len(ids), len(ids)))
    _, labels = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for work_id, label in zip(ids, labels.tolist(), strict=True):
        groups.setdefault(label, []).append(work_id)  # ids ascending: so are groups and members
    return list(groups.values())


def find_clusters(pairs: tuple[Pair, ...], info: dict[int, WorkInfo]) -> tuple[Cluster, ...]:
    """Clusters of the works linked by ``pairs`` (the duplicate pairs), numbered from 1 in order
    of their lowest work id."""
    edges: Edges = {}
    for pair in pairs:
        a, b = pair.work_ids
        edges.setdefault(a, []).append((b, pair))
        edges.setdefault(b, []).append((a, pair))
    clusters = []
    for number, ids in enumerate(connected_work_ids(pairs), start=1):
        members = tuple(member(info[w]) for w in ids)
        original, reason = likely_original(members)
        reference = original if original is not None else ids[0]
        alterations = tuple(alteration(reference, w, edges) for w in ids if w != reference)
        clusters.append(Cluster(number, members, original, reason, alterations))
    return tuple(clusters)


def member(work: WorkInfo) -> Member:
    meta = work.metadata or {}
    return Member(
        work_id=work.work_id,
        path=work.path,
        title=work.title,
        artist=work.artist,
        uploader=meta.get("uploader") or None,
        uploaded_at=meta.get("uploaded_at") or None,
        duration_s=work.duration_s,
        metadata=meta,
    )


def likely_original(members: tuple[Member, ...]) -> tuple[int | None, str]:
    """``(work id, reason)``: the member uploaded first, only when every member has a date and
    one is earliest; otherwise ``None`` and why."""
    dated, undated = {}, []
    for m in members:
        try:
            dated[m.work_id] = parse_timestamp(m.uploaded_at) if m.uploaded_at else None
        except ValueError:
            dated[m.work_id] = None
        if dated[m.work_id] is None:
            undated.append(m.work_id)
    if len(undated) == len(members):
        return None, "unknown: no upload dates"
    if undated:
        return None, f"unknown: no upload date for work {_ids(undated)}"
    earliest = min(dated.values())
    first = [w for w, d in dated.items() if d == earliest]
    if len(first) > 1:
        return None, f"unknown: works {_ids(first)} share the earliest upload date"
    text = next(m.uploaded_at for m in members if m.work_id == first[0])
    return first[0], f"earliest uploaded_at ({text})"


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids)


def alteration(reference: int, work_id: int, edges: Edges) -> Alteration:
    """Tempo and pitch of ``work_id`` relative to ``reference`` along the fewest duplicate
    pairs (breadth-first, ties to the stronger pair)."""
    previous: dict[int, tuple[int, Pair] | None] = {reference: None}
    frontier = [reference]
    while frontier and work_id not in previous:
        nxt = []
        for node in frontier:
            for other, pair in sorted(
                edges.get(node, ()), key=lambda e: (-e[1].evidence.score, e[0])
            ):
                if other not in previous:
                    previous[other] = (node, pair)
                    nxt.append(other)
        frontier = nxt
    chain, node = [work_id], work_id
    log_tempo, pitch = 0.0, 0.0
    while previous[node] is not None:
        prev, pair = previous[node]
        tempo, shift = _transform(pair, target=node, source=prev)
        log_tempo += math.log(tempo)
        pitch += shift
        chain.append(prev)
        node = prev
    tempo_ratio = math.exp(log_tempo)
    return Alteration(
        work_id=work_id,
        relative_to=reference,
        tempo_ratio=tempo_ratio,
        pitch_shift_semitones=pitch,
        via=tuple(reversed(chain)),
        description=describe_alteration(tempo_ratio, pitch),
    )


def _transform(pair: Pair, target: int, source: int) -> tuple[float, float]:
    """(tempo ratio, pitch shift) of ``target`` relative to ``source`` from one pair."""
    e = pair.evidence
    if pair.query_work_id == target:
        return e.tempo_ratio, e.pitch_shift_semitones
    return 1.0 / e.tempo_ratio, -e.pitch_shift_semitones


def describe_alteration(tempo_ratio: float, pitch_shift_semitones: float) -> str:
    """A reviewer's phrase for a transform: ``speed x1.12 (resampled, +2.0 st)`` and so on."""
    same_tempo = abs(math.log(tempo_ratio)) < 0.01
    same_pitch = abs(pitch_shift_semitones) < 0.3
    if same_tempo and same_pitch:
        return "same tempo and pitch (re-encoded, trimmed or identical)"
    speed_pitch = 12.0 * math.log2(tempo_ratio)
    if not same_tempo and abs(pitch_shift_semitones - speed_pitch) < 0.3:
        way = "sped up" if tempo_ratio > 1 else "slowed down"
        return (
            f"{way} x{tempo_ratio:.3f} like a resampled copy "
            f"(pitch {pitch_shift_semitones:+.1f} st)"
        )
    parts = []
    if not same_tempo:
        parts.append(f"tempo x{tempo_ratio:.3f} ({'faster' if tempo_ratio > 1 else 'slower'})")
    else:
        parts.append("tempo kept")
    parts.append(f"pitch {pitch_shift_semitones:+.1f} st" if not same_pitch else "pitch kept")
    return ", ".join(parts)
