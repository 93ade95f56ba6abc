"""The rescan report, always built from the stored per-work results: pairs, their typed links
(:mod:`.relations`), clusters of uploads (:mod:`.clusters`), uploaders ranked by their copies of
others' originals, fallbacks and errors. Pure: :func:`audiodup.rescan.run.load_report` reads the
stored results and the catalog's uploads and calls :func:`build_report`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from ..owners import attribute
from ..results import BEYOND_DECODING_LIMITS, UploadInfo, WorkInfo
from ..settings import Settings
from .clusters import find_clusters, find_pairs, member
from .relations import Doubts, relate
from .results import (
    Cluster,
    Link,
    Pair,
    PartlyScanned,
    RescanReport,
    UploaderRank,
    WorkNote,
    WorkScan,
)

_ROLES = ("reference", "upload")


def build_report(
    works: list[WorkInfo],
    scans: dict[int, WorkScan],
    settings: Settings,
    catalog: str = "",
    uploads: Iterable[UploadInfo] | None = None,
) -> RescanReport:
    """Pairs, links, clusters, originals and uploaders from per-work results (pure).

    ``uploads`` are the catalog's live uploads (the ledger); without them each work counts as
    one upload described by its own metadata (:func:`uploads_from_works`).
    """
    info = {w.work_id: w for w in works}
    uploads = list(uploads_from_works(works) if uploads is None else uploads)
    by_work: dict[int, list[UploadInfo]] = {}
    for upload in sorted(uploads, key=lambda u: u.upload_id):
        if upload.work_id in info:
            by_work.setdefault(upload.work_id, []).append(upload)
    scans = {w: s for w, s in scans.items() if w in info}
    duplicates, suspects = (
        tuple(_attributed(p, by_work, settings) for p in found)
        for found in find_pairs(scans, info, settings)
    )
    durations = {w: i.duration_s for w, i in info.items()}
    doubts = Doubts(suspects, by_work)
    links = relate(duplicates, by_work, settings.copy_min_share, durations, doubts)
    clusters = find_clusters(duplicates, links, by_work, info, doubts, settings.copy_min_share)
    in_clusters = {m.upload_id: m for c in clusters for m in c.members}
    linked = {w for p in (*duplicates, *suspects) for w in p.work_ids}
    linked_uploads = tuple(
        in_clusters.get(u.upload_id) or member(u, info[w], "unclustered")
        for w in sorted(linked | {w for c in clusters for w in c.work_ids})
        for u in by_work.get(w, ())
    )
    return RescanReport(
        catalog=catalog,
        works=len(info),
        scanned=len(scans),
        unscanned=tuple(sorted(set(info) - set(scans))),
        uploads=sum(len(u) for u in by_work.values()),
        clusters=clusters,
        links=links,
        linked_uploads=tuple(sorted(linked_uploads, key=lambda m: m.upload_id)),
        pairs=duplicates,
        suspect_pairs=suspects,
        uploaders=rank_uploaders(clusters, links, by_work, info),
        fallbacks=tuple(
            WorkNote(w, info[w].path, s.note)
            for w, s in sorted(scans.items())
            if s.query_source == "stored_fingerprint" and s.note and not s.error
        ),
        errors=tuple(
            WorkNote(w, info[w].path, s.error) for w, s in sorted(scans.items()) if s.error
        ),
        partly_scanned=tuple(
            PartlyScanned(
                w, info[w].path, info[w].duration_s, partly_scanned_note(info[w].duration_s)
            )
            for w, s in sorted(scans.items())
            if cut_short(s, info[w], settings) and not s.error
        ),
    )


def cut_short(scan: WorkScan, work: WorkInfo, settings: Settings) -> bool:
    """Whether a work's screening saw only part of its file: as decoding it said, when the
    rescan read the file (a file of exactly the cap's length was read whole); otherwise (its
    stored fingerprint, or a result stored by a version that did not record it) by its stored
    length (:func:`reaches_the_cap`)."""
    if scan.query_source == "file" and scan.truncated is not None:
        return scan.truncated
    return reaches_the_cap(work, settings)


def reaches_the_cap(work: WorkInfo, settings: Settings) -> bool:
    """Whether a work's stored audio is as long as decoding takes (``max_duration_s``): its
    file held that much or more. A work screened from its stored fingerprint, or whose result
    an earlier version stored, is known to be cut only this way; one cut earlier by the budget
    of native samples (a very high rate or many channels) is not."""
    return work.duration_s >= settings.max_duration_s - 1.0 / settings.sample_rate_hz


def partly_scanned_note(duration_s: float) -> str:
    """Why a work's screening saw only part of its file."""
    return (
        f"only its first {duration_s:.1f} s were screened and are in the catalog "
        f"({BEYOND_DECODING_LIMITS}): a copy in the rest, or of the rest, is not found"
    )


