"""From per-work results to pairs and clusters (pure): one pair per two matching works with the
share of each that the other explains, the clusters that the typed links
(:mod:`.relations`) form, each cluster's original upload and how every other work was altered
relative to it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..metadata import FUTURE_DATE_SLACK
from ..owners import (
    dated_uploads,
    is_day,
    one_uploader,
    recorded_before,
    recorded_time,
    same_time,
    upload_date,
)
from ..results import Match, Section, UploadInfo, WorkInfo, heard_in
from ..settings import Settings
from ..verdict import decide
from .results import Alteration, Cluster, Link, Member, MemberRelation, Pair, PairLabel, WorkScan

if TYPE_CHECKING:
    from .relations import Doubts

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
            covered_share=tuple(_share(w, found[key], info) for w in key),
        )
        (duplicates if label == "duplicate" else suspects).append(pair)
    return tuple(duplicates), tuple(suspects)


def covered_share(work: WorkInfo, match: Match, found_as_query: bool) -> float:
    """The share of ``work``'s duration explained by the other work of ``match``: the match's
    ``coverage`` when ``work`` was the query (``found_as_query``), else the union of the
    sections' reference spans (``work`` was the reference) over its duration."""
    if found_as_query:
        return min(1.0, max(0.0, match.coverage))
    covered = sum(hi - lo for lo, hi in aligned_spans(match, on_query=False))
    return min(1.0, max(0.0, covered / max(work.duration_s, 1e-9)))


def aligned_spans(match: Match, on_query: bool) -> list[tuple[float, float]]:
    """The seconds of the query (``on_query``) or of the reference that ``match``'s sections
    line up, overlaps merged, in order."""
    return merged_spans(
        (min(a, b), max(a, b))
        for a, b in (
            (s.query_start_s, s.query_end_s) if on_query else (s.ref_start_s, s.ref_end_s)
            for s in sections_of(match)
        )
    )


