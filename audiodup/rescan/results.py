"""Typed rescan results: one work's screening, pairs, clusters, uploaders, the report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..results import Match

Mode = Literal["all", "new", "since"]
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


@dataclass(frozen=True)
class Pair:
    """Two works that match. ``evidence`` is the match found when ``query_work_id`` was
    screened against the catalog (``evidence.work_id`` is ``reference_work_id``): its tempo
    ratio is query tempo / reference tempo, its pitch shift query minus reference."""

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


@dataclass(frozen=True)
class Member:
    work_id: int
    path: str
    title: str | None
    artist: str | None
    uploader: str | None
    uploaded_at: str | None
    duration_s: float
    metadata: dict


@dataclass(frozen=True)
class Alteration:
    """How ``work_id`` differs from ``relative_to`` (the original, or the lowest work id when the
    original is unknown). ``via`` is the chain of duplicate pairs used, from ``relative_to`` to
    ``work_id``; longer than two when the transform was composed."""

    work_id: int
    relative_to: int
    tempo_ratio: float  # tempo of work_id / tempo of relative_to
    pitch_shift_semitones: float  # pitch of work_id minus pitch of relative_to
    via: tuple[int, ...]
    description: str


@dataclass(frozen=True)
class Cluster:
    cluster_id: int
    members: tuple[Member, ...]
    original: int | None
    original_reason: str
    alterations: tuple[Alteration, ...]

    @property
    def work_ids(self) -> tuple[int, ...]:
        return tuple(m.work_id for m in self.members)


@dataclass(frozen=True)
class UploaderRank:
    """An uploader's part in the clusters. ``copies`` counts their works that are copies of
    another uploader's original (or of an original without uploader)."""

    uploader: str
    works: int  # works of this uploader in the catalog
    copies: int
    share: float  # copies / works
    copies_duration_s: float
    catalog_duration_s: float
    originals_copied: int  # their works that others copied
    self_copies: int  # copies of their own originals
    unattributed: int  # in clusters whose original is unknown
    copy_work_ids: tuple[int, ...]


@dataclass(frozen=True)
class WorkNote:
    work_id: int
    path: str
    note: str


@dataclass(frozen=True)
class RescanReport:
    catalog: str
    works: int  # live works in the catalog
    scanned: int  # of those, screened (by this or earlier runs)
    unscanned: tuple[int, ...]
    clusters: tuple[Cluster, ...]
    pairs: tuple[Pair, ...]  # duplicate pairs
    suspect_pairs: tuple[Pair, ...]
    uploaders: tuple[UploaderRank, ...]
    fallbacks: tuple[WorkNote, ...]  # works screened with their stored fingerprint
    errors: tuple[WorkNote, ...]


@dataclass(frozen=True)
class RunSummary:
    run_id: int | None  # None when there was nothing to screen
    mode: Mode
    resumed: bool
    targets: int  # works this run screens in total
    already_done: int  # of those, done before this invocation (resumed runs)
    screened: int  # screened by this invocation
