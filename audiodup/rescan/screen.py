"""One catalog work screened as a query against its catalog (runs in worker processes,
threads or Dask workers)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..allocator import keep_freed_memory
from ..audio import load_audio
from ..catalog import Catalog
from ..dask_client import catalog_unseen, on_worker
from ..errors import (
    AudiodupError,
    CatalogError,
    WorkersCannotOpenCatalogError,
    WorkNotFoundError,
)
from ..fingerprint import Fingerprint, UploadFingerprints
from ..screening import SignalQuery, View, match_signals, planned_views, signal_queries
from ..settings import Settings
from .results import QuerySource, WorkScan


@dataclass(frozen=True)
class WorkQuery:
    """A catalog work as a query: its fingerprint, where it came from, why the file was not
    used (``None``: it was), and its further looks' fingerprints (``None``: a stored fingerprint
    has no audio to look at again)."""

    fingerprint: Fingerprint
    source: QuerySource
    note: str | None = None
    view: View | None = None
    # the file holds more than the decoding limits take (None: not known, the file was not read)
    truncated: bool | None = None
    # what of its stereo parts is screened too (audiodup.stereo); none when the file was not
    # read
    parts: Sequence[SignalQuery] = ()


@dataclass(frozen=True)
class ReadyViews:
    """Every further look's fingerprint made ahead (:func:`audiodup.screening.planned_views`),
    a picklable :data:`audiodup.screening.View` to send from the worker that decoded the work."""

    prints: dict[tuple[float, float], Fingerprint]

    def __call__(self, time_scale: float, hop_phase: float) -> Fingerprint:
        return self.prints[(time_scale, hop_phase)]


def screen_work(
    catalog: Catalog,
    work_id: int,
    path: str | Path | None = None,
    *,
    file_problem: str | None = None,
) -> WorkScan:
    """Screen one catalog work against the rest of its catalog: the work is left out
    (:meth:`audiodup.index.LoadedIndexes.without`), for its own line would decide every look
    and end it before the chroma, four-peak and peak checks that find its hard copies. A work
    read from its file takes the further looks an upload does.

    ``path`` is where to read the work's file [default: its stored path]. The file's decoded
    audio must still be the audio that was indexed; otherwise the stored fingerprint is used.
    ``file_problem`` skips the file (it could not be decoded elsewhere) and says why.
    """
    try:
        query = work_query(catalog, work_id, path, file_problem=file_problem)
    except CatalogError as exc:
        return WorkScan(work_id, "stored_fingerprint", error=str(exc))
    matches = match_signals(
        catalog.match_fingerprint,
        query.fingerprint,
        query.view,
        query.parts,
        catalog.settings,
        (work_id,),
        True,
    )
    return WorkScan(
        work_id, query.source, tuple(matches), note=query.note, truncated=query.truncated
    )


def work_query(
    catalog: Catalog,
    work_id: int,
    path: str | Path | None = None,
    *,
    file_problem: str | None = None,
) -> WorkQuery:
    """A catalog work as a query. The file is re-decoded and fingerprinted with the query
    recipe, as an upload is (its further looks' fingerprints made when asked for); when it is
    gone or its audio changed (or ``file_problem`` names a problem found elsewhere), the stored
    catalog fingerprint stands in and the note says why.

    Raises ``CatalogError`` when the work is not in the catalog or has no usable fingerprint.
    """
    work = catalog.work(work_id)
    if work is None:
        raise WorkNotFoundError(f"work {work_id} is no longer in the catalog")
    if file_problem is None:
        try:
            file = (catalog.store.work_file(work_id) or work.path) if path is None else path
            audio = load_audio(Path(file), catalog.settings)
            if audio.sha256 != work.sha256:
                raise AudiodupError("the file's audio changed since it was indexed")
            prints = UploadFingerprints(audio, catalog.settings)
            parts = signal_queries(prints)
            return WorkQuery(prints.query, "file", None, prints.view, audio.truncated, parts)
        except AudiodupError as exc:
            file_problem = str(exc)
        except OSError as exc:  # its folder cannot be entered now, say
            file_problem = f"cannot read: {exc.strerror or exc}"
    note = f"file unavailable at {work.path} ({file_problem}); screened with the stored fingerprint"
    return WorkQuery(catalog.fingerprint(work_id), "stored_fingerprint", note)


_LOCAL = threading.local()


def worker_catalog(root: str, settings: Settings) -> Catalog:
    """One open catalog per thread (SQLite connections stay in their thread) and root."""
    keep_freed_memory()  # a Dask worker that screens or fingerprints the works
    cache = getattr(_LOCAL, "catalogs", None)
    if cache is None:
        cache = _LOCAL.catalogs = {}
    key = (root, settings)
    if key not in cache:
        try:
            cache[key] = Catalog.open(root, create=False, settings=settings)
        except (AudiodupError, OSError) as exc:
            # the client opened it: a Dask worker that cannot does not see it, and no work's
            # result may say so (a run stopped here screens those works when run again)
            if on_worker():
                raise catalog_unseen(root, exc) from exc
            raise
    return cache[key]


def screen_work_task(root: str, settings: Settings, work_id: int, path: str) -> WorkScan:
    """Picklable task for worker processes and Dask: errors come back in the scan, except a
    Dask worker's that cannot open the catalog (:class:`WorkersCannotOpenCatalogError`)."""
    try:
        return screen_work(worker_catalog(root, settings), work_id, path)
    except WorkersCannotOpenCatalogError:
        raise  # the cluster's problem, not the work's
    except AudiodupError as exc:
        return WorkScan(work_id, "file", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad work must not stop a rescan
        return WorkScan(work_id, "file", error=f"{type(exc).__name__}: {str(exc)[:200]}")


def ready_views(query: Fingerprint, view: View, settings: Settings) -> ReadyViews:
    """Every further look ``view`` gives of ``query``, made here to be sent elsewhere."""
    return ReadyViews({p: view(*p) for p in planned_views(query, settings)})


def work_query_task(
    root: str, settings: Settings, work_id: int, path: str
) -> tuple[int, WorkQuery | WorkScan]:
    """Picklable task: a work as a query (:func:`work_query`), decoded where it runs, for a
    catalog screened elsewhere (its shard groups), its further looks' fingerprints made here
    (:class:`ReadyViews`); errors come back as a scan, except a worker's that cannot open the
    catalog (:class:`WorkersCannotOpenCatalogError`)."""
    try:
        query = work_query(worker_catalog(root, settings), work_id, path)
        if query.view is not None:
            query = replace(query, view=ready_views(query.fingerprint, query.view, settings))
        parts = tuple(
            part
            if part.view is None
            else replace(part, view=ready_views(part.fingerprint, part.view, settings))
            for part in query.parts
        )
        query = replace(query, parts=parts)
        return work_id, query
    except WorkersCannotOpenCatalogError:
        raise  # the cluster's problem, not the work's
    except CatalogError as exc:
        return work_id, WorkScan(work_id, "stored_fingerprint", error=str(exc))
    except AudiodupError as exc:
        return work_id, WorkScan(work_id, "file", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad work must not stop a rescan
        return work_id, WorkScan(work_id, "file", error=f"{type(exc).__name__}: {str(exc)[:200]}")
