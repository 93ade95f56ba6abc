"""The edges of a rescan: a run picks the works, screens them here, in local worker processes
or on Dask, and stores each result as it completes (:mod:`.store`), one run at a time per
catalog; :func:`load_report` reads every stored result back into a report."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from .. import dask_client
from ..catalog import Catalog
from ..errors import AudiodupError, CatalogError
from ..metadata import parse_timestamp
from ..screening import match_signals
from ..settings import Settings
from ..store import catalog_error
from ..workers import map_with_timeout
from .report import build_report
from .results import Mode, RescanReport, RunSummary, WorkScan
from .screen import (
    WorkQuery,
    screen_work,
    screen_work_task,
    work_query,
    work_query_task,
    worker_catalog,
)
from .store import RESULTS_FILE, RescanStore

LOCK_FILE = "rescan.lock"

ProgressCallback = Callable[[int, int, WorkScan | None], None]


def run_rescan(
    catalog: Catalog,
    *,
    workers: int = 1,
    new_only: bool = False,
    since: datetime | str | None = None,
    dask: str | object | None = None,
    timeout_s: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunSummary:
    """Screen the works this run is about and store each result as it completes.

    Parameters
    ----------
    catalog
        An open catalog.
    workers
        Local processes (ignored with ``dask``).
    timeout_s
        Seconds allowed to decode and screen one work in a local worker process; a work that
        runs over, or whose worker crashes, is screened with its stored fingerprint instead.
        With ``dask``: the longest wait for the next result (default
        :data:`audiodup.dask_client.DEFAULT_TIMEOUT_S`); past it, or when the cluster has no
        worker left, the run stops with a ``ClusterError`` (and resumes when run again).
    new_only
        Only works that have no rescan result yet (added since the last rescan).
    since
        Only works added to the catalog at or after this date (ISO 8601 text or datetime).
    dask
        A Dask scheduler address (``tcp://host:8786``) or a ``distributed.Client``; every worker
        must see the catalog directory and the audio files at the same absolute paths.
    on_progress
        ``on_progress(done, total, scan)``: once with ``scan=None`` before the first work, then
        after every work.

    An unfinished run with the same ``new_only``/``since`` is resumed: only its remaining works
    are screened.
    """
    if new_only and since is not None:
        raise AudiodupError("choose either new_only or since, not both")
    mode: Mode = "new" if new_only else ("since" if since is not None else "all")
    since_dt = parse_timestamp(since) if isinstance(since, str) else since
    if since_dt is not None and since_dt.tzinfo is None:
        since_dt = since_dt.replace(tzinfo=UTC)
    since_text = since_dt.isoformat() if since_dt is not None else None
    root = catalog.root
    lock = FileLock(str(root / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise CatalogError(f"another rescan of {root} is running") from None
    except OSError as exc:  # a read-only or full catalog folder
        raise catalog_error(exc, root, "rescan") from None
    store = RescanStore(root, catalog.settings)
    try:
        live = {w.work_id: w for w in catalog.works()}

        def targets() -> list[int]:
            if mode == "new":
                scanned = store.scanned_ids()
                return [w for w in live if w not in scanned]
            if mode == "since":
                return [w for w, info in live.items() if parse_timestamp(info.added_at) >= since_dt]
            return list(live)

        run_id, ids, done, resumed = store.open_run(mode, since_text, targets)
        todo = [w for w in ids if w in live and w not in done]
        total, finished = len(ids), len(ids) - len(todo)
        if on_progress is not None:
            on_progress(finished, total, None)
        files = catalog.store.work_files()
        jobs = [(w, _absolute(files.get(w, live[w].path))) for w in todo]
        if jobs and dask is None:
            catalog.warm_files()  # the local workers share this machine's page cache
        decoded_here: list[int] = []
        if dask is not None:
            scans = _run_dask(dask, catalog, jobs, timeout_s, decoded_here)
        elif (workers > 1 and len(jobs) > 1) or timeout_s is not None:
            scans = _run_local(catalog, workers, timeout_s, jobs)
        else:
            scans = (screen_work(catalog, w, path) for w, path in jobs)
        screened = 0
        try:
            for scan in scans:
                store.save(run_id, live[scan.work_id].sha256, scan)
                screened += 1
                if on_progress is not None:
                    on_progress(finished + screened, total, scan)
        finally:
            close = getattr(scans, "close", None)
            if close is not None:
                close()  # stops worker pools at once on errors and Ctrl-C
        if run_id is not None:
            store.finish(run_id)
        return RunSummary(
            run_id, mode, resumed, total, finished, screened, tuple(sorted(decoded_here))
        )
    finally:
        store.close()
        lock.release()


def _absolute(path: str) -> str:
    """Stored paths are as given at ``index add``; workers elsewhere need absolute ones."""
    return str(Path(path).absolute())


def _screen_job(job: tuple[str, Settings, int, str]) -> WorkScan:
    return screen_work_task(*job)


def _run_local(
    catalog: Catalog, workers: int, timeout_s: float | None, jobs: list[tuple[int, str]]
) -> Iterator[WorkScan]:
    """Worker processes that are killed and replaced when a work hangs or crashes them (a
    hostile file); such a work is screened here with its stored fingerprint instead."""
    root = str(catalog.root)
    tasks = [(root, catalog.settings, work_id, path) for work_id, path in jobs]
    for task, status, value in map_with_timeout(_screen_job, tasks, workers, timeout_s):
        if status == "ok":
            yield value
        else:
            yield screen_work(catalog, task[2], file_problem=f"decoding failed: {value}")


def _run_dask(
    dask,
    catalog: Catalog,
    jobs: list[tuple[int, str]],
    timeout_s: float | None,
    decoded_here: list[int],
) -> Iterator[WorkScan]:
    """Each work decoded and screened on Dask, a bounded window of works in flight. Every wait
    is bounded (``timeout_s`` per result, and a cluster without workers is given up on):
    :class:`~audiodup.errors.ClusterError`, never a hang. A catalog split into shard groups is
    screened by scatter-gather over its groups (:mod:`audiodup.sharded`): the workers decode,
    and no worker loads the whole index; the works whose files a worker could not read and
    this machine can are decoded here, their ids added to ``decoded_here``."""
    client, own = dask_client.connect(dask)
    bound = dask_client.DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    try:
        if catalog.store.shard_groups():
            yield from _run_sharded(client, catalog, jobs, bound, decoded_here)
            return
        root, settings = str(catalog.root.absolute()), catalog.settings
        tasks = [(screen_work_task, (root, settings, w, path)) for w, path in jobs]
        for future in _bounded_window(client, tasks, bound):
            yield _result(future, bound)
    finally:
        if own:
            dask_client.close(client)


def _run_sharded(
    client, catalog: Catalog, jobs: list[tuple[int, str]], bound: float, decoded_here: list[int]
) -> Iterator[WorkScan]:
    from ..sharded import ShardedScreening

    root, settings = str(catalog.root.absolute()), catalog.settings
    sharded = ShardedScreening(catalog.store, settings, client, timeout_s=bound)
    tasks = [(work_query_task, (root, settings, w, path)) for w, path in jobs]
    paths = dict(jobs)

    def screen(work_id: int, query: WorkQuery) -> WorkScan:
        if query.source == "stored_fingerprint" and _readable_here(paths[work_id]):
            here = _decoded_here(root, settings, work_id, paths[work_id])
            if here is not None:
                query = here
                decoded_here.append(work_id)
        found = match_signals(
            sharded.match_fingerprint,
            query.fingerprint,
            query.view,
            query.parts,
            settings,
            (work_id,),
            True,
        )
        return WorkScan(
            work_id, query.source, tuple(found), note=query.note, truncated=query.truncated
        )

    # several works' rounds in flight at once: one work's round waits for a worker that is
    # busy decoding, another's runs meanwhile (every wait inside is bounded)
    in_flight = 2 * max(1, sum(dask_client.nthreads(client, bound).values()))
    pool = ThreadPoolExecutor(in_flight)
    try:
        screening: set[Future] = set()
        for future in _bounded_window(client, tasks, bound):
            work_id, found = _result(future, bound)
            if isinstance(found, WorkScan):
                yield found
                continue
            screening.add(pool.submit(screen, work_id, found))
            if len(screening) >= in_flight:
                done, screening = wait(screening, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done)
        for done in as_completed(screening):
            yield done.result()
    finally:
        # on an error, the works not started yet are not: each would wait out its own bound
        pool.shutdown(cancel_futures=True)


def _readable_here(path: str | None) -> bool:
    """Whether this machine can read ``path``: a work whose file a Dask worker could not use
    is then decoded here. A file this machine reads and a worker does not is the cluster's
    fault (workers must see the audio at the same absolute paths), not the work's: its stored
    fingerprint in its place would be a lesser result kept for good (``--new-only`` never
    screens it again). A file that fails here too keeps the worker's answer."""
    return path is not None and os.path.isfile(path) and os.access(path, os.R_OK)


def _decoded_here(root: str, settings: Settings, work_id: int, path: str) -> WorkQuery | None:
    """The work decoded on this machine (:func:`_readable_here`), or None when that fails
    too (the work removed meanwhile, a file that fails here as well): the worker's answer
    stands, as for any file a rescan cannot use."""
    try:
        here = work_query(worker_catalog(root, settings), work_id, path)
    except Exception:  # noqa: BLE001 - one work must not stop a rescan
        return None
    return here if here.source == "file" else None


def _result(future, bound: float):
    """A rescan task's result, fetched within ``bound`` (a worker that cannot open the catalog
    raises its ``ClusterError``: the run stops, the work left unscreened)."""
    return dask_client.result(future, bound, "rescan result")


def _bounded_window(client, tasks: list[tuple], bound: float) -> Iterator:
    """Submit ``(function, args)`` tasks, a bounded window in flight (the scheduler never holds
    millions of them), and yield each future as it finishes; waiting longer than ``bound``
    for the next one raises ``ClusterError``."""
    window = 4 * max(1, sum(dask_client.nthreads(client, bound).values()))
    queue = deque(tasks)

    def submit():
        function, args = queue.popleft()
        return client.submit(function, *args, pure=False)

    pending = {submit() for _ in range(min(window, len(queue)))}
    try:
        while pending:
            for future in dask_client.wait_first(client, pending, bound, what="rescan result"):
                pending.discard(future)
                if queue:
                    pending.add(submit())
                yield future
                future.release()
    finally:
        for future in pending:
            future.release()  # no one wants them: the scheduler drops them (cancel() waits)


def load_report(catalog: Catalog) -> RescanReport:
    """The report of every stored result (earlier runs included) on the catalog as it is."""
    works = catalog.works()
    path = catalog.root / RESULTS_FILE
    if path.exists():
        store = RescanStore(catalog.root, catalog.settings)
        try:
            scans = store.results(works)
        finally:
            store.close()
    else:
        scans = {}
    return build_report(
        works, scans, catalog.settings, catalog=str(catalog.root), uploads=catalog.uploads()
    )


def rescan(catalog: Catalog, **options) -> RescanReport:
    """:func:`run_rescan` then :func:`load_report`."""
    run_rescan(catalog, **options)
    return load_report(catalog)
