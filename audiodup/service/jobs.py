"""Asynchronous jobs: a long upload is answered at once with 202 and a job URL; the work runs in
the worker's engine thread and its outcome is written to ``<db>/service/jobs/<id>.json``
(atomically), so any worker process can answer a poll. A job whose worker died before it
finished is reported as failed (the client retries it; with an idempotency key the upload is
still recorded once).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ..durable import replace_file

JOB_ID = re.compile(r"[0-9a-f]{32}")
_KEEP_S = 24 * 3600.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs: it exists (signalling it is allowed or
    refused), and /proc, where it shows the process, does not call it a zombie (killed, not
    yet reaped by its parent)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: /proc may hide it (hidepid), it runs
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


_PROC = Path("/proc")


class JobStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _path(self, job_id: str) -> Path:
        if not JOB_ID.fullmatch(job_id):  # a client-named id never becomes another path
            raise ValueError("not a job id")
        return self.folder / f"{job_id}.json"

    def create(self, client: str, kind: str) -> str:
        job_id = uuid.uuid4().hex
        self._write(
            job_id,
            {
                "job_id": job_id,
                "kind": kind,
                "status": "queued",
                "client": client,
                "created_at": _now(),
                "pid": os.getpid(),
            },
        )
        return job_id

    def update(self, job_id: str, **changes) -> None:
        job = self.get(job_id) or {"job_id": job_id}
        job.update(changes, updated_at=_now())
        self._write(job_id, job)

    def get(self, job_id: str) -> dict | None:
        """The job, or None when there is no such job (or the id is malformed). A job left
        queued or running by a process that is gone is reported failed."""
        try:
            path = self._path(job_id)
            job = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            return None
        if job.get("status") in ("queued", "running") and not process_alive(int(job.get("pid", 0))):
            job.update(
                status="failed",
                http_status=503,
                error={
                    "status": 503,
                    "code": "worker_lost",
                    "message": "the worker running this job stopped; send the upload again",
                },
            )
        return job

    def _write(self, job_id: str, job: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(job_id)
        data = json.dumps(job).encode("utf-8")
        replace_file(path, lambda handle: handle.write(data), sync_data=False, sync_folder=False)

    def sweep(self, older_than_s: float = _KEEP_S) -> None:
        """Remove job files older than ``older_than_s``."""
        limit = time.time() - older_than_s
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.folder):
                if entry.name.endswith(".json") or entry.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        if entry.stat().st_mtime < limit:
                            os.unlink(entry.path)
