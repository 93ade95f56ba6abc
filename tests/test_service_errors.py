"""The service's 503, 507 and 400 answers, against real servers started by the tests (each with
the configuration that makes the condition happen): a worker whose engine queue is full, a
disk that cannot take the upload, a body that stops short."""

from __future__ import annotations

import io
import resource
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import soundfile as sf  # noqa: E402
from service_server import Server, cli, start_server  # noqa: E402

from audiodup.synth import synthesize_work  # noqa: E402


def _wav(seed: int, duration_s: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, synthesize_work(seed, duration_s, 11025), 11025, format="WAV")
    return buffer.getvalue()


def _server(pristine: Path, root: Path, toml: str, preexec_fn=None) -> tuple[Server, str]:
    db = root / "db"
    shutil.copytree(pristine, db)
    key = cli("keys", "create", "k", "--scope", "admin", "--db", str(db)).stdout.strip()
    return start_server(db, root, workers=1, toml=toml, preexec_fn=preexec_fn), key


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert (body["status"], body["code"]) == (status, code), body
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_a_worker_with_a_full_queue_answers_503_busy(pristine_catalog_dir, tmp_path):
    """``max_queue = 1``: while an asynchronous job screens, a second request is refused at
    once with 503 and ``Retry-After``, and served again once the job is done."""
    server, key = _server(pristine_catalog_dir, tmp_path, "max_queue = 1\n")
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=300
        ) as http:
            job = http.post(
                "/v1/screen?mode=async",
                content=_wav(9101, 600.0),  # ~1 CPU-s of screening: the queue stays full
                headers={"Content-Type": "audio/wav"},
            )
            assert job.status_code == 202, job.text
            busy = http.post(
                "/v1/screen", content=_wav(9102, 10.0), headers={"Content-Type": "audio/wav"}
            )
            _error(busy, 503, "busy")
            assert int(busy.headers["retry-after"]) >= 1
            deadline = time.monotonic() + 300
            while http.get(job.json()["url"]).json()["status"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            again = http.post(
                "/v1/screen", content=_wav(9102, 10.0), headers={"Content-Type": "audio/wav"}
            )
            assert again.status_code == 200, again.text
    finally:
        server.stop()


FILE_SIZE_LIMIT = 3 * 1024 * 1024


def _limit_file_size() -> None:
    # a file can grow to 3 MiB at most: a larger write fails with EFBIG (Python ignores
    # SIGXFSZ), as a full disk or quota fails it with ENOSPC / EDQUOT
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_an_upload_that_cannot_be_stored_answers_507(pristine_catalog_dir, tmp_path):
    server, key = _server(pristine_catalog_dir, tmp_path, "", preexec_fn=_limit_file_size)
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=300
        ) as http:
            large = _wav(9103, 200.0)  # 4.4 MB
            assert len(large) > FILE_SIZE_LIMIT
            for path in ("/v1/screen", "/v1/uploads"):
                response = http.post(path, content=large, headers={"Content-Type": "audio/wav"})
                _error(response, 507, "disk_full")
            # nothing half-written is left, and the worker serves what fits
            assert not list((server.db / "received" / ".incoming").glob("*.part"))
            small = http.post(
                "/v1/screen", content=_wav(9104, 20.0), headers={"Content-Type": "audio/wav"}
            )
            assert small.status_code == 200, small.text
    finally:
        server.stop()


def test_a_body_that_stops_short_answers_400_and_leaves_nothing(pristine_catalog_dir, tmp_path):
    """The client promises more bytes than it sends and closes its side: the request ends as
    400 ``disconnected`` (logged; the answer reaches the socket if still open), no partial
    file stays, and the worker goes on serving."""
    server, key = _server(pristine_catalog_dir, tmp_path, "")
    try:
        address = urlsplit(server.url)
        body = _wav(9105, 10.0)[:50_000]
        with socket.create_connection((address.hostname, address.port), timeout=60) as sock:
            head = (
                "POST /v1/screen HTTP/1.1\r\n"
                f"Host: {address.netloc}\r\n"
                f"Authorization: Bearer {key}\r\n"
                "Content-Type: audio/wav\r\n"
                f"Content-Length: {len(body) * 4}\r\n\r\n"
            )
            sock.sendall(head.encode() + body)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert not answer or answer.startswith(b"HTTP/1.1 400")
        deadline = time.monotonic() + 60
        while not any(
            line.get("message") == "request" and line.get("status") == 400
            for line in server.log_lines()
        ):
            assert time.monotonic() < deadline, server.log.read_text()[-3000:]
            time.sleep(0.2)
        assert not list((server.db / "received" / ".incoming").glob("*.part"))
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/readyz").status_code == 200
    finally:
        server.stop()


