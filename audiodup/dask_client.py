"""The edge to a Dask cluster: connecting, and waiting for results with a bound.

A Dask future whose workers have all died waits for a new worker forever, and fetching a result
from a worker that is frozen (connected, never answering) waits until the scheduler drops it
(minutes); every wait here has a bound instead, fetching included, and a cluster left without
workers is reported after ``no_workers_s`` (a worker that is restarting gets that long to come
back), counted once per client however many threads wait on it. Both raise
:class:`ClusterError`, one line.

On Python 3.11 a worker's sampling profiler can freeze the whole worker process for good: its
``sys._current_frames()`` may start a garbage collection while it holds the interpreter's
thread-list lock, which a task thread taking the GIL back after C code (a decoder's read)
needs (CPython gh-106883). Distributed already leaves its event-loop
profiler off on 3.11; every client made here also stops the workers' task profiler there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from concurrent.futures import CancelledError

from .errors import (
    AudiodupError,
    ClusterDataLostError,
    ClusterError,
    SchedulerUnreachableError,
    WorkersCannotOpenCatalogError,
)

DEFAULT_TIMEOUT_S = 300.0  # one wait for a result: a round of a screening, one rescanned work
DEFAULT_NO_WORKERS_S = 20.0
_POLL_S = 1.0
_CLOSE_S = 5.0  # closing a client: best effort, the command's outcome is already decided
_STALE_S = 5.0  # an empty cluster not looked at for this long is counted again from now
# per client: since when its cluster has had no workers, and when that was last seen
_EMPTY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_EMPTY_LOCK = threading.Lock()
_DASK_LOGGERS = (
    "distributed",
    "distributed.client",
    "distributed.gc",
    "bokeh",
    "tornado",
    "tornado.application",
)
_LOOP_RUNNER = None  # distributed.utils.LoopRunner shared by the clients connect() makes
_LOOP_LOCK = threading.Lock()
_PLUGIN_S = 10.0  # registering the worker plugin: best effort, every later wait has its bound
# the Python versions whose sys._current_frames() can deadlock a threaded process (gh-106883), as
# distributed itself judges them for its event-loop profiler
_SAMPLING_CAN_DEADLOCK = sys.version_info[:2] == (3, 11)
_CANCELLED = (
    "a Dask task was cancelled (a worker holding its data was lost, or the scheduler went away)"
)


def connect(address_or_client, timeout_s: float = 30.0):
    """``(client, own)``: a ``distributed.Client`` for a scheduler address (``own``: the caller
    closes it), or the client it was given. Clients made here share one event-loop thread: a
    client that fails to connect leaves its own loop's thread and sockets behind, and a service
    tries again every few seconds while its scheduler is away."""
    require_distributed()
    from distributed import Client

    if isinstance(address_or_client, Client):
        _stop_task_sampling(address_or_client)
        return address_or_client, False
    try:
        _check_address(address_or_client)
        client = Client(
            address_or_client, set_as_default=False, timeout=timeout_s, loop=_shared_loop()
        )
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerUnreachableError(
            f"cannot reach the Dask scheduler {address_or_client!r}: {exc}"
        ) from None
    _stop_task_sampling(client)
    return client, True


def _stop_task_sampling(client) -> None:
    """Have every worker of ``client``'s cluster, now and later, stop sampling its task threads'
    stacks where that can deadlock it (see the module's notes). Best effort, within
    ``_PLUGIN_S``: a worker that does not answer now is bounded by every later wait."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class NoTaskSampling(WorkerPlugin):
        idempotent = True

        def setup(self, worker) -> None:
            stop_task_sampling(worker)

    with contextlib.suppress(Exception):
        client.sync(
            client._register_worker_plugin,  # Client.register_plugin, whose wait has no bound
            plugin=NoTaskSampling(),
            name="audiodup-no-task-sampling",
            idempotent=True,
            callback_timeout=_PLUGIN_S,
        )


def stop_task_sampling(worker) -> bool:
    """Stop ``worker``'s task profiler on a Python where it can deadlock the process; whether
    it is stopped."""
    if not _SAMPLING_CAN_DEADLOCK:
        return False
    for name in ("profile", "profile-cycle"):
        callback = worker.periodic_callbacks.pop(name, None)
        if callback is not None:
            callback.stop()
    return True


def _check_address(address: str) -> None:
    """Raise ``ValueError`` for an address of an unknown scheme (``http://``, a pasted
    dashboard address, a typo) or without a port before a ``Client`` is made of it: such a
    client fails late, and at exit its finaliser waits 40 s and prints a traceback."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port
    from distributed.comm.registry import get_backend

    scheme, location = parse_address(str(address))
    get_backend(scheme)
    if scheme in ("tcp", "tls", "ws", "wss"):
        parse_host_port(location)


def require_distributed() -> None:
    """Raise a one-line ``AudiodupError`` when Dask distributed (the ``dask`` extra) is not
    installed."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise AudiodupError("--dask needs Dask distributed: pip install 'audiodup[dask]'") from None


def close(client, timeout_s: float = _CLOSE_S) -> None:
    """Close ``client``, waiting at most ``timeout_s`` (a scheduler that does not answer)."""
    # best effort: what the command found is already decided
    with contextlib.suppress(Exception):
        client.close(timeout=timeout_s)


def quiet_logs(to: logging.Handler | None = None) -> None:
    """Keep Dask's own log lines (``Couldn't gather 1 keys, rescheduling``, ``Failed to
    reconnect to scheduler``) off stderr, or send them to handler ``to`` (the service's log):
    a command says what went wrong in its one line. For the CLI and the service only; a library
    user's logging is left alone."""
    import dask
    import distributed  # noqa: F401 - its import gives its loggers their stderr handlers

    # the loggers distributed gives a handler (distributed.config): its defaults and the
    # config's (named, not listed: other threads may be making loggers meanwhile)
    named = dask.config.get("logging", {})
    for name in _DASK_LOGGERS + tuple(k for k, v in named.items() if isinstance(v, str | int)):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        if not logger.propagate:  # not logging's last resort, stderr
            logger.addHandler(to or logging.NullHandler())


def on_worker() -> bool:
    """Whether this code runs in a task on a Dask worker."""
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


def catalog_unseen(root, cause: Exception) -> WorkersCannotOpenCatalogError:
    """The error of a worker that cannot open the catalog at ``root``: it does not see that
    folder, or ``cause`` says what is wrong with what it sees there."""
    if _visible(root):
        return WorkersCannotOpenCatalogError(
            f"the Dask workers cannot open the catalog at {root}: {cause}"
        )
    return WorkersCannotOpenCatalogError(
        f"the Dask workers cannot open the catalog at {root}: they must see it at the same "
        "absolute path as this machine (a shared file system)"
    )


def _visible(root) -> bool:
    return os.path.isdir(root)


def _shared_loop():
    """The event loop of every client :func:`connect` makes, run by one daemon thread."""
    global _LOOP_RUNNER
    with _LOOP_LOCK:
        if _LOOP_RUNNER is None:
            from distributed.utils import LoopRunner

            runner = LoopRunner(asynchronous=False)
            runner.start()
            _LOOP_RUNNER = runner
        return _LOOP_RUNNER.loop


def is_closed(client) -> bool:
    """Whether ``client`` has closed for good (its scheduler was away longer than it waits to
    reconnect): it answers nothing any more."""
    return getattr(client, "status", None) in ("closing", "closed")


def wait_first(
    client,
    futures: Iterable,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    no_workers_s: float = DEFAULT_NO_WORKERS_S,
    what: str = "a result",
) -> set:
    """The futures done once at least one of ``futures`` is (finished, failed or cancelled)."""
    return _wait(client, list(futures), "FIRST_COMPLETED", timeout_s, no_workers_s, what)


def gather(
    client,
    futures: list,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    no_workers_s: float = DEFAULT_NO_WORKERS_S,
    what: str = "results",
) -> list:
    """The results of ``futures``, in order, once all are done; a task's own error is raised as
    itself, a task whose workers kept dying as a :class:`ClusterError`. The results are
    fetched within what is left of ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    _wait(client, futures, "ALL_COMPLETED", timeout_s, no_workers_s, what)
    return [result(future, deadline - time.monotonic(), what, timeout_s) for future in futures]


def scatter(
    client,
    data,
    no_workers_s: float = DEFAULT_NO_WORKERS_S,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **options,
):
    """``client.scatter(data, **options)`` within ``timeout_s``; a cluster without workers for
    ``no_workers_s`` is a :class:`ClusterError`. A worker lost while the data goes to it (a
    closed connection) is retried on the workers left, within the same bound."""
    start = time.monotonic()
    while True:
        find_s = max(_POLL_S, no_workers_s - _empty_for(client))  # the scheduler seeks workers
        called = time.monotonic()
        try:
            return client.sync(
                client._scatter,  # Client.scatter, whose sending has no bound
                data,
                timeout=find_s,
                callback_timeout=max(_POLL_S, timeout_s - (called - start)),
                **options,
            )
        except TimeoutError:
            if time.monotonic() - called >= find_s and worker_count(client) == 0:
                raise ClusterError(
                    f"the Dask cluster has had no workers for {no_workers_s:g} s; "
                    "nothing can be screened (start workers and try again)"
                ) from None
        except OSError:  # distributed's CommClosedError: that worker just went away
            pass
        if time.monotonic() - start >= timeout_s:
            # a frozen worker (connected, never answering) and one that left look alike here
            raise ClusterError(
                f"the Dask workers could not be sent a query within {timeout_s:g} s (the "
                "worker it was sent to went away or does not answer)"
            )
        time.sleep(_POLL_S)


def result(
    future,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    what: str = "result",
    bound_s: float | None = None,
):
    """A finished future's result, fetched within ``timeout_s`` (at least a poll; ``bound_s``:
    the bound the message names, ``timeout_s`` by default): done, its data may still sit on a
    frozen worker, or be computed again elsewhere. Its own error is raised; a lost one as
    :class:`ClusterError`, :class:`ClusterDataLostError` when the data it needed was lost."""
    from distributed import KilledWorker

    try:
        return future.result(timeout=max(_POLL_S, timeout_s))
    except TimeoutError:
        bound = timeout_s if bound_s is None else bound_s
        raise ClusterError(f"the Dask cluster gave no {what} within {bound:g} s") from None
    except KilledWorker as exc:
        raise ClusterError(f"Dask workers kept dying while computing {exc.args[0]}") from None
    except CancelledError:
        raise ClusterDataLostError(_CANCELLED) from None


def _wait(client, futures: list, return_when: str, timeout_s, no_workers_s, what) -> set:
    from distributed import wait

    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= timeout_s:
            raise ClusterError(f"the Dask cluster gave no {what} within {timeout_s:g} s")
        # another thread found the cluster empty long enough: one look to confirm, no waiting
        if _empty_for(client) >= no_workers_s and _empty_now(client) >= no_workers_s:
            raise _no_workers(no_workers_s, what)
        try:
            with client.as_current():  # wait() asks for the current client
                done, _ = wait(
                    futures, timeout=min(_POLL_S, timeout_s - elapsed), return_when=return_when
                )
            return done
        except TimeoutError:
            pass
        except CancelledError:  # distributed's FuturesCancelledError
            raise ClusterDataLostError(_CANCELLED) from None
        if _empty_now(client) >= no_workers_s:
            raise _no_workers(no_workers_s, what)


def _no_workers(no_workers_s: float, what: str) -> ClusterError:
    return ClusterError(
        f"the Dask cluster has had no workers for {no_workers_s:g} s; "
        f"no {what} can come (start workers and try again)"
    )


def _empty_now(client) -> float:
    """Ask the scheduler; the seconds ``client``'s cluster has been without workers."""
    return _seen_empty(client, worker_count(client))


