"""Rescan a catalog against itself: duplicate pairs, clusters, likely originals, uploaders.

Every work is re-decoded from its file and screened as a query against the rest of the catalog
(the work itself left out). When the file is gone or changed, the stored catalog fingerprint is the
query instead, and the evidence says so. Per-work results are written to
``<catalog>/rescan.sqlite`` as they complete, so a killed run resumes where it stopped, and
incremental runs (``new_only``, ``since``) merge with earlier results. The report is always
built from the stored results, so it does not depend on how, where or in how many pieces the
screening ran:

1. pairs: one per pair of works, from whichever direction gave the stronger evidence, with the
   share of each work that the other explains; ``duplicate`` and ``suspect`` pairs apart;
2. links: each duplicate pair typed and directed (:mod:`.relations`): ``copy_of`` (mostly the
   source, altered), ``contains_excerpt_of`` (a medley, compilation or mix using part of it),
   or, when originality (a reference upload, else the earlier dated upload) cannot decide,
   ``same_recording`` or ``overlap``, which accuse nobody;
3. clusters: one original and its copies, over ``copy_of``/``same_recording`` links only (an
   excerpt never merges clusters); members are uploads, each ``original``, ``identical`` or
   ``copy_of`` with its tempo ratio and pitch shift relative to the original, composed along
   pairs when the two were not matched directly; the original is the reference upload, else
   the earliest dated upload (undated uploads are named in a caveat), else undetermined;
4. uploaders ranked by how many of their uploads are copies of another uploader's original;
   excerpts used and undetermined clusters are counted apart.

The modules follow the data: :mod:`.screen` (one work as a query) → :mod:`.run` (many works,
here, in worker processes or on Dask) → :mod:`.store` (``rescan.sqlite``) → :mod:`.clusters`
(pure: pairs, clusters, originals, alterations, with :mod:`.relations` typing the links) →
:mod:`.report` (pure: the report, uploader ranking); :func:`load_report` (in :mod:`.run`)
reads the stored results and the catalog's uploads into a report.
:mod:`.results` holds the typed results and :mod:`.serialise` their JSON.

>>> from audiodup import Catalog
>>> from audiodup.rescan import rescan
>>> with Catalog.open("my-catalog") as catalog:                  # doctest: +SKIP
...     report = rescan(catalog, workers=4)
...     print(len(report.clusters), report.uploaders[:3])
"""

from .clusters import describe_alteration
from .relations import decide_direction, relate, work_originality
from .report import build_report, rank_uploaders, uploads_from_works
from .results import (
    Alteration,
    Cluster,
    Link,
    LinkKind,
    Member,
    MemberRelation,
    Mode,
    Pair,
    PairLabel,
    PartlyScanned,
    QuerySource,
    RescanReport,
    RunSummary,
    UploaderRank,
    WorkNote,
    WorkScan,
)
from .run import LOCK_FILE, ProgressCallback, load_report, rescan, run_rescan
from .screen import WorkQuery, screen_work, screen_work_task, work_query
from .serialise import report_to_dict
from .store import RESULT_FORMAT, RESULTS_FILE, RescanStore

__all__ = [
    "LOCK_FILE",
    "RESULTS_FILE",
    "RESULT_FORMAT",
    "Alteration",
    "Cluster",
    "Link",
    "LinkKind",
    "Member",
    "MemberRelation",
    "Mode",
    "Pair",
    "PairLabel",
    "PartlyScanned",
    "ProgressCallback",
    "QuerySource",
    "RescanReport",
    "RescanStore",
    "RunSummary",
    "UploaderRank",
    "WorkNote",
    "WorkQuery",
    "WorkScan",
    "build_report",
    "decide_direction",
    "describe_alteration",
    "load_report",
    "rank_uploaders",
    "relate",
    "report_to_dict",
    "rescan",
    "run_rescan",
    "screen_work",
    "screen_work_task",
    "uploads_from_works",
    "work_originality",
    "work_query",
]
