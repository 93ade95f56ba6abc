"""``/readyz`` against real servers started by the tests (one worker each, so every request
reaches the worker under test): 503 ``not_ready`` with the reason while a restarted worker's
catalog is still loading, while the catalog cannot be opened, and while its database is
unreadable; 200 again once the cause is gone, without a restart."""

from __future__ import annotations

import concurrent.futures
import io
import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import soundfile as sf  # noqa: E402
from service_server import READY_WAIT_S, Server, cli, start_server  # noqa: E402

from audiodup.service.jobs import process_alive  # noqa: E402
from audiodup.synth import synthesize_work  # noqa: E402


def _wav(seed: int, duration_s: float = 10.0) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, synthesize_work(seed, duration_s, 11025), 11025, format="WAV")
    return buffer.getvalue()


def _server(pristine: Path, root: Path, *, wait_ready: bool = True, damage=None):
    db = root / "db"
    shutil.copytree(pristine, db)
    key = cli("keys", "create", "k", "--scope", "admin", "--db", str(db)).stdout.strip()
    if damage is not None:
        damage(db)
    server = start_server(db, root, workers=1, wait_ready=wait_ready)
    return server, key, db


def _client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=300
    )


def _not_ready(response) -> str:
    """The reason of a 503 ``not_ready`` answer (a JSON error with the request id)."""
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (503, "not_ready"), error
    assert error["request_id"] == response.headers["x-request-id"]
    assert int(response.headers["retry-after"]) >= 1
    return error["message"]


def _poll(http: httpx.Client, path: str, until, what: str):
    """GET ``path`` until ``until(response)``; connection errors (no worker serving yet) are
    waited through."""
    deadline = time.monotonic() + READY_WAIT_S
    while True:
        try:
            response = http.get(path)
            if until(response):
                return response
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"no {what} in {READY_WAIT_S:.0f} s"
        time.sleep(0.1)


def _screen(http: httpx.Client, seed: int):
    return http.post("/v1/screen", content=_wav(seed), headers={"Content-Type": "audio/wav"})


def test_a_restarted_worker_is_not_ready_while_its_catalog_loads(pristine_catalog_dir, tmp_path):
    """``kill -9`` of the only worker, then the catalog's database locked by another process:
    the supervisor's new worker serves at once, ``/readyz`` says the catalog is still loading,
    a screening sent meanwhile waits for it (no error); once the lock goes, both succeed."""
    server, key, db = _server(pristine_catalog_dir, tmp_path)
    try:
        [worker] = server.worker_pids()
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while process_alive(worker):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # nothing has the database open now; a new worker takes over a second later at least
        # (it imports numpy and the engine first): this lock keeps its catalog from opening
        lock = sqlite3.connect(db / "catalog.sqlite", timeout=30, isolation_level=None)
        try:
            lock.execute("PRAGMA locking_mode=EXCLUSIVE")
            lock.execute("BEGIN EXCLUSIVE")
            with _client(server, key) as http, concurrent.futures.ThreadPoolExecutor(1) as pool:
                loading = _poll(http, "/readyz", lambda r: r.status_code == 503, "503")
                assert "still loading" in _not_ready(loading)
                assert http.get("/healthz").json() == {"status": "ok"}
                with _client(server, key) as other:
                    pending = pool.submit(_screen, other, 9201)
                    time.sleep(1.0)
                    assert not pending.done()  # waiting for the catalog, not refused
                    assert "still loading" in _not_ready(http.get("/readyz"))
                    lock.close()
                    screened = pending.result(timeout=READY_WAIT_S)
                assert screened.status_code == 200, screened.text
                assert screened.json()["results"][0]["verdict"] == "clean"
                ready = _poll(http, "/readyz", lambda r: r.status_code == 200, "200")
                assert ready.json() == {"status": "ready"}
        finally:
            lock.close()
        assert len(server.worker_pids()) == 1
    finally:
        server.stop()


def test_a_catalog_that_cannot_be_opened_is_not_ready_until_it_is_mended(
    pristine_catalog_dir, tmp_path
):
    """A hash shard missing at start (the supervisor's check reads only the database): the
    worker stays up, ``/readyz`` and the API answer 503 with the reason, and once the shard is
    back the worker opens the catalog by itself."""
    aside = tmp_path / "aside"
    aside.mkdir()

    def remove_a_shard(db: Path) -> None:
        shard = sorted((db / "shards").glob("h-*"))[0]
        shutil.move(shard, aside / shard.name)

    server, key, db = _server(
        pristine_catalog_dir, tmp_path, wait_ready=False, damage=remove_a_shard
    )
    try:
        with _client(server, key) as http:
            failed = _poll(
                http,
                "/readyz",
                lambda r: r.status_code == 503 and "cannot be opened" in r.text,
                "503 'cannot be opened'",
            )
            reason = _not_ready(failed)
            assert reason == "the catalog cannot be opened (the worker's log says why)"
            assert str(db) not in failed.text and "h-" not in failed.text  # no server path
            refused = _screen(http, 9202)
            assert _not_ready(refused).startswith("the catalog cannot be opened")
            assert _not_ready(http.get("/v1/uploads")).startswith("the catalog cannot be opened")
            assert http.get("/healthz").status_code == 200
            for shard in aside.iterdir():
                shutil.move(shard, db / "shards" / shard.name)
            ready = _poll(http, "/readyz", lambda r: r.status_code == 200, "200")
            assert ready.json() == {"status": "ready"}
            assert _screen(http, 9202).status_code == 200
        lines = server.log_lines()
        messages = [entry.get("message") for entry in lines]
        assert "catalog not opened" in messages and "worker ready" in messages
        errors = [e.get("error", "") for e in lines if e.get("message") == "catalog not opened"]
        assert any("h-" in error for error in errors)  # the log names the missing shard
    finally:
        server.stop()


def test_an_unreadable_catalog_database_makes_a_ready_worker_not_ready(
    pristine_catalog_dir, tmp_path
):
    """The catalog database replaced by bytes that are not a database while the worker runs:
    ``/readyz`` says so (it reads the database on a connection of its own); with the database
    back it is ready again and the catalog is intact."""
    server, key, db = _server(pristine_catalog_dir, tmp_path)
    database = db / "catalog.sqlite"
    try:
        with _client(server, key) as http:
            assert http.get("/readyz").json() == {"status": "ready"}
            os.replace(database, tmp_path / "catalog.sqlite.aside")
            database.write_bytes(b"not a database, " * 512)
            try:
                refused = http.get("/readyz")
                reason = _not_ready(refused)
                assert reason == "the catalog database cannot be read (the worker's log says why)"
                assert str(db) not in refused.text
            finally:
                os.replace(tmp_path / "catalog.sqlite.aside", database)
            assert http.get("/readyz").json() == {"status": "ready"}
            assert _screen(http, 9203).status_code == 200
        unreadable = [e for e in server.log_lines() if e.get("message") == "catalog unreadable"]
        assert unreadable and "damaged" in unreadable[0].get("error", "")
    finally:
        server.stop()
    assert cli("index", "verify", "--db", str(db)).stdout.strip().endswith("catalog OK")
