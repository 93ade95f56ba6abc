"""Typed rescan results: one work's screening, pairs, typed links, clusters of uploads,
uploaders, the report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ..results import Match, UploadRole

Mode = Literal["all", "new", "since"]
LinkKind = Literal["copy_of", "contains_excerpt_of", "same_recording", "overlap"]
MemberRelation = Literal["original", "identical", "copy_of", "undetermined", "unclustered"]
PairLabel = Literal["duplicate", "suspect"]
QuerySource = Literal["file", "stored_fingerprint"]


@dataclass(frozen=True)
class WorkScan:
    """One work screened against the catalog: its matches other than itself."""

    work_id: int
    query_source: QuerySource
    matches: tuple[Match, ...] = ()
    note: str | None = None  # why the stored fingerprint was the query
    error: str | None = None
    # its file holds more than the decoding limits take: only its first part was screened (and
    # is in the catalog); None: not known (the file was not read, or a version before the field
    # stored the result)
    truncated: bool | None = None


@dataclass(frozen=True)
class Pair:
    """Two works that match. ``evidence`` is the match found when ``query_work_id`` was
    screened against the catalog (``evidence.work_id`` is ``reference_work_id``): its tempo
    ratio is query tempo / reference tempo, its pitch shift query minus reference.
    ``covered_share[i]`` is the share of ``work_ids[i]``'s duration that the other work
    explains: the match's ``coverage`` when that work was the query, else the union of the
    sections' reference spans over its duration; the larger where both directions matched."""

    work_ids: tuple[int, int]  # ascending
    label: PairLabel
    query_work_id: int
    query_path: str
    query_title: str | None
    reference_work_id: int  # evidence.path and evidence.title name it
    query_source: QuerySource
    found_both_ways: bool  # each work's screening found the other
    evidence: Match
    note: str | None = None
    covered_share: tuple[float, float] = (math.nan, math.nan)

    def share_of(self, work_id: int) -> float:
        """The share of ``work_id``'s duration explained by the other work of the pair."""
        return self.covered_share[self.work_ids.index(work_id)]

    def other(self, work_id: int) -> int:
        return self.work_ids[1] if work_id == self.work_ids[0] else self.work_ids[0]


@dataclass(frozen=True)
class Link:
    """A typed, directional relation between two works, from one duplicate pair.

    ``copy_of`` and ``contains_excerpt_of`` read "``work_id`` <kind> ``source_work_id``": the
    source is the original side (a reference, or the earlier dated upload). Without an original
    side (``direction`` says why) the kinds are ``same_recording`` (each is mostly the other:
    one cluster, no accusation) and ``overlap`` (they share material; ``work_id`` is the one
    whose larger share is explained); neither kind names a copier.
    """

    kind: LinkKind
    work_id: int
    source_work_id: int
    work_share: float  # share of work_id's duration explained by source_work_id
    source_share: float  # share of source_work_id's duration found in work_id
    tempo_ratio: float  # tempo of work_id / tempo of source_work_id
    pitch_shift_semitones: float  # pitch of work_id minus pitch of source_work_id
    score: float  # the pair's evidence score
    direction: str  # why source_work_id is the original side, or why that is unknown
    caveats: tuple[str, ...] = ()
    clustered: bool = True  # for copy_of: whether this link joined the two clusters


@dataclass(frozen=True)
class Member:
    """One upload in a cluster, with its relation to the cluster's original upload:
    ``original``; ``identical`` (same content as the original, another upload); ``copy_of``
    (an altered copy of the original work, see the cluster's ``alterations``); or
    ``undetermined`` when the cluster has no determined original, or when the suspect pairs put
    the member's uploader in doubt (the cluster's caveats say why); ``unclustered`` for an upload
    of a work that is linked (an excerpt, an overlap) but in no cluster."""

    upload_id: int
    work_id: int
    role: UploadRole
    path: str
    title: str | None
    artist: str | None
    uploader: str | None
    uploaded_at: str | None
    isrc: str | None
    upc: str | None
    external_id: str | None
    duration_s: float
    relation: MemberRelation
    extra: dict = field(default_factory=dict)

    @property
    def external_ids(self) -> dict[str, str]:
        ids = {"isrc": self.isrc, "upc": self.upc, "external_id": self.external_id}
        return {k: v for k, v in ids.items() if v}


