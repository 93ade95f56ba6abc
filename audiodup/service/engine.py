"""The catalog inside one worker process: opened once, used by one thread at a time.

``Catalog`` is not thread-safe, and screening is CPU work that must not block the event loop.
Each worker process therefore runs its engine calls in a single thread (:meth:`Engine.run`,
queued in order) and guards the catalog with one lock, which :func:`get_catalog` takes too, so
routers that read the catalog (the review queue) take turns with screening. New catalog commits
(``index add`` by another process, an upload recorded by another worker) are seen at the next
call: ``Catalog.indexes()`` reloads when the store's index key changes, and the SQLite
connection reads in autocommit mode, so every query sees the latest committed state.

A worker of ``audiodup serve`` opens its catalog in the engine thread after it starts serving
(:meth:`Engine.open_in_background`): meanwhile ``/readyz`` answers 503 with the reason, and
requests that need the catalog wait for it. A catalog that cannot be opened (a damaged or
missing shard, a database locked for too long) leaves the worker up and not ready, saying why,
and the opening is tried again every :data:`RETRY_OPEN_S` seconds while it is asked for.

A worker keeps the database file it opened: a catalog folder replaced under it (a backup
restored, folders swapped) would have it record into a file nobody reads. So before each use it
checks that ``catalog.sqlite`` at the path is still that file (device and inode, one ``stat``),
and refuses with 503 (``/readyz`` too) until it is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from starlette.requests import Request

from .. import index
from ..allocator import keep_freed_memory
from ..catalog import Catalog
from ..dask_client import DEFAULT_NO_WORKERS_S
from ..errors import AudiodupError, CatalogError
from ..results import path_text
from ..settings import DEFAULT_SETTINGS
from ..store import DB_FILE, probe_readable
from . import intake, logs, metrics
from .config import ServiceConfig, is_private_folder
from .errors import ApiError, engine_error
from .merger import ShardMerger

if TYPE_CHECKING:  # Dask is an optional extra: imported when config.dask is set
    from ..sharded import ShardedScreening

T = TypeVar("T")
RETRY_OPEN_S = 2.0  # a catalog that could not be opened is tried again after this long
UNRECORDED_MIN_AGE_S = 86_400.0  # a received file no upload records is removed after this
# /readyz takes no key: the library's error (which names server paths) goes to the log only
LOG_SAYS_WHY = "the worker's log says why"
REPLACED = "the catalog folder was replaced while the service ran; restart the service"


def unrecorded_age_s(config: ServiceConfig) -> float:
    """How old a received file no upload records must be before it is removed: older than a
    request that kept it could still be recording it, and a day at least."""
    busy_s = config.request_timeout_s + config.job_timeout_s + config.lock_wait_s
    return max(UNRECORDED_MIN_AGE_S, 2 * busy_s)


class Engine:
    """One worker process's catalog, its lock and its engine thread."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        keep_freed_memory()
        self.lock = threading.Lock()
        # FAISS's OpenMP thread count is per thread: set in the engine thread itself, or its
        # searches fan out over every core (measured 3x slower per request on 2 busy cores)
        self._executor = ThreadPoolExecutor(
            1,
            thread_name_prefix="audiodup-engine",
            initializer=index.set_threads,
            initargs=(DEFAULT_SETTINGS.faiss_threads,),
        )
        self._catalog: Catalog | None = None
        self._sharded: ShardedScreening | None = None  # with config.dask
        self.merger: ShardMerger | None = None  # merges the shards recorded uploads add
        self.queued = 0  # engine calls waiting or running in this process
        self._count = threading.Lock()
        self.ready = False
        self.problem: str | None = None  # why the last attempt to open the catalog failed
        self._settled = threading.Event()  # set once an attempt to open has ended
        self._opening = False
        self._tried_at = 0.0
        self._closed = False
        self._opened_file: tuple[int, int] | None = None  # (device, inode) of its database
        self._replaced_logged = False

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            raise ApiError(503, "not_ready", self.not_ready_reason(), {"Retry-After": "5"})
        return self._catalog

    def open(self) -> None:
        """Open the catalog (it must exist) and load its indexes, so the first request is not
        the one that pays for it. Raises the library's error when it cannot."""
        catalog = Catalog.open(self.config.db, create=False)
        # after SQLite opened it: an overlay file system copies a file up (a new inode) when
        # it is first opened for writing, which must not read as a replaced catalog
        opened_file = _file_identity(self.config.db / DB_FILE)
        if opened_file is None:  # gone already: without it no replacement could be told
            catalog.close()
            raise CatalogError(f"catalog {path_text(self.config.db)} went away while it opened")
        sharded = None
        try:
            if self.config.quick:
                catalog.settings = catalog.settings.without_further_looks()
            catalog.settings = catalog.settings.with_hit_budget(self.config.hit_budget)
            catalog.settings = replace(
                catalog.settings,
                stereo_difference=self.config.stereo_difference,
                stereo_channels=self.config.stereo_channels,
            )
            catalog.store.lock_timeout_s = self.config.lock_wait_s
            # loaded and connected before the lock: nothing else holds this catalog yet, and
            # the review pages, which take the lock, need not wait for a scheduler meanwhile
            if self.config.dask is not None:
                sharded = sharded_screening(catalog, self.config)
            else:
                catalog.indexes()
                # its first requests do not page the index files in one by one (never fails)
                catalog.warm_files()
            with self.lock:
                if self._closed:  # the worker stopped while this was loading
                    raise ApiError(503, "not_ready", "the worker is stopping")
                self._catalog, self._sharded = catalog, sharded
                self._opened_file = opened_file
                if catalog.store.read_only is None:
                    catalog.store.merge_after_commit = False
                    self.merger = ShardMerger(self.config.db, catalog.store.settings)
                    self.merger.request()  # any merge due since the catalog was last written
                    self._sweep_unrecorded(catalog)
        except BaseException:
            if sharded is not None:
                sharded.close()
            catalog.close()
            raise
        self.problem = None
        self.ready = True
        self._settled.set()
        logs.event("worker ready", pid=os.getpid(), db=str(self.config.db))

    def _sweep_unrecorded(self, catalog: Catalog) -> None:
        """Remove received files no upload records (:func:`intake.sweep_unrecorded`) that are
        older than any request that kept one could still be recording (a day at least)."""
        config = self.config
        older_than = time.time() - unrecorded_age_s(config)
        try:
            recorded = catalog.store.recorded_file_names()
            removed = intake.sweep_unrecorded(config.received_dir, recorded, older_than)
        except AudiodupError as exc:  # never keeps a worker from serving
            logs.event("received files not swept", logging.WARNING, error=str(exc))
            return
        if removed:
            logs.event("unrecorded received files removed", pid=os.getpid(), files=removed)

    def open_in_background(self) -> None:
        """Start opening the catalog in the engine thread (engine calls queue behind it)."""
        with self._count:
            if self._opening or self.ready or self._closed:
                return
            self._opening = True
        self._executor.submit(self._try_open)

    def _try_open(self) -> None:
        try:
            self.open()
        except (AudiodupError, OSError) as exc:
            self.problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logs.event("catalog not opened", logging.WARNING, pid=os.getpid(), error=self.problem)
        finally:
            self._tried_at = time.monotonic()
            with self._count:
                self._opening = False
            self._settled.set()

    def not_ready_reason(self) -> str | None:
        """None once the catalog is open, else why not, in words that name no path (and, when
        the last attempt failed over :data:`RETRY_OPEN_S` ago, another attempt starts)."""
        if self.ready:
            return None
        if self._closed:
            return "the worker is stopping"
        if self.problem is None:
            return "the catalog is still loading"
        if time.monotonic() - self._tried_at > RETRY_OPEN_S:
            self.open_in_background()
        return f"the catalog cannot be opened ({LOG_SAYS_WHY})"

    def unreadable_reason(self) -> str | None:
        """Why the catalog database cannot be read now (a fresh connection of its own, never
        the engine's lock; the error itself is logged), or None."""
        try:
            probe_readable(self.config.db)
        except AudiodupError as exc:
            error = str(exc).splitlines()[0]
            logs.event("catalog unreadable", logging.WARNING, pid=os.getpid(), error=error)
            return f"the catalog database cannot be read ({LOG_SAYS_WHY})"
        return None

    def replaced_reason(self) -> str | None:
        """Why the catalog at the configured path is not the one this worker opened (its
        folder restored from a backup or swapped while the service ran), or None. One
        ``stat``; a database that is missing now is not "replaced" (the catalog's other checks
        answer for a folder moved away, and it may come back)."""
        return self._replaced(_file_identity(self.config.db / DB_FILE))

    def _replaced(self, now: tuple[int, int] | None) -> str | None:
        if self._opened_file is None or now is None or now == self._opened_file:
            self._replaced_logged = False  # put back: a later replacement is logged again
            return None
        if not self._replaced_logged:
            self._replaced_logged = True
            logs.event(
                "catalog replaced",
                logging.ERROR,
                pid=os.getpid(),
                db=str(self.config.db),
                error="the catalog's database is not the file this worker opened; restart the "
                "service to open the new one",
            )
        return REPLACED

    def read_only_reason(self) -> str | None:
        """Why the open catalog cannot be written here (a read-only mount), or None (also
        while it is not open)."""
        catalog = self._catalog
        return None if catalog is None else catalog.store.read_only

    def incoming_dir(self) -> Path:
        """Where this worker spools request bodies: the catalog's ``received/.incoming``, or
        for a catalog that cannot be written a private folder outside it, so that a
        read-only replica screens."""
        if self.read_only_reason() is None:
            return self.config.incoming_dir
        return private_folder(self.config.read_only_incoming_dir)

    def jobs_dir(self) -> Path:
        """Where asynchronous jobs are kept: ``<db>/service/jobs``, or for a catalog that
        cannot be written a private folder outside it (as :meth:`incoming_dir`)."""
        if self.read_only_reason() is None:
            return self.config.jobs_dir
        return private_folder(self.config.read_only_jobs_dir)

    def check_same_catalog(self) -> None:
        """Refuse to use a catalog whose folder was replaced, or whose database is gone: the
        worker's connection would read and write the old file, whose records nobody sees."""
        if self._opened_file is None:
            return
        now = _file_identity(self.config.db / DB_FILE)
        if now is None:
            raise ApiError(503, "catalog_error", "the catalog folder or its database is gone")
        if self._replaced(now) is not None:
            raise ApiError(503, "catalog_replaced", REPLACED)

    def cluster_reason(self) -> str | None:
        """With ``dask``: why its cluster cannot screen now (no worker, no answer), or None."""
        sharded = self._sharded
        problem = None if sharded is None else sharded.cluster_problem()
        return None if problem is None else f"{problem}: uploads are answered 503 until it can"

    def wait_open(self, timeout_s: float | None = None) -> None:
        """Block until the first attempt to open the catalog has ended (or ``timeout_s``)."""
        self._settled.wait(self.config.request_timeout_s if timeout_s is None else timeout_s)

    @contextmanager
    def read(self) -> Iterator[Catalog]:
        """The catalog, held under the lock for the block; a library error raised in the block
        becomes its API error (:func:`~audiodup.service.errors.engine_error`)."""
        self.wait_open()
        try:
            with self.lock:
                self.check_same_catalog()
                yield self.catalog
        except AudiodupError as exc:
            raise engine_error(exc) from None

    def merge_soon(self) -> None:
        """Ask the merger for the merges a recorded upload's shard may have made due."""
        if self.merger is not None:
            self.merger.request()

    def close(self) -> None:
        self.ready = False
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self.lock:
            if self.merger is not None:
                self.merger.close()
                self.merger = None
            if self._sharded is not None:
                self._sharded.close()
                self._sharded = None
            if self._catalog is not None:
                self._catalog.close()
                self._catalog = None

    async def run(
        self,
        fn: Callable[..., T],
        *args,
        timeout_s: float | None = None,
        on_dropped: Callable[[], None] | None = None,
        still_running: str = "",
    ) -> T:
        """``fn(*args)`` in the engine thread, after the calls queued before it. Over
        ``timeout_s`` the caller gets a 504: a call still queued is dropped, a running one
        finishes in the background (its result is thrown away; ``still_running`` ends the
        504's message then: what it may still do). Over ``max_queue`` calls waiting, a 503.
        ``on_dropped`` is called when ``fn`` will never run (refused, or dropped from the
        queue): the caller's cleanup."""
        if self.queued >= self.config.max_queue:
            if on_dropped is not None:
                on_dropped()
            raise ApiError(
                503,
                "busy",
                f"this worker has {self.queued} requests queued; retry later",
                {"Retry-After": "5"},
            )
        self._queue_change(+1)
        future = self._executor.submit(fn, *args)
        future.add_done_callback(self._done)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except TimeoutError:
            dropped = future.cancel()
            if dropped and on_dropped is not None:
                on_dropped()
            note = "" if dropped or not still_running else f"; {still_running}"
            raise ApiError(
                504, "timeout", f"the request took longer than {timeout_s:g} s{note}"
            ) from None

    def _done(self, _future) -> None:
        self._queue_change(-1)

    def _queue_change(self, step: int) -> None:
        with self._count:
            self.queued += step
        metrics.QUEUE_DEPTH.inc(step)