def test_a_malformed_http_request_answers_400(pristine_catalog_dir, tmp_path):
    """Not HTTP at all: uvicorn answers 400 itself and the worker goes on serving."""
    server, _ = _server(pristine_catalog_dir, tmp_path, "")
    try:
        address = urlsplit(server.url)
        with socket.create_connection((address.hostname, address.port), timeout=60) as sock:
            sock.sendall(b"NOT HTTP AT ALL\x00\x01\r\n\r\n")
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/readyz").status_code == 200
    finally:
        server.stop()


def _stalled(server, path: str, head: str, sent: bytes, declared: int) -> bytes:
    """What ``server`` answers a POST to ``path`` whose body stops after ``sent``."""
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=120) as sock:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\n{head}"
            f"Content-Length: {declared}\r\n\r\n"
        )
        sock.sendall(request.encode() + sent)  # then nothing more
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def test_a_stalled_review_form_or_decision_answers_408(pristine_catalog_dir, tmp_path):
    """The review forms (sign-in needs no key) and the decisions API read their bodies within
    ``request_timeout_s`` too: a body that stops coming held the connection for as long as its
    sender liked (a red team: 15,000 such sign-ins, no key needed)."""
    server, key = _server(pristine_catalog_dir, tmp_path, "request_timeout_s = 1.0\n")
    try:
        form = "Content-Type: application/x-www-form-urlencoded\r\n"
        decision = f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        for path, head in (("/review/login", form), ("/v1/reviews/1/decisions", decision)):
            answer = _stalled(server, path, head, b"key=adk_", 200)
            assert answer.startswith(b"HTTP/1.1 408"), (path, answer[:300])
            assert b'"code":"request_timeout"' in answer.replace(b" ", b""), path
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/readyz").status_code == 200
    finally:
        server.stop()


def test_a_stalled_body_answers_408_and_a_request_queued_too_long_504(
    pristine_catalog_dir, tmp_path
):
    """``request_timeout_s = 1``: a client that stops sending its body mid-way gets 408
    ``request_timeout`` (no partial file stays); a request whose body arrived but that waits
    in the engine queue behind a long asynchronous job gets 504 ``timeout`` and is dropped
    from the queue; the job finishes, and the worker serves again."""
    server, key = _server(pristine_catalog_dir, tmp_path, "request_timeout_s = 1.0\n")
    try:
        body = _wav(9106, 10.0)
        head = f"Authorization: Bearer {key}\r\nContent-Type: audio/wav\r\n"
        answer = _stalled(server, "/v1/screen", head, body[: len(body) // 2], len(body))
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert b'"code":"request_timeout"' in answer.replace(b" ", b"")
        assert not list((server.db / "received" / ".incoming").glob("*.part"))
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=300
        ) as http:
            job = http.post(
                "/v1/screen?mode=async",
                content=_wav(9107, 1200.0),  # seconds of screening: the engine stays busy
                headers={"Content-Type": "audio/wav"},
            )
            assert job.status_code == 202, job.text
            deadline = time.monotonic() + 300
            while http.get(job.json()["url"]).json()["status"] == "queued":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            queued = http.post(
                "/v1/screen", content=_wav(9108, 5.0), headers={"Content-Type": "audio/wav"}
            )
            _error(queued, 504, "timeout")
            while http.get(job.json()["url"]).json()["status"] == "running":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert http.get(job.json()["url"]).json()["status"] == "done"
            again = http.post(
                "/v1/screen", content=_wav(9108, 5.0), headers={"Content-Type": "audio/wav"}
            )
            assert again.status_code == 200, again.text
    finally:
        server.stop()