def uploads_from_works(works: Iterable[WorkInfo]) -> list[UploadInfo]:
    """One upload per work, described by the work's metadata (``uploader``, ``uploaded_at``,
    ``role``, ``isrc``, ``upc``, ``external_id`` or the distributor's ``work_id``); the upload
    id is the work id. For catalogs and callers without an upload ledger."""
    known = ("uploader", "uploaded_at", "role", "isrc", "upc", "external_id", "work_id")
    out = []
    for work in works:
        meta = work.metadata or {}
        role = meta.get("role")
        out.append(
            UploadInfo(
                upload_id=work.work_id,
                work_id=work.work_id,
                role=role if role in _ROLES else "upload",
                source_path=work.path,
                sha256=work.sha256,
                recorded_at=work.added_at,
                title=work.title,
                artist=work.artist,
                uploader=meta.get("uploader") or None,
                uploaded_at=meta.get("uploaded_at") or None,
                isrc=meta.get("isrc") or None,
                upc=meta.get("upc") or None,
                external_id=meta.get("external_id") or meta.get("work_id") or None,
                extra={k: v for k, v in meta.items() if k not in known},
            )
        )
    return out


def _attributed(pair: Pair, by_work: dict[int, list[UploadInfo]], settings: Settings) -> Pair:
    """``pair`` with its evidence naming the matched work's owner, as ``screen`` names it."""
    (evidence,) = attribute([pair.evidence], by_work.get(pair.evidence.work_id, []), settings)
    return replace(pair, evidence=evidence)


def rank_uploaders(
    clusters: tuple[Cluster, ...],
    links: tuple[Link, ...],
    uploads_by_work: dict[int, list[UploadInfo]],
    info: dict[int, WorkInfo],
) -> tuple[UploaderRank, ...]:
    """Uploaders with an upload in some cluster or excerpt link, most copies of another
    uploader's original first (then share of their uploads, then seconds copied).

    A copy is a member of a cluster whose original is determined, other than the original,
    uploaded by another account than the original's (an identical re-upload counts), and not
    ``undetermined`` (a member the suspect pairs put in doubt is counted apart). Copies of
    one's own original, excerpts used (``contains_excerpt_of``) and uploads in clusters without
    a determined original are counted apart; a reference is never counted as a copy (another
    label's reference of the same recording is a dispute, counted as such).
    """
    every: dict[str, list[UploadInfo]] = {}
    for uploads in uploads_by_work.values():
        for u in uploads:
            if u.uploader:
                every.setdefault(u.uploader, []).append(u)
    copies: dict[str, list[int]] = {}
    excerpts: dict[str, list[int]] = {}
    counts: dict[str, dict[str, int]] = {}

    def bump(uploader: str, what: str) -> None:
        counts.setdefault(uploader, {}).setdefault(what, 0)
        counts[uploader][what] += 1

    for cluster in clusters:
        if not cluster.determined:
            for m in cluster.members:
                if m.uploader:
                    bump(m.uploader, "undetermined")
            continue
        original = next(m for m in cluster.members if m.upload_id == cluster.original_upload_id)
        owner = original.uploader
        copied = False
        for m in cluster.members:
            if m.upload_id == original.upload_id or not m.uploader:
                continue
            if m.relation == "undetermined":  # a member in doubt (the cluster's caveats say why)
                bump(m.uploader, "undetermined")
            elif m.uploader == owner:
                bump(m.uploader, "self_copies")
            elif m.role == "reference":
                bump(m.uploader, "disputed_references")
            else:
                copies.setdefault(m.uploader, []).append(m.upload_id)
                copied = True
        if copied and owner:
            bump(owner, "originals_copied")
    cluster_of = {w: c.cluster_id for c in clusters for w in c.work_ids}
    for link in links:
        if link.kind != "contains_excerpt_of":
            continue
        if cluster_of.get(link.work_id, -1) == cluster_of.get(link.source_work_id, -2):
            continue  # both are in one cluster: counted as its members, not twice
        source_owners = {u.uploader for u in uploads_by_work.get(link.source_work_id, ())}
        for u in uploads_by_work.get(link.work_id, ()):
            if u.uploader and u.uploader not in source_owners:
                excerpts.setdefault(u.uploader, []).append(u.upload_id)
    duration = {
        u.upload_id: info[u.work_id].duration_s for us in uploads_by_work.values() for u in us
    }
    ranks = []
    for uploader in sorted(set(copies) | set(counts) | set(excerpts)):
        own = every.get(uploader, [])
        copied = sorted(copies.get(uploader, []))
        used = sorted(set(excerpts.get(uploader, [])))
        c = counts.get(uploader, {})
        ranks.append(
            UploaderRank(
                uploader=uploader,
                uploads=len(own),
                copies=len(copied),
                share=len(copied) / len(own) if own else 0.0,
                copies_duration_s=sum((duration[u] for u in copied), 0.0),
                catalog_duration_s=sum((duration[u.upload_id] for u in own), 0.0),
                originals_copied=c.get("originals_copied", 0),
                self_copies=c.get("self_copies", 0),
                excerpts_used=len(used),
                undetermined=c.get("undetermined", 0),
                disputed_references=c.get("disputed_references", 0),
                copy_upload_ids=tuple(copied),
                excerpt_upload_ids=tuple(used),
            )
        )
    ranks.sort(key=lambda r: (-r.copies, -r.share, -r.copies_duration_s, r.uploader))
    return tuple(ranks)
