"""The edge to a Dask cluster: connecting, and waiting for results with a bound.

A Dask future whose workers have all died waits for a new worker forever; every wait here has a
bound instead, and a cluster left without workers is reported after ``no_workers_s`` (a worker
that is restarting gets that long to come back). Both raise :class:`ClusterError`, one line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import CancelledError

from .errors import (
    AudiodupError,
    ClusterDataLostError,
    ClusterError,
    SchedulerUnreachableError,
)

DEFAULT_TIMEOUT_S = 300.0  # one wait for a result: a round of a screening, one rescanned work
DEFAULT_NO_WORKERS_S = 20.0
_POLL_S = 1.0
_LOOP_RUNNER = None  # distributed.utils.LoopRunner shared by the clients connect() makes
_LOOP_LOCK = threading.Lock()
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
    return client, True


def _check_address(address: str) -> None:
    """Raise ``ValueError`` for an address without a port before a ``Client`` is made of it:
    such a client fails late, and at exit its finaliser waits 40 s and prints a traceback."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    scheme, location = parse_address(str(address))
    if scheme in ("tcp", "tls", "ws", "wss"):
        parse_host_port(location)


def require_distributed() -> None:
    """Raise a one-line ``AudiodupError`` when Dask distributed (the ``dask`` extra) is not
    installed."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise AudiodupError("--dask needs Dask distributed: pip install 'audiodup[dask]'") from None


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
    itself, a task whose workers kept dying as a :class:`ClusterError`."""
    _wait(client, futures, "ALL_COMPLETED", timeout_s, no_workers_s, what)
    return [result(future) for future in futures]


def scatter(client, data, no_workers_s: float = DEFAULT_NO_WORKERS_S, **options):
    """``client.scatter(data, **options)``; a cluster without workers for ``no_workers_s`` is
    a :class:`ClusterError`. A worker lost while the data goes to it (a closed connection) is
    retried on the workers left, for as long."""
    deadline = time.monotonic() + no_workers_s
    while True:
        try:
            return client.scatter(data, timeout=no_workers_s, **options)
        except TimeoutError:
            raise ClusterError(
                f"the Dask cluster has had no workers for {no_workers_s:g} s; "
                "nothing can be screened (start workers and try again)"
            ) from None
        except OSError:  # distributed's CommClosedError: that worker just went away
            if time.monotonic() >= deadline:
                raise ClusterError(
                    "the Dask workers could not be sent a query (each went away as it was sent)"
                ) from None
            time.sleep(_POLL_S)


def result(future):
    """A finished future's result (its own error raised; a lost one as :class:`ClusterError`,
    :class:`ClusterDataLostError` when the data it needed was lost)."""
    from distributed import KilledWorker

    try:
        return future.result()  # done: no wait
    except KilledWorker as exc:
        raise ClusterError(f"Dask workers kept dying while computing {exc.args[0]}") from None
    except CancelledError:
        raise ClusterDataLostError(_CANCELLED) from None


def _wait(client, futures: list, return_when: str, timeout_s, no_workers_s, what) -> set:
    from distributed import wait

    start = time.monotonic()
    without_workers_since = None
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= timeout_s:
            raise ClusterError(f"the Dask cluster gave no {what} within {timeout_s:g} s")
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
        if worker_count(client) == 0:
            without_workers_since = without_workers_since or time.monotonic()
            if time.monotonic() - without_workers_since >= no_workers_s:
                raise ClusterError(
                    f"the Dask cluster has had no workers for {no_workers_s:g} s; "
                    f"no {what} can come (start workers and try again)"
                )
        else:
            without_workers_since = None


def worker_count(client) -> int | None:
    """Workers the scheduler knows of (None: it did not answer within a second)."""
    try:
        return len(client.sync(client.scheduler.ncores, callback_timeout=_POLL_S))
    except Exception:  # noqa: BLE001 - an unreachable scheduler: the overall bound decides
        return None
