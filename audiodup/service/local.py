"""A local ``audiodup serve`` in a subprocess: started on 127.0.0.1 and a free port, waited for
until ``/readyz`` answers and every worker said it is ready, stopped with SIGTERM. The service
tests (``tests/service_server.py``) and ``benchmarks.service_load`` both use it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .jobs import process_alive


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalServer:
    process: subprocess.Popen
    url: str
    db: Path
    log: Path
    started: float  # time.perf_counter() before the process was started
    ready_s: float = 0.0  # seconds from the start until ready
    keys: dict[str, str] = field(default_factory=dict)  # API keys by holder, for clients

    def client(self, key: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=300.0, **kwargs)

    def log_lines(self) -> list[dict]:
        """The JSON log lines (the CLI's own warnings are plain text, left out)."""
        return [
            json.loads(line)
            for line in self.log.read_text(errors="replace").splitlines()
            if line.startswith("{")
        ]

    def worker_pids(self) -> list[int]:
        """Worker processes that said they are ready, still alive."""
        pids = []
        for entry in self.log_lines():
            pid = entry.get("pid")
            ready = entry.get("message") == "worker ready" and isinstance(pid, int)
            if ready and pid not in pids and process_alive(pid):
                pids.append(pid)
        return pids

    def wait_ready(self, workers: int, timeout_s: float) -> None:
        """Until ``/readyz`` answers and ``workers`` workers said they are ready; sets
        ``ready_s``. Raises ``RuntimeError`` (with the log's end) if the server stops or
        ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server stopped:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
                if ready and len(self.worker_pids()) >= workers:
                    self.ready_s = time.perf_counter() - self.started
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the server was not ready in time:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout_s: float = 120.0) -> None:
        """SIGTERM (workers finish their requests), then SIGKILL of the whole group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)


def start_local_server(
    db: Path,
    log: Path,
    *,
    workers: int = 2,
    config: Path | None = None,
    ready_wait_s: float = 300.0,
    preexec_fn: Callable[[], None] | None = None,
    wait_ready: bool = True,
) -> LocalServer:
    """Start ``audiodup serve --db DB`` (its output appended to ``log``) and wait until ready
    (unless not ``wait_ready``); the server is stopped again if it does not get ready.
    ``preexec_fn`` runs in the child before the server starts (e.g. to set a resource
    limit)."""
    port = free_port()
    command = [sys.executable, "-m", "audiodup", "serve", "--db", str(db), "--port", str(port)]
    command += ["--workers", str(workers)]
    if config is not None:
        command += ["--config", str(config)]
    started = time.perf_counter()
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    server = LocalServer(process, f"http://127.0.0.1:{port}", Path(db), Path(log), started)
    if not wait_ready:
        return server
    try:
        server.wait_ready(workers, ready_wait_s)
    except BaseException:
        server.stop()
        raise
    return server
