"""The rescan report, always built from the stored per-work results: pairs and clusters
(:mod:`.clusters`), uploaders ranked by their copies of others' originals, fallbacks and
errors. Pure: :func:`audiodup.rescan.run.load_report` reads the stored results and calls
:func:`build_report`."""

from __future__ import annotations

from ..results import WorkInfo
from ..settings import Settings
from .clusters import find_clusters, find_pairs
from .results import Cluster, RescanReport, UploaderRank, WorkNote, WorkScan


def build_report(
    works: list[WorkInfo], scans: dict[int, WorkScan], settings: Settings, catalog: str = ""
) -> RescanReport:
    """Pairs, clusters, originals and uploaders from per-work results (pure)."""
    info = {w.work_id: w for w in works}
    scans = {w: s for w, s in scans.items() if w in info}
    duplicates, suspects = find_pairs(scans, info, settings)
    clusters = find_clusters(duplicates, info)
    return RescanReport(
        catalog=catalog,
        works=len(info),
        scanned=len(scans),
        unscanned=tuple(sorted(set(info) - set(scans))),
        clusters=clusters,
        pairs=duplicates,
        suspect_pairs=suspects,
        uploaders=rank_uploaders(clusters, info),
        fallbacks=tuple(
            WorkNote(w, info[w].path, s.note)
            for w, s in sorted(scans.items())
            if s.query_source == "stored_fingerprint" and s.note and not s.error
        ),
        errors=tuple(
            WorkNote(w, info[w].path, s.error) for w, s in sorted(scans.items()) if s.error
        ),
    )


def rank_uploaders(
    clusters: tuple[Cluster, ...], info: dict[int, WorkInfo]
) -> tuple[UploaderRank, ...]:
    """Uploaders with a work in some cluster, most copies of another uploader's original
    first (then share of their works, then seconds copied)."""
    catalog_works: dict[str, list[WorkInfo]] = {}
    for work in info.values():
        uploader = (work.metadata or {}).get("uploader")
        if uploader:
            catalog_works.setdefault(uploader, []).append(work)
    copies: dict[str, list[int]] = {}
    counts: dict[str, dict[str, int]] = {}

    def bump(uploader: str, what: str) -> None:
        counts.setdefault(uploader, {}).setdefault(what, 0)
        counts[uploader][what] += 1

    for cluster in clusters:
        by_id = {m.work_id: m for m in cluster.members}
        if cluster.original is None:
            for m in cluster.members:
                if m.uploader:
                    bump(m.uploader, "unattributed")
            continue
        owner = by_id[cluster.original].uploader
        for m in cluster.members:
            if m.work_id == cluster.original or not m.uploader:
                continue
            if m.uploader == owner:
                bump(m.uploader, "self_copies")
            else:
                copies.setdefault(m.uploader, []).append(m.work_id)
                if owner:
                    bump(owner, "originals_copied")
    ranks = []
    for uploader in sorted(set(copies) | set(counts)):
        own = catalog_works.get(uploader, [])
        copied = sorted(copies.get(uploader, []))
        c = counts.get(uploader, {})
        ranks.append(
            UploaderRank(
                uploader=uploader,
                works=len(own),
                copies=len(copied),
                share=len(copied) / len(own) if own else 0.0,
                copies_duration_s=sum(info[w].duration_s for w in copied),
                catalog_duration_s=sum(w.duration_s for w in own),
                originals_copied=c.get("originals_copied", 0),
                self_copies=c.get("self_copies", 0),
                unattributed=c.get("unattributed", 0),
                copy_work_ids=tuple(copied),
            )
        )
    ranks.sort(key=lambda r: (-r.copies, -r.share, -r.copies_duration_s, r.uploader))
    return tuple(ranks)
