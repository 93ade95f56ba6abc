"""Run one function over many inputs in worker processes, each call with a wall-clock limit.

``concurrent.futures`` cannot stop a call that hangs (a decoder stuck on a hostile file); here
every worker is a process of its own that is killed and replaced when its call runs over. Each
worker leads a process group of its own, and the whole group is killed: a decoder the call
started (ffmpeg) dies with it instead of running on, orphaned, holding its memory.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from typing import Any

from .allocator import keep_freed_memory

_POLL_S = 0.05


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start workers without re-running the caller's script in them.

    A spawned process normally imports the parent's ``__main__`` first: that fails for code read
    from stdin and re-runs scripts without an ``if __name__ == "__main__"`` guard. Workers only run
    audiodup functions, so they do not need it.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__spec__ = None
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def _serve(func: Callable[[Any], Any], conn: Connection) -> None:
    """Answer the parent's items until it says stop, or goes away (killed: the answer has
    no one to go to, and the worker ends quietly)."""
    keep_freed_memory()
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # a group of its own, for _Worker.stop to kill with its children
    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):
        conn.send(("ready", None))  # start-up (imports) does not count against a call's time
        while (item := conn.recv()) is not None:
            try:
                answer = ("ok", func(item))
            except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
                answer = ("error", f"{type(exc).__name__}: {exc}")
            try:
                conn.send(answer)
            except (EOFError, BrokenPipeError, ConnectionResetError):
                raise
            except Exception as exc:  # noqa: BLE001 - a result that cannot be sent
                conn.send(("error", f"{type(exc).__name__}: {exc}"))


class _Worker:
    def __init__(self, ctx, func):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(func, child), daemon=True)
        with _main_module_hidden():
            self.process.start()
        child.close()
        self.item: Any = None
        self.started = 0.0

    def submit(self, item: Any) -> None:
        self.item, self.started = item, time.monotonic()
        self.conn.send(item)

    def stop(self, kill: bool = False) -> None:
        if kill:
            self._kill_group()
            self.process.kill()
        else:
            with contextlib.suppress(OSError):
                self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self._kill_group()
            self.process.kill()
        self.conn.close()

    def _kill_group(self) -> None:
        """Kill the worker's process group: the worker and what it started (ffmpeg)."""
        pid = self.process.pid
        # only while the worker is not reaped: its pid, and so the group id, cannot be reused
        if pid is not None and self.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) == pid:  # not before the worker made its group
                    os.killpg(pid, signal.SIGKILL)


def map_with_timeout(
    func: Callable[[Any], Any],
    items: Iterable[Any],
    workers: int = 1,
    timeout_s: float | None = None,
) -> Iterator[tuple[Any, str, Any]]:
    """Yield ``(item, status, value)`` as calls finish (not in input order).

    ``status`` is ``"ok"`` (``value`` is the result), ``"error"`` (``value`` is a one-line
    message) or ``"timeout"``. ``func`` must be picklable (a module-level function).
    """
    ctx = mp.get_context("spawn")
    pending = list(items)[::-1]
    starting = [_Worker(ctx, func) for _ in range(max(1, min(workers, len(pending))))]
    idle: list[_Worker] = []
    busy: list[_Worker] = []

    def replace(worker: _Worker) -> None:
        worker.stop(kill=True)
        if pending:
            starting.append(_Worker(ctx, func))

    try:
        while pending or busy:
            while idle and pending:
                worker = idle.pop()
                worker.submit(pending.pop())
                busy.append(worker)
            if not busy and not starting:  # every worker failed to start
                raise RuntimeError("cannot start worker processes")
            ready = set(wait([w.conn for w in busy + starting], timeout=_POLL_S))
            for worker in [w for w in starting if w.conn in ready]:
                starting.remove(worker)
                try:
                    worker.conn.recv()
                    idle.append(worker)
                except (EOFError, OSError):
                    worker.stop(kill=True)
            now = time.monotonic()
            for worker in list(busy):
                if worker.conn in ready:
                    busy.remove(worker)
                    try:
                        status, value = worker.conn.recv()
                        idle.append(worker)
                    except (EOFError, OSError):  # the worker died (out of memory, a crash)
                        status, value = "error", "worker process died while processing the file"
                        replace(worker)
                    if timeout_s is not None and now - worker.started > timeout_s:
                        # finished, but late: the limit holds whatever the polling interval
                        status, value = "timeout", f"timed out after {timeout_s:g} s"
                    yield worker.item, status, value
                elif timeout_s is not None and now - worker.started > timeout_s:
                    busy.remove(worker)
                    replace(worker)
                    yield worker.item, "timeout", f"timed out after {timeout_s:g} s"
    finally:
        for worker in busy + starting:
            worker.stop(kill=True)
        for worker in idle:
            worker.stop()