@dataclass(frozen=True)
class Alteration:
    """How ``work_id`` differs from ``relative_to`` (the original work, or the lowest work id
    when the original is undetermined). ``via`` is the chain of works whose pairs were used,
    from ``relative_to`` to ``work_id``; longer than two when the transform was composed."""

    work_id: int
    relative_to: int
    tempo_ratio: float  # tempo of work_id / tempo of relative_to
    pitch_shift_semitones: float  # pitch of work_id minus pitch of relative_to
    via: tuple[int, ...]
    description: str


@dataclass(frozen=True)
class Cluster:
    """One original and its copies: the works joined by ``copy_of`` (and ``same_recording``)
    links, every upload of each as a member. ``original_upload_id`` is the reference upload
    when there is one, else the earliest dated upload; None when undetermined
    (``original_reason`` says why). ``caveats`` name what the decision did not rest on
    (undated members, other references)."""

    cluster_id: int
    work_ids: tuple[int, ...]
    members: tuple[Member, ...]
    original_upload_id: int | None
    original_work_id: int | None
    original_reason: str
    caveats: tuple[str, ...]
    alterations: tuple[Alteration, ...]

    @property
    def determined(self) -> bool:
        return self.original_upload_id is not None

    def relation_text(self, member: Member) -> str:
        """``member``'s relation as shown: in a cluster with an original, an ``undetermined``
        member is one whose uploader the suspect pairs put in doubt."""
        if member.relation == "undetermined" and self.determined:
            return "undetermined: its uploader is in doubt, not counted (see the caveats)"
        return member.relation


@dataclass(frozen=True)
class UploaderRank:
    """An uploader's part in the clusters and links. ``copies`` counts their uploads that are
    copies (``copy_of`` or ``identical``) of another uploader's original, in clusters whose
    original is determined; their references are never counted as copies."""

    uploader: str
    uploads: int  # their uploads in the catalog
    copies: int
    share: float  # copies / uploads
    copies_duration_s: float
    catalog_duration_s: float
    originals_copied: int  # their original uploads that another uploader copied
    self_copies: int  # copies of their own originals
    excerpts_used: int  # their uploads that contain an excerpt of another's work (not copies)
    undetermined: int  # their uploads in clusters whose original is undetermined
    disputed_references: int  # their references in a cluster whose original is another's
    copy_upload_ids: tuple[int, ...]
    excerpt_upload_ids: tuple[int, ...]


@dataclass(frozen=True)
class WorkNote:
    work_id: int
    path: str
    note: str


@dataclass(frozen=True)
class PartlyScanned:
    """A work seen only to the decoding limits: its first ``duration_s`` seconds."""

    work_id: int
    path: str
    duration_s: float
    note: str


@dataclass(frozen=True)
class RescanReport:
    catalog: str
    works: int  # live works in the catalog
    scanned: int  # of those, screened (by this or earlier runs)
    unscanned: tuple[int, ...]
    uploads: int  # live uploads in the catalog
    clusters: tuple[Cluster, ...]
    links: tuple[Link, ...]  # one per duplicate pair, copies first, then excerpts, overlaps
    # every upload of a work in some duplicate pair or cluster, by upload id (members of
    # clusters as there; the uploads of linked works outside clusters as "unclustered")
    linked_uploads: tuple[Member, ...]
    pairs: tuple[Pair, ...]  # duplicate pairs
    suspect_pairs: tuple[Pair, ...]
    uploaders: tuple[UploaderRank, ...]
    fallbacks: tuple[WorkNote, ...]  # works screened with their stored fingerprint
    errors: tuple[WorkNote, ...]
    # works whose file holds more than the decoding limits take: seen only to there
    partly_scanned: tuple[PartlyScanned, ...] = ()


@dataclass(frozen=True)
class RunSummary:
    run_id: int | None  # None when there was nothing to screen
    mode: Mode
    resumed: bool
    targets: int  # works this run screens in total
    already_done: int  # of those, done before this invocation (resumed runs)
    screened: int  # screened by this invocation
    # works whose files the Dask workers could not read and this machine could: decoded here
    decoded_here: tuple[int, ...] = ()
