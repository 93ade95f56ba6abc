"""Rescan a catalog against itself: duplicate pairs, clusters, likely originals, uploaders.

Every work is re-decoded from its file and screened as a query against the whole catalog (the
self-match is ignored). When the file is gone or changed, the stored catalog fingerprint is the
query instead, and the evidence says so. Per-work results are written to
``<catalog>/rescan.sqlite`` as they complete, so a killed run resumes where it stopped, and
incremental runs (``new_only``, ``since``) merge with earlier results. The report is always
built from the stored results, so it does not depend on how, where or in how many pieces the
screening ran:

1. pairs: one per pair of works, from whichever direction gave the stronger evidence;
   ``duplicate`` pairs and ``suspect`` pairs are listed apart;
2. clusters: connected components of the duplicate pairs;
3. per cluster the likely original (the single earliest ``uploaded_at``; without dates it is
   unknown, never guessed) and every other member's tempo ratio and pitch shift relative to it,
   composed along duplicate pairs when the two were not matched directly;
4. uploaders ranked by how many of their works are copies of another uploader's original.

The modules follow the data: :mod:`.screen` (one work as a query) → :mod:`.run` (many works,
here, in worker processes or on Dask) → :mod:`.store` (``rescan.sqlite``) → :mod:`.clusters`
(pure: pairs, clusters, originals, alterations) → :mod:`.report` (pure: the report, uploader
ranking); :func:`load_report` (in :mod:`.run`) reads the stored results into a report.
:mod:`.results` holds the typed results and :mod:`.serialise` their JSON.

>>> from audiodup import Catalog
>>> from audiodup.rescan import rescan
>>> with Catalog.open("my-catalog") as catalog:                  # doctest: +SKIP
...     report = rescan(catalog, workers=4)
...     print(len(report.clusters), report.uploaders[:3])
"""

from .clusters import describe_alteration
from .report import build_report, rank_uploaders
from .results import (
    Alteration,
    Cluster,
    Member,
    Mode,
    Pair,
    PairLabel,
    QuerySource,
    RescanReport,
    RunSummary,
    UploaderRank,
    WorkNote,
    WorkScan,
)
from .run import LOCK_FILE, ProgressCallback, load_report, rescan, run_rescan
from .screen import screen_work, screen_work_task, work_query
from .serialise import report_to_dict
from .store import RESULT_FORMAT, RESULTS_FILE, RescanStore

__all__ = [
    "LOCK_FILE",
    "RESULTS_FILE",
    "RESULT_FORMAT",
    "Alteration",
    "Cluster",
    "Member",
    "Mode",
    "Pair",
    "PairLabel",
    "ProgressCallback",
    "QuerySource",
    "RescanReport",
    "RescanStore",
    "RunSummary",
    "UploaderRank",
    "WorkNote",
    "WorkScan",
    "build_report",
    "describe_alteration",
    "load_report",
    "rank_uploaders",
    "report_to_dict",
    "rescan",
    "run_rescan",
    "screen_work",
    "screen_work_task",
    "work_query",
]
