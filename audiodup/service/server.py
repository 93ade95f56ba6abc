"""Starting the service: check the catalog, then run uvicorn's multiprocess supervisor with
``config.workers`` worker processes (even one: the supervisor replaces a worker that dies).
Each worker builds the application from the config handed over in the environment, opens the
catalog once and serves from one shared listening socket."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence

from ..catalog import Catalog
from ..dask_client import require_distributed
from ..errors import AudiodupError
from ..results import path_text, shown_text
from . import metrics
from .auth import KeyFile
from .config import CONFIG_ENV, ServiceConfig, unknown_environment
from .logs import event, log_config


def check(config: ServiceConfig) -> list[str]:
    """Refuse to start without a readable catalog (with ``dask``: split into shard groups, and
    Dask installed); warnings (one line each) otherwise."""
    with Catalog.open(config.db, create=False) as catalog:
        if config.dask is not None:
            from ..sharded import require_split

            require_split(catalog.store)
            require_distributed()
    found = [
        f"{shown_text(name)} is no setting and is ignored (settings: AUDIODUP_ + a key of the "
        "config file, upper-case)"
        for name in unknown_environment()
    ]
    keys = [r for r in KeyFile(config.keys_path).records() if r.revoked_at is None]
    if not keys:
        found.append("no API key yet: every /v1 request will get 401 ('audiodup keys create')")
    if config.keys_path.exists() and config.keys_path.stat().st_mode & 0o022:
        found.append(
            f"the key file {path_text(config.keys_path)} can be written by other users: "
            "anyone who can write it can add a key (chmod 600)"
        )
    return found


def run(config: ServiceConfig, warnings: Sequence[str] = ()) -> None:
    """Serve until interrupted (SIGINT or SIGTERM stop the workers gracefully); ``warnings``
    (:func:`check`'s) are logged first, as JSON lines like every other."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    metrics_dir = tempfile.mkdtemp(prefix="audiodup-metrics-")
    os.environ[metrics.MULTIPROC_ENV] = metrics_dir
    os.environ[CONFIG_ENV] = config.to_json()
    try:
        server_config = uvicorn.Config(
            "audiodup.service.app:app_from_environment",
            factory=True,
            host=config.host,
            port=config.port,
            workers=config.workers,
            log_config=log_config(config.log_level),
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=30,
            # a new worker imports numpy, FAISS and the engine before it can answer the
            # supervisor's health check: at uvicorn's default 5 s a busy machine saw new
            # workers killed as hung and started again (13 s to ready instead of 7)
            timeout_worker_healthcheck=60,
        )
        for warning in warnings:  # after uvicorn.Config: the log is configured by now
            event(warning, logging.WARNING)
        listening = listening_socket(config.host, config.port)
        host = f"[{config.host}]" if ":" in config.host else config.host
        event("listening", address=f"http://{host}:{listening.getsockname()[1]}")
        Multiprocess(server_config, sockets=[listening]).run()
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(metrics_dir)


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket the workers share, bound to ``host:port`` (as uvicorn binds it); a port in
    use or an address not allowed is an :class:`AudiodupError` that names them (one line and
    exit code 2, not uvicorn's exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        raise AudiodupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    listening.set_inheritable(True)
    return listening
