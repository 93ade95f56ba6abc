"""Shard merges of a worker's catalog, made in a child process.

Each upload the service records adds a shard, and past ``max_shards`` the catalog merges some
(:meth:`audiodup.store.CatalogStore.merge_due_shards`). A merge of a large catalog's shards
takes minutes of CPU and hundreds of MB to GBs of memory. Made in the engine thread after the
commit, it would hold every queued screening for that long. Made in a thread beside the engine,
it shared the worker's interpreter lock with screening and added its memory to the worker's
(``benchmarks/SERVICE.md``). So a thread of the worker only asks whether a merge is due (a
snapshot read of the catalog) and, when one is, asks a child process for it: ``python -m
audiodup.service.merger``, at a lower priority, FAISS in it on one core, started at the first
due merge and kept for the next ones (its start-up, about 0.45 CPU-s of imports, would
otherwise cost more than a small catalog's merges). The child holds the catalog's writer lock
only to plan and to put a merge in place, so the engine's next commit waits seconds, not
minutes. A child that dies or fails leaves the catalog as it was (the next write removes its
folder) and is replaced at the next due merge; it is stopped with the worker, and one whose
worker was killed outright finishes its merge alone (it ends when its input closes).
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
        self.children: list[int] = []  # the process ids of the children it started
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
        """Stop, and the child with it: a merge in progress stops there (the folder it leaves
        is removed by the catalog's next write)."""
        with self._state:
            self._stopping = True
            child, self._child = self._child, None
            self._state.notify_all()
        _stop(child)

    def command(self) -> list[str]:
        """The child's command line (:func:`main`)."""
        return [sys.executable, "-m", __name__, str(self.db)]

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

    def _merge_in_child(self) -> int:
        """Ask the child (started if there is none) for the due merges; how many it made. A
        child that answers with an error, or not at all, is stopped."""
        with self._state:
            if self._stopping:
                return 0
            if self._child is None or self._child.poll() is not None:
                self._child = self._start_child()
            child = self._child
        answer = ""
        with contextlib.suppress(OSError, ValueError):  # a child gone or stopped: no answer
            child.stdin.write("merge\n")
            child.stdin.flush()
            answer = child.stdout.readline()
        try:
            made = int(json.loads(answer)["merges"])
        except (KeyError, TypeError, ValueError):
            made = None
        if made is not None:
            return made
        with self._state:
            stopped = self._stopping
            if self._child is child:
                self._child = None
        _stop(child)
        if stopped:
            return 0
        error = _answered_error(answer) or f"the merging process ended ({child.returncode})"
        raise AudiodupError(error)

    def _start_child(self) -> subprocess.Popen:
        child = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # it answers on stdout, errors included
            text=True,
            env=_child_environment(),
        )
        self.children.append(child.pid)
        with contextlib.suppress(OSError):  # a child that did not start answers nothing
            child.stdin.write(self.settings.to_json() + "\n")
            child.stdin.flush()
        return child


def _answered_error(answer: str) -> str | None:
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return str(json.loads(answer)["error"])
    return None


def _stop(child: subprocess.Popen | None) -> None:
    """Stop ``child`` and reap it."""
    if child is None:
        return
    with contextlib.suppress(OSError):
        child.terminate()
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        child.wait(timeout=10)
    for stream in (child.stdin, child.stdout):
        with contextlib.suppress(OSError):
            stream.close()


def _child_environment() -> dict[str, str]:
    """This environment, with this copy of audiodup first on the child's import path."""
    package_parent = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_parent, *([path] if path else [])]),
    }


def merge_in_this_process(db: Path, settings: Settings) -> int:
    """One round of the child's work: the catalog's due merges."""
    store = CatalogStore(db, settings, create=False, write=True)
    try:
        return store.merge_due_shards()
    finally:
        store.close()


def main(argv: list[str], answers=None) -> int:
    """``python -m audiodup.service.merger DB``: the catalog's settings (JSON) on the first line
    of stdin, then one line ``merge`` per round, each answered on stdout by ``{"merges": N}``
    or ``{"error": "..."}`` (one line); runs at a lower priority, FAISS on one core, until its
    input closes. ``answers``: where the answers go (by default stdout)."""
    from .. import index
    from ..allocator import keep_freed_memory

    answers = answers or sys.stdout
    try:
        settings = Settings.from_json(sys.stdin.readline())
    except (TypeError, ValueError) as exc:
        print(json.dumps({"error": f"no settings: {exc}"}), file=answers, flush=True)
        return 1
    with contextlib.suppress(OSError, AttributeError):  # not POSIX: the default priority
        os.nice(_NICENESS)
    keep_freed_memory()
    index.set_threads(settings.faiss_threads)
    for line in sys.stdin:
        if line.strip() != "merge":
            continue
        try:
            answer = {"merges": merge_in_this_process(Path(argv[0]), settings)}
        except (AudiodupError, OSError, IndexError) as exc:
            answer = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        except Exception as exc:  # a bug: named in the answer; the worker logs it
            answer = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        try:
            print(json.dumps(answer), file=answers, flush=True)
        except BrokenPipeError:  # the worker is gone (killed outright); the merge is made
            os.dup2(os.open(os.devnull, os.O_WRONLY), answers.fileno())  # nothing to flush
            return 0
    return 0


def _answer_stream():
    """The answers' own copy of stdout; what a library prints goes to stderr instead, so it
    cannot pass for an answer."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return answers


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:], _answer_stream()))