def merged_spans(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """``(start, end)`` spans in order, overlapping ones merged."""
    merged: list[tuple[float, float]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def sections_of(match: Match) -> tuple[Section, ...]:
    """The match's aligned sections; its main alignment when it has none."""
    main = Section(match.query_start_s, match.query_end_s, match.ref_start_s, match.ref_end_s, 0)
    return match.sections or (main,)


def _share(work_id: int, found: list, info: dict[int, WorkInfo]) -> float:
    """The share of ``work_id`` explained by the other work, the larger of what either
    direction saw: its own screening's match coverage, the other's screening's reference spans.
    One side's line can be partial (a speed 0.92 copy's look 2x faster covered 28 % of it, the
    original's screening 76 %)."""
    return max(
        covered_share(info[work_id], match, found_as_query=scan.work_id == work_id)
        for _, match, scan in found
    )


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


def find_clusters(
    pairs: tuple[Pair, ...],
    links: tuple[Link, ...],
    uploads_by_work: dict[int, list[UploadInfo]],
    info: dict[int, WorkInfo],
    doubts: Doubts | None = None,
    copy_min_share: float = 0.6,
) -> tuple[Cluster, ...]:
    """Clusters: the connected components over the clustering links (``copy_of`` and
    ``same_recording`` within one cluster), and every work uploaded more than once; members
    are the uploads of their works. Numbered from 1 in order of their lowest work id. The
    uploads of an uploader that ``doubts`` doubt (:meth:`Doubts.in_cluster`), and those of a
    work that an original that is a mix holds (:func:`held_by_a_mix`), are ``undetermined``,
    with a caveat."""
    joining = tuple(
        pair
        for pair, link in _pairs_of(pairs, links)
        if link.clustered and link.kind in ("copy_of", "same_recording")
    )
    groups = connected_work_ids(joining)
    grouped = {w for g in groups for w in g}
    groups += [[w] for w in info if w not in grouped and len(uploads_by_work.get(w, ())) > 1]
    groups.sort(key=lambda g: g[0])
    edges: Edges = {}
    for pair in pairs:
        a, b = pair.work_ids
        edges.setdefault(a, []).append((b, pair))
        edges.setdefault(b, []).append((a, pair))
    clusters = []
    for number, ids in enumerate(groups, start=1):
        uploads = [u for w in ids for u in uploads_by_work.get(w, ())]
        original = choose_original(uploads)
        doubted = doubts.in_cluster(ids, original.work_id) if doubts and original.work_id else {}
        mixed = (
            held_by_a_mix(
                original.work_id,
                ids,
                links,
                pairs,
                uploads_by_work,
                info[original.work_id].duration_s,
                copy_min_share,
            )
            if original.work_id is not None
            else {}
        )
        caveats = (*doubted.values(), *dict.fromkeys(mixed.values()))
        if caveats:
            original = replace(original, caveats=original.caveats + caveats)
        relative_to = original.work_id if original.work_id is not None else ids[0]
        members_of = set(ids)
        inside = {w: [(o, p) for o, p in edges.get(w, []) if o in members_of] for w in ids}
        altered = alterations(relative_to, ids, inside)
        members = tuple(
            member(
                u,
                info[u.work_id],
                "undetermined"
                if u.uploader in doubted or u.upload_id in mixed
                else _relation(u, original),
            )
            for u in sorted(uploads, key=lambda u: (u.work_id, u.upload_id))
        )
        clusters.append(
            Cluster(
                cluster_id=number,
                work_ids=tuple(ids),
                members=members,
                original_upload_id=original.upload_id,
                original_work_id=original.work_id,
                original_reason=original.reason,
                caveats=original.caveats,
                alterations=altered,
            )
        )
    return tuple(clusters)


# a mix: other uploaders' earlier recordings cover this share of it at least, outside the
# seconds the held work covers (a medley), not a sample or a loop in a track (reviews: a 5-s
# sample made an original a "mix", and so did one 15-s sample found in three copies)
MIX_MIN_OTHERS_SHARE = 0.25


def held_by_a_mix(
    original: int,
    ids: list[int],
    links: tuple[Link, ...],
    pairs: tuple[Pair, ...],
    uploads_by_work: dict[int, list[UploadInfo]],
    duration_s: float,
    copy_min_share: float,
) -> dict[int, str]:
    """The uploads of the cluster's works that ``original`` holds as a part of itself (a
    ``copy_of`` link whose source, ``original``, is mostly other material) when ``original``
    is a mix: earlier recordings of other uploaders than its own (its ``copy_of`` and
    ``contains_excerpt_of`` links to works outside the cluster) cover
    :data:`MIX_MIN_OTHERS_SHARE` of its ``duration_s`` outside the held work's seconds. Its date
    makes it the original, but a mix uses recordings, so it may have used the held one too (a
    review: a DJ's medley of alice's track and bob's, dated before bob's own upload of his,
    made bob a copier of the DJ). Upload id -> the caveat that says why it is not counted."""
    owners = {u.uploader for u in uploads_by_work.get(original, ())}
    by_ids = {pair.work_ids: pair for pair in pairs}

    def seconds(other: int) -> list[tuple[float, float]]:
        pair = by_ids.get((min(original, other), max(original, other)))
        return [] if pair is None else spans_on(pair, original)

    sources = sorted(
        link.source_work_id
        for link in links
        if link.work_id == original
        and link.kind in ("copy_of", "contains_excerpt_of")
        and link.source_work_id not in ids
        and any(
            u.uploader and u.uploader not in owners
            for u in uploads_by_work.get(link.source_work_id, ())
        )
    )
    used = merged_spans(span for w in sources for span in seconds(w))
    found: dict[int, str] = {}
    for link in links:
        held = link.work_id
        if not (
            link.kind == "copy_of"
            and link.source_work_id == original
            and held in ids
            and link.source_share < copy_min_share
        ):
            continue
        outside_held = spans_within(used, spans_outside(seconds(held), duration_s))
        share = spans_length(outside_held) / max(duration_s, 1e-9)
        if share < MIX_MIN_OTHERS_SHARE:
            continue
        for u in uploads_by_work.get(held, ()):
            if u.uploader not in owners:
                found[u.upload_id] = (
                    f"work {original}, the original by its date, is a mix: other uploaders' "
                    f"earlier recordings (work {_ids(sources)}) make up {share:.0%} of it, and "
                    f"only {link.source_share:.0%} of it is work {held}, which it may have used "
                    f"too; work {held}'s uploads are not counted as copies"
                )
    return found


def spans_on(pair: Pair, work: int) -> list[tuple[float, float]]:
    """The seconds of ``work`` that the pair's evidence lines up, merged."""
    return aligned_spans(pair.evidence, on_query=pair.query_work_id == work)


def spans_within(
    spans: list[tuple[float, float]], within: list[tuple[float, float]] | None
) -> list[tuple[float, float]]:
    """The parts of ``spans`` inside the merged ``within`` (all of them for None)."""
    if within is None:
        return spans
    return [
        (max(lo, a), min(hi, b)) for lo, hi in spans for a, b in within if min(hi, b) > max(lo, a)
    ]


def spans_outside(spans: list[tuple[float, float]], duration: float) -> list[tuple[float, float]]:
    """The seconds of ``[0, duration]`` that merged ``spans`` leave out."""
    gaps, at = [], 0.0
    for lo, hi in spans:
        if lo > at:
            gaps.append((at, min(lo, duration)))
        at = max(at, hi)
    if at < duration:
        gaps.append((at, duration))
    return [(lo, hi) for lo, hi in gaps if hi > lo]


def spans_length(spans: list[tuple[float, float]]) -> float:
    """The seconds ``spans`` cover (merged spans)."""
    return sum(hi - lo for lo, hi in spans)


def _pairs_of(pairs: tuple[Pair, ...], links: tuple[Link, ...]):
    by_ids = {tuple(sorted((link.work_id, link.source_work_id))): link for link in links}
    return [(pair, by_ids[pair.work_ids]) for pair in pairs if pair.work_ids in by_ids]


def _relation(upload: UploadInfo, original: Original) -> MemberRelation:
    if original.upload_id is None:
        return "undetermined"
    if upload.upload_id == original.upload_id:
        return "original"
    return "identical" if upload.work_id == original.work_id else "copy_of"


def member(upload: UploadInfo, work: WorkInfo, relation: MemberRelation) -> Member:
    return Member(
        upload_id=upload.upload_id,
        work_id=upload.work_id,
        role=upload.role,
        path=upload.source_path,
        title=upload.title,
        artist=upload.artist,
        uploader=upload.uploader or None,
        uploaded_at=upload.uploaded_at or None,
        isrc=upload.isrc,
        upc=upload.upc,
        external_id=upload.external_id,
        duration_s=work.duration_s,
        relation=relation,
        extra=dict(upload.extra),
    )


@dataclass(frozen=True)
class Original:
    upload_id: int | None
    work_id: int | None
    reason: str
    caveats: tuple[str, ...] = ()


def choose_original(uploads: list[UploadInfo]) -> Original:
    """The original upload of a cluster: the reference upload when there is one (several: the
    earliest dated, with a caveat), else the earliest dated upload; an undated upload recorded
    before that date (:func:`~audiodup.owners.recorded_before`) is named instead, when the
    uploads so recorded are one work's (several works': undetermined). Other undated uploads
    are listed in a caveat and never stop the choice; only no usable date or a tie leaves it
    undetermined."""
    references = [u for u in uploads if u.role == "reference"]
    candidates = references or uploads
    dated_candidates, undated = dated_uploads(candidates)
    dated = [(when, u.upload_id) for when, u in dated_candidates]
    by_id = {u.upload_id: u for u in uploads}
    caveats = []
    one_work = len({u.work_id for u in candidates}) == 1
    if references and one_work:
        # one reference work (perhaps registered more than once): it is the original
        chosen = by_id[dated[0][1]] if dated else min(references, key=lambda u: u.upload_id)
        if dated and (earlier := recorded_before(dated[0][0], references)) is not None:
            chosen = earlier
        if len(references) > 1:
            caveats.append(
                f"the reference was registered {len(references)} times (uploads "
                f"{_ids(u.upload_id for u in references)}); the earliest is named"
            )
        reason = "reference upload"
    elif not dated:
        what = "several references, none dated" if references else "no reference, no upload dates"
        return Original(None, None, f"undetermined: {what}")
    else:
        first = dated[0][0]
        first_text = by_id[dated[0][1]].uploaded_at
        earliest = [by_id[i] for d, i in dated if same_time(first, first_text, d)]
        tied = sorted({u.work_id for u in earliest})
        what = "reference upload date" if references else "upload date"
        when = earliest[0].uploaded_at + (", a day" if is_day(first_text) else "")
        early = [u for u in candidates if u.upload_id in undated]
        early_works = sorted({u.work_id for u in early if recorded_before(first, [u])})
        if len(early_works) > 1:
            return Original(
                None,
                None,
                f"undetermined: works {_ids(early_works)} hold uploads recorded without a date "
                f"before the earliest {what} ({when})",
            )
        if len(tied) > 1 and not early_works:
            return Original(
                None, None, f"undetermined: works {_ids(tied)} share the earliest {what} ({when})"
            )
        if len(earliest) > 1 and not one_uploader(earliest) and not early_works:
            # one audio, two accounts, one instant
            return Original(
                None,
                None,
                f"undetermined: uploads {_ids(u.upload_id for u in earliest)} of work {tied[0]} "
                f"by different uploaders share the earliest {what} ({when})",
            )
        chosen = by_id[dated[0][1]]
        earlier = recorded_before(first, early)
        if earlier is not None:  # uploaded before it was recorded: before every date here
            reason = (
                f"first recorded {'reference ' if references else ''}upload of work "
                f"{earlier.work_id} ({earlier.recorded_at}, undated), recorded before the "
                f"earliest {what} ({when})"
            )
            undated = tuple(i for i in undated if i != earlier.upload_id)
            chosen = earlier
        elif references:
            reason = f"earliest dated reference upload ({chosen.uploaded_at})"
            others = [u for u in references if u.work_id != chosen.work_id]
            caveats.append(
                f"several references: upload {_ids(u.upload_id for u in others)} "
                f"({', '.join(u.uploader or 'no uploader' for u in others)}) registered the same "
                "recording later or without a date"
            )
        else:
            reason = f"earliest uploaded_at ({chosen.uploaded_at})"
            recorded_first = _recorded_before(chosen, uploads)
            if recorded_first:
                caveats.append(
                    f"upload {_ids(recorded_first)} was recorded more than a day before the "
                    f"original (upload {chosen.upload_id}, recorded {chosen.recorded_at}), which "
                    "only its date puts first: check the dates"
                )
    if undated and not (references and one_work):
        caveats.append(
            f"no upload date for upload {_ids(undated)}: an undated upload never counts as the "
            "first"
        )
    if references:
        chosen_date = upload_date(chosen)
        others, _ = dated_uploads(u for u in uploads if u.role != "reference")
        earlier = sorted(
            u.upload_id for d, u in others if chosen_date is not None and d < chosen_date
        )
        if earlier:
            caveats.append(
                f"upload {_ids(earlier)} is dated before the reference; the reference names the "
                "owner all the same"
            )
    return Original(chosen.upload_id, chosen.work_id, reason, tuple(caveats))


def _recorded_before(chosen: UploadInfo, uploads: list[UploadInfo]) -> list[int]:
    """The uploads of others that the catalog recorded more than a day before ``chosen``, the
    original by its date: a backfill of history, or a date written back to win (a review made a
    thief's copy the original so). A day apart, they were not one import of history."""
    chosen_at = recorded_time(chosen)
    if chosen_at is None:
        return []
    earlier = []
    for upload in uploads:
        at = recorded_time(upload)
        if (
            at is not None
            and at < chosen_at - FUTURE_DATE_SLACK
            and not one_uploader([upload, chosen])
        ):
            earlier.append(upload.upload_id)
    return sorted(earlier)


def _ids(ids) -> str:
    return ", ".join(str(i) for i in ids)


def alterations(reference: int, work_ids: list[int], edges: Edges) -> tuple[Alteration, ...]:
    """Tempo and pitch of each of ``work_ids`` (but ``reference``) relative to ``reference``
    along the fewest pairs (one breadth-first search, ties to the stronger pair)."""
    previous: dict[int, tuple[int, Pair] | None] = {reference: None}
    frontier = [reference]
    while frontier:
        nxt = []
        for node in frontier:
            for other, pair in sorted(
                edges.get(node, ()), key=lambda e: (-e[1].evidence.score, e[0])
            ):
                if other not in previous:
                    previous[other] = (node, pair)
                    nxt.append(other)
        frontier = nxt
    return tuple(_along(reference, w, previous) for w in work_ids if w != reference)


def _along(reference: int, work_id: int, previous: dict) -> Alteration:
    chain, node = [work_id], work_id
    log_tempo, pitch, hidden_in = 0.0, 0.0, []
    while previous[node] is not None:
        prev, pair = previous[node]
        tempo, shift = _transform(pair, target=node, source=prev)
        log_tempo += math.log(tempo)
        pitch += shift
        if pair.evidence.signal != "mix":
            hidden_in.append((pair.evidence.signal, pair.query_work_id))
        chain.append(prev)
        node = prev
    tempo_ratio = math.exp(log_tempo)
    where = "".join(f";{heard_in(signal)} of work {w}" for signal, w in reversed(hidden_in))
    return Alteration(
        work_id=work_id,
        relative_to=reference,
        tempo_ratio=tempo_ratio,
        pitch_shift_semitones=pitch,
        via=tuple(reversed(chain)),
        description=describe_alteration(tempo_ratio, pitch) + where,
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
