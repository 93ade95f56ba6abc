"""A real ``audiodup serve`` for tests: a subprocess on 127.0.0.1 and a free port, with the
test's PYTHONPATH, waited for (generously) until ``/readyz`` answers, stopped at the end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

READY_WAIT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``audiodup ARGS`` in a subprocess (the way another process changes the catalog)."""
    done = subprocess.run(
        [sys.executable, "-m", "audiodup", *args], capture_output=True, text=True, timeout=600
    )
    if check and done.returncode != 0:
        raise AssertionError(f"audiodup {' '.join(args)}: {done.returncode}\n{done.stderr}")
    return done


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    db: Path
    log: Path
    keys: dict[str, str] = field(default_factory=dict)

    def client(self, key: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=300.0, **kwargs)

    def log_lines(self) -> list[dict]:
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):  # JSON lines; the CLI's own warnings are plain text
                lines.append(json.loads(line))
        return lines

    def worker_pids(self) -> list[int]:
        """Worker processes that said they are ready, still alive."""
        pids = []
        for entry in self.log_lines():
            pid = entry.get("pid")
            if entry.get("message") == "worker ready" and pid not in pids and _alive(pid):
                pids.append(pid)
        return pids

    def wait_ready(self, workers: int = 1) -> None:
        """Until ``/readyz`` answers and ``workers`` worker processes said they are ready."""
        deadline = time.monotonic() + READY_WAIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server stopped:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
                if ready and len(self.worker_pids()) >= workers:
                    return
            time.sleep(0.2)
        raise AssertionError(f"the server was not ready in time:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)


def _alive(pid) -> bool:
    """The process runs (a killed one that its parent has not reaped yet is a zombie: gone)."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, TypeError, ValueError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def start_server(db: Path, workdir: Path, *, workers: int = 2, toml: str = "") -> Server:
    """Start ``audiodup serve --db DB`` with ``toml`` as its config file; wait until ready."""
    config = workdir / "audiodup.toml"
    config.write_text(toml)
    port = free_port()
    log = workdir / f"server-{port}.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "audiodup",
                "serve",
                "--db",
                str(db),
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--config",
                str(config),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", db, log)
    try:
        server.wait_ready(workers)
    except BaseException:
        server.stop()
        raise
    return server