def _seen_empty(client, workers: int | None) -> float:
    """Record what a poll of ``client``'s cluster found (``workers``); the seconds it has been
    without workers (0 while it has some). One clock per client: the threads that wait on one
    cluster give up together, not each after its own ``no_workers_s`` (nor one after another,
    queued behind a lock)."""
    now = time.monotonic()
    with _EMPTY_LOCK:
        if workers != 0:
            _EMPTY.pop(client, None)
            return 0.0
        since, last = _EMPTY.get(client, (now, now))
        if now - last > _STALE_S:  # nobody looked meanwhile: workers may have come and gone
            since = now
        _EMPTY[client] = (since, now)
        return now - since


def _empty_for(client) -> float:
    """How long ``client``'s cluster has been seen without workers, as last polled (0: it was
    not, or not lately)."""
    now = time.monotonic()
    with _EMPTY_LOCK:
        since, last = _EMPTY.get(client, (now, now))
    return 0.0 if now - last > _STALE_S else now - since


def nthreads(client, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, int]:
    """Each worker's thread count by address, as the scheduler answers within ``timeout_s``."""
    try:
        return client.sync(client.scheduler.ncores, callback_timeout=timeout_s)
    except OSError:  # a timeout, or a connection to it closed
        raise ClusterError(f"the Dask scheduler gave no answer within {timeout_s:g} s") from None


def worker_count(client) -> int | None:
    """Workers the scheduler knows of (None: it did not answer within a second)."""
    try:
        return len(client.sync(client.scheduler.ncores, callback_timeout=_POLL_S))
    except Exception:  # noqa: BLE001 - an unreachable scheduler: the overall bound decides
        return None