def private_folder(folder: Path) -> Path:
    """``folder``, made (mode 0700) or checked to be this user's own real folder: in a shared
    temporary folder another user could have made it first, or put a link there."""
    try:
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        os.lstat(folder)
    except OSError as exc:
        raise intake.storage_error(exc) from None
    if not is_private_folder(folder):
        raise ApiError(
            503,
            "storage_error",
            "the upload cannot be stored (the service's log says why)",
            logged=f"{folder} is not a folder of this user's alone (mode 0700); remove it",
        )
    return folder


def _file_identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of ``path``, or None when there is no such file (or it cannot be
    looked at: a 503 for a catalog that is gone, not a 500)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def sharded_screening(catalog: Catalog, config: ServiceConfig) -> ShardedScreening:
    """A ``ShardedScreening`` of ``catalog`` on ``config.dask``'s cluster, the catalog set to
    screen through it. Each round waits at most ``request_timeout_s``; connecting, or a
    cluster without workers, at most a quarter of it (20 s at most), so that those answer 503
    before the request's own 504. Raises the library's error when the catalog is not split or
    the scheduler cannot be reached."""
    from ..dask_client import quiet_logs
    from ..sharded import ShardedScreening, require_split

    require_split(catalog.store)
    quiet_logs(to=logs.ToServiceLog())  # Dask's lines as the log's JSON lines, not raw text
    sharded = ShardedScreening(
        catalog.store,
        catalog.settings,
        config.dask,
        timeout_s=config.request_timeout_s,
        no_workers_s=min(DEFAULT_NO_WORKERS_S, config.request_timeout_s / 4),
    )
    catalog.screen_with(sharded.match_fingerprint, sharded.totals)
    return sharded


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_catalog(request: Request) -> Iterator[Catalog]:
    """A FastAPI dependency: this process's open catalog, held under its lock for the duration
    of the request (use it in ``def`` endpoints, which run in a thread, not on the event loop)."""
    engine: Engine = request.app.state.engine
    engine.wait_open()
    with engine.lock:
        engine.check_same_catalog()
        catalog = engine.catalog
        index.set_threads(catalog.settings.faiss_threads)  # per thread (see Engine)
        yield catalog
