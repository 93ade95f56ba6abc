"""Shard merges of a worker's catalog, made in a child process.

Each upload the service records adds a shard, and past ``max_shards`` the catalog merges some
(:meth:`audiodup.store.CatalogStore.merge_due_shards`). A merge of a large catalog's shards
takes minutes of CPU and hundreds of MB to GBs of memory. Made in the engine thread after the
commit, it would hold every queued screening for that long. Made in a thread beside the engine,
it shared the worker's interpreter lock with screening and added its memory to the worker's
(``benchmarks/SERVICE.md``). So a thread of the worker only asks whether a merge is due (a
snapshot read of the catalog) and, when one is, runs ``python -m audiodup.service.merger`` in a
child process at a lower priority, FAISS in it on one core. The child holds the catalog's
writer lock only to plan and to put the merge in place, so the engine's next commit waits
seconds, not minutes. A child that dies leaves the catalog as it was (the next write removes
its folder); one still running when the worker stops is stopped with it, and one whose worker
was killed outright finishes its merge alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from ..errors import AudiodupError
from ..settings import Settings
from ..store import CatalogStore
from . import logs

_NICENESS = 10  # the merging child's, above the worker's


class ShardMerger:
    """One thread that makes the merges due, in a child process, whenever :meth:`request` is
    called (requests made while it merges are answered by one more round)."""

    def __init__(self, db: Path, settings: Settings):
        self.db, self.settings = Path(db), settings
        self.merges = 0  # merges made by this merger's children
        self.children: list[int] = []  # the process ids of the children it ran
        self._state = threading.Condition()
        self._pending = self._busy = self._stopping = False
        self._child: subprocess.Popen | None = None
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
        """Stop: a merge in progress is stopped with its child (the folder it leaves is removed
        by the catalog's next write)."""
        with self._state:
            self._stopping = True
            if self._child is not None and self._child.poll() is None:
                with contextlib.suppress(OSError):
                    self._child.terminate()
            self._state.notify_all()

    def _run(self) -> None:
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
            if not self._merge_due():
                return
            made = self._merge_in_child()
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

    def _merge_due(self) -> bool:
        store = CatalogStore(self.db, self.settings, create=False, write=False)
        try:
            return store.due_merge_run() is not None
        finally:
            store.close()

    def command(self) -> list[str]:
        """The child's command line (:func:`main`); it reads the settings on stdin."""
        return [sys.executable, "-m", __name__, str(self.db)]

    def _merge_in_child(self) -> int:
        """Run the due merges in a child process; how many it made."""
        with self._state:
            if self._stopping:
                return 0
            self._child = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_child_environment(),
            )
            child = self._child
        self.children.append(child.pid)
        out, err = child.communicate(self.settings.to_json())
        with self._state:
            self._child, stopped = None, self._stopping
        if child.returncode != 0:
            if stopped:
                return 0
            lines = err.strip().splitlines() or [
                f"the merging process ended with {child.returncode}"
            ]
            raise AudiodupError(lines[-1])
        try:  # the last line: a library may have printed before it
            return int(json.loads(out.strip().splitlines()[-1])["merges"])
        except (IndexError, KeyError, TypeError, ValueError):
            raise AudiodupError(f"the merging process answered {out.strip()[-200:]!r}") from None


def _child_environment() -> dict[str, str]:
    """This environment, with this copy of audiodup first on the child's import path."""
    package_parent = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_parent, *([path] if path else [])]),
    }


def merge_in_this_process(db: Path, settings: Settings) -> int:
    """The child's work: the catalog's due merges, at a lower priority, FAISS on one core."""
    from .. import index
    from ..allocator import keep_freed_memory

    with contextlib.suppress(OSError, AttributeError):  # not POSIX: the default priority
        os.nice(_NICENESS)
    keep_freed_memory()
    index.set_threads(settings.faiss_threads)
    store = CatalogStore(db, settings, create=False, write=True)
    try:
        return store.merge_due_shards()
    finally:
        store.close()


def main(argv: list[str]) -> int:
    """``python -m audiodup.service.merger DB`` with the catalog's settings (JSON) on stdin:
    prints ``{"merges": N}``; an error is one line on stderr and exit status 1."""
    try:
        settings = Settings.from_json(sys.stdin.read())
        made = merge_in_this_process(Path(argv[0]), settings)
    except (AudiodupError, OSError, ValueError, IndexError) as exc:
        print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, file=sys.stderr)
        return 1
    print(json.dumps({"merges": made}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
