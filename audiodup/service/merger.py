"""Shard merges of a worker's catalog, made in a thread of their own.

Each upload the service records adds a shard, and past ``max_shards`` the catalog merges some
(:meth:`audiodup.store.CatalogStore.merge_due_shards`). A merge of a large catalog's shards
takes minutes of CPU. Made in the engine thread after the commit, it would hold every queued
screening for that long; here it runs beside it, with a store (an SQLite connection and locks)
of its own. It holds the writer lock only to plan and to put the merge in place, so the
engine's next commit waits seconds, not minutes. The thread runs at a lower priority and FAISS
in it on one core, so screening keeps its core.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

from .. import index
from ..errors import AudiodupError
from ..settings import Settings
from ..store import CatalogStore
from . import logs

_NICENESS = 10  # the merger thread's, above the engine's (Linux: per thread)


class ShardMerger:
    """One thread that makes the merges due whenever :meth:`request` is called (requests made
    while it merges are answered by one more round)."""

    def __init__(self, db: Path, settings: Settings):
        self.db, self.settings = Path(db), settings
        self.merges = 0  # merges made by this thread
        self._state = threading.Condition()
        self._pending = self._busy = self._stopping = False
        self._thread = threading.Thread(target=self._run, name="audiodup-merger", daemon=True)
        self._thread.start()

    def request(self) -> None:
        with self._state:
            self._pending = True
            self._state.notify_all()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Block until no merge is requested or running (False: ``timeout_s`` passed)."""
        with self._state:
            return self._state.wait_for(lambda: not (self._pending or self._busy), timeout_s)

    def close(self) -> None:
        """Stop after the merge in progress (a daemon thread: an exiting process does not wait
        for it; the folder it leaves is removed by the catalog's next write)."""
        with self._state:
            self._stopping = True
            self._state.notify_all()

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # not Linux: the default priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICENESS)
        index.set_threads(self.settings.faiss_threads)
        while True:
            with self._state:
                self._state.wait_for(lambda: self._pending or self._stopping)
                if self._stopping:
                    self._pending = False
                    self._state.notify_all()
                    return
                self._pending, self._busy = False, True
            try:
                self._merge_once()
            finally:
                with self._state:
                    self._busy = False
                    self._state.notify_all()

    def _merge_once(self) -> None:
        try:
            store = CatalogStore(self.db, self.settings, create=False, write=True)
            try:
                made = store.merge_due_shards()
            finally:
                store.close()
        except (AudiodupError, OSError) as exc:  # merging only saves look-up time
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logs.event("shards not merged", logging.WARNING, pid=os.getpid(), error=error)
            return
        except Exception:  # a bug: logged whole, and the thread stays for the next request
            logs.event("shards not merged", logging.ERROR, exc_info=True, pid=os.getpid())
            return
        if made:
            self.merges += made
            logs.event("shards merged", pid=os.getpid(), merges=made)
