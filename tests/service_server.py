"""A real ``audiodup serve`` for tests (:mod:`audiodup.service.local`): a subprocess on
127.0.0.1 and a free port, with the test's PYTHONPATH, waited for (generously) until
``/readyz`` answers, stopped at the end."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from audiodup.service.local import LocalServer as Server
from audiodup.service.local import free_port, start_local_server

READY_WAIT_S = 180.0

__all__ = ["READY_WAIT_S", "Server", "cli", "free_port", "start_server"]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``audiodup ARGS`` in a subprocess (the way another process changes the catalog)."""
    done = subprocess.run(
        [sys.executable, "-m", "audiodup", *args], capture_output=True, text=True, timeout=600
    )
    if check and done.returncode != 0:
        raise AssertionError(f"audiodup {' '.join(args)}: {done.returncode}\n{done.stderr}")
    return done


def start_server(
    db: Path,
    workdir: Path,
    *,
    workers: int = 2,
    toml: str = "",
    preexec_fn=None,
    wait_ready: bool = True,
) -> Server:
    """Start ``audiodup serve --db DB`` with ``toml`` as its config file; wait until ready
    (unless not ``wait_ready``)."""
    config = workdir / "audiodup.toml"
    config.write_text(toml)
    log = workdir / f"server-{time.monotonic_ns()}.log"
    return start_local_server(
        db,
        log,
        workers=workers,
        config=config,
        ready_wait_s=READY_WAIT_S,
        preexec_fn=preexec_fn,
        wait_ready=wait_ready,
    )
