"""The service against hostile or careless requests found in review: a decision's body is not
read before its key is checked and never beyond a review form's size, a chunked form is read
up to that size, text that is no UTF-8 and unknown or repeated query parameters are refused,
a damaged key file is a 503, a relative catalog path is made absolute, a port in use is one
error line, and the queue's root route is named in the metrics."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from audiodup.catalog import Catalog  # noqa: E402
from audiodup.errors import AudiodupError  # noqa: E402
from audiodup.service.app import create_app  # noqa: E402
from audiodup.service.auth import KeyFile  # noqa: E402
from audiodup.service.config import ServiceConfig, load_config  # noqa: E402
from audiodup.service.server import listening_socket  # noqa: E402
from audiodup.store import CatalogStore, catalog_error  # noqa: E402

UPLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"


@pytest.fixture(scope="module")
def service(pristine_catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hardening") / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    config = ServiceConfig(db=root)
    keys = KeyFile(config.keys_path)
    key = {"screen": keys.create("ingest", ["screen"]), "review": keys.create("rita", ["review"])}
    with TestClient(create_app(config)) as client:
        yield client, key, config


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def chunked(body: bytes):
    """The body as a generator: the client sends it chunked, with no Content-Length."""
    yield body


def test_a_decision_without_a_key_is_refused_before_its_body_is_read(service) -> None:
    client, key, _ = service
    url = "/v1/reviews/1/decisions"
    for body in (b'{"work_id":', b" " * 200_000):  # malformed, and over a form's size
        answer = client.post(url, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 401, answer.text
    too_big = b'{"work_id": 1, "decision": "copy", "note": "' + b"x" * 70_000 + b'"}'
    for body in (too_big, chunked(too_big)):
        answer = client.post(
            url, content=body, headers={**bearer(key["review"]), "Content-Type": "application/json"}
        )
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_large"
    as_text = client.post(url, content=b"{}", headers={**bearer(key["review"])})
    assert as_text.status_code == 415
    malformed = client.post(
        url,
        content=b'{"work_id":',
        headers={**bearer(key["review"]), "Content-Type": "application/json"},
    )
    assert malformed.status_code == 422 and malformed.json()["error"]["code"] == "invalid_request"
    # a well-formed decision on an upload with no such match is still the handler's 404
    fine = client.post(url, json={"work_id": 1, "decision": "copy"}, headers=bearer(key["review"]))
    assert fine.status_code == 404


def test_a_chunked_review_form_is_read_up_to_its_size(service) -> None:
    client, key, _ = service
    client.cookies.clear()
    form = f"key={key['review']}".encode()
    answer = client.post(
        "/review/login",
        content=chunked(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    huge = client.post(
        "/review/login",
        content=chunked(b"key=" + b"x" * 70_000),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 413
    not_utf8 = client.post(
        "/review/login",
        content=b"key=%ff%fe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert not_utf8.status_code == 422 and "UTF-8" in not_utf8.json()["error"]["message"]


def test_a_multipart_review_form_is_utf8_text_as_an_upload_s_fields_are(service) -> None:
    client, key, _ = service
    client.cookies.clear()

    def login(value: bytes, charset: str = "", filename: str = ""):
        disposition = 'form-data; name="key"' + (f'; filename="{filename}"' if filename else "")
        body = (
            f"--b0undary\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
            + value
            + b"\r\n--b0undary--\r\n"
        )
        kind = "multipart/form-data; boundary=b0undary" + (
            f"; charset={charset}" if charset else ""
        )
        return client.post(
            "/review/login", content=body, headers={"Content-Type": kind}, follow_redirects=False
        )

    for charset in ("", "latin-1"):
        answer = login(b"\xff\xfe" + key["review"].encode(), charset)
        assert answer.status_code == 422, answer.text
        assert "'key' is not UTF-8 text" in answer.json()["error"]["message"]
    assert login(key["review"].encode(), "latin-1").status_code == 303
    with_file = login(key["review"].encode(), filename="key.txt")  # a review form takes no file
    assert with_file.status_code == 422 and with_file.json()["error"]["code"] == "bad_form"


@pytest.mark.parametrize(
    "query, why",
    [
        ("uploader=%ff%fe%c3%28bad", "not UTF-8"),
        ("uplaoder=label-a", "unknown query parameter 'uplaoder'"),
        ("uploader=a&uploader=b", "gives uploader twice"),
        ("evil%3Cb%3E=1", "unknown query parameter 'evil<b>'"),
    ],
)
def test_an_upload_s_query_is_utf8_text_of_known_names_given_once(service, query, why) -> None:
    """Lossy or ignored metadata would record another uploader than the one sent: refused,
    before the audio is read, and nothing is recorded."""
    client, key, config = service
    before = sorted((config.db / "received").glob("*")) if (config.db / "received").exists() else []
    answer = client.post(
        f"/v1/uploads?{query}",
        content=(UPLOADS / "unrelated_a.ogg").read_bytes(),
        headers={**bearer(key["screen"]), "Content-Type": "audio/ogg"},
    )
    assert answer.status_code == 422 and why in answer.json()["error"]["message"], answer.text
    after = sorted((config.db / "received").glob("*")) if (config.db / "received").exists() else []
    assert after == before
    screened = client.post(
        "/v1/screen?mode=sync&title=x",
        content=(UPLOADS / "unrelated_a.ogg").read_bytes(),
        headers={**bearer(key["screen"]), "Content-Type": "audio/ogg"},
    )
    assert screened.status_code == 422  # /v1/screen takes only mode


def test_an_upload_with_a_literal_replacement_character_is_kept_as_sent(service) -> None:
    client, key, _ = service
    answer = client.post(
        "/v1/uploads?uploader=%EF%BF%BD%20label",  # U+FFFD sent as UTF-8 is text
        content=(UPLOADS / "unrelated_a.ogg").read_bytes(),
        headers={**bearer(key["screen"]), "Content-Type": "audio/ogg"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["upload"]["uploader"] == "\ufffd label"


def test_a_damaged_key_file_is_a_503_that_does_not_show_its_path(
    pristine_catalog_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    config = ServiceConfig(db=root)
    key = KeyFile(config.keys_path).create("ingest", ["screen"])
    with TestClient(create_app(config)) as client:
        config.keys_path.write_text('{"keys": [')
        answer = client.get("/v1/uploads/1", headers=bearer(key))
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "keys_unavailable"
        assert str(root) not in answer.text


def test_a_key_file_gone_under_a_running_service_is_a_503_not_a_bad_key(
    pristine_catalog_dir: Path, tmp_path: Path, caplog
) -> None:
    """A key file the service read and that is then deleted or moved away is a 503
    ``keys_unavailable`` with a log line naming it, not a 401 for every good key; put back,
    the keys work again."""
    root = tmp_path / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    config = ServiceConfig(db=root)
    key = KeyFile(config.keys_path).create("ingest", ["screen"])
    away = tmp_path / "keys.json.away"
    with TestClient(create_app(config)) as client:
        config.keys_path.rename(away)  # before any request: the worker read it as it started
        with caplog.at_level(logging.ERROR, logger="audiodup.service"):
            answer = client.get("/v1/uploads/1", headers=bearer(key))
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "keys_unavailable"
        assert str(root) not in answer.text
        errors = [r.__dict__.get("fields", {}).get("error", "") for r in caplog.records]
        assert any("is missing" in e and str(config.keys_path) in e for e in errors), errors
        away.rename(config.keys_path)
        assert client.get("/v1/uploads/1", headers=bearer(key)).status_code == 200
        config.keys_path.rename(away)  # and after requests
        assert client.get("/v1/uploads/1", headers=bearer(key)).status_code == 503


def test_a_catalog_that_never_had_a_key_file_answers_401() -> None:
    """Without a key file from the start there are no keys: a 401, as before."""
    keys = KeyFile(Path("/nonexistent-audiodup") / "keys.json")
    assert keys.verify("adk_00000000_" + "x" * 43) is None
    assert keys.records() == []


def test_a_catalog_error_s_paths_stay_in_the_log(
    pristine_catalog_dir: Path, tmp_path: Path, caplog, monkeypatch
) -> None:
    """A catalog error (here the store's own error of a damaged database) is a 503
    ``catalog_error`` that names no file of the service's; the log line of its detail, with
    the request id, does."""
    root = tmp_path / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    config = ServiceConfig(db=root)
    key = KeyFile(config.keys_path).create("ingest", ["screen"])

    def damaged(self, **_):
        raise catalog_error(sqlite3.DatabaseError("database disk image is malformed"), root, "read")

    with TestClient(create_app(config)) as client:
        assert client.get("/v1/uploads/1", headers=bearer(key)).status_code == 200
        monkeypatch.setattr(CatalogStore, "find_uploads", damaged)
        with caplog.at_level(logging.WARNING, "audiodup.service"):
            answer = client.get("/v1/uploads/1", headers=bearer(key))
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "catalog_error" and "log says why" in error["message"]
    assert str(tmp_path) not in answer.text and "sqlite" not in answer.text.lower()
    (detail,) = [r for r in caplog.records if r.getMessage() == "error detail"]
    assert detail.fields["request_id"] == answer.headers["x-request-id"]
    assert str(root) in detail.fields["error"] and "damaged" in detail.fields["error"]


def test_a_relative_catalog_path_is_made_absolute(tmp_path: Path, monkeypatch) -> None:
    """Received files are recorded under the catalog folder: a relative path would name
    nothing once the service is started from another folder."""
    monkeypatch.chdir(tmp_path)
    config = load_config(None, {"db": "cats/../cat"}, environ={})
    assert config.db == tmp_path / "cat" and config.received_dir.is_absolute()
    assert load_config(None, {}, environ={"AUDIODUP_DB": "x"}).db == tmp_path / "x"


def test_the_queue_root_is_named_in_the_metrics(service) -> None:
    client, _, _ = service
    client.cookies.clear()
    assert client.get("/review", follow_redirects=False).status_code == 303
    scraped = client.get("/metrics").text
    assert 'method="GET",route="/review",status="303"' in scraped
    assert client.get("/no/such/route").status_code == 404
    assert 'route="<unmatched>",status="404"' in client.get("/metrics").text


def test_a_port_in_use_is_one_error_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AudiodupError, match=f"cannot listen on 127.0.0.1:{port}"):
            listening_socket("127.0.0.1", port)


def test_serve_on_a_port_in_use_exits_2_with_one_line(
    pristine_catalog_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    KeyFile(ServiceConfig(db=root).keys_path).create("ingest", ["screen"])
    port, done = serve_on_a_taken_port(root)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use"]


def serve_on_a_taken_port(root: Path) -> tuple[int, subprocess.CompletedProcess]:
    """``audiodup serve`` of ``root`` on a port another socket holds: the port, and the run
    (no AUDIODUP_ variable of the test's environment)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIODUP_")}
        done = subprocess.run(
            [sys.executable, "-m", "audiodup", "serve", "--db", str(root), "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    return port, done


def test_serve_logs_its_start_warning_as_a_json_line(
    pristine_catalog_dir: Path, tmp_path: Path
) -> None:
    """A review found the one warning of a catalog without keys (every request will be a
    401) written as plain text in the JSON-lines log, where a log shipper drops it. The port
    is taken, so serve stops after it with its one error line."""
    root = tmp_path / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    port, done = serve_on_a_taken_port(root)
    warning, error = [line for line in done.stderr.splitlines() if line.strip()]
    record = json.loads(warning)
    assert record["level"] == "warning" and record["message"].startswith("no API key yet")
    assert error == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"


def post_form(client, key: str, uploader: bytes, upload: str, charset: str = ""):
    """``POST /v1/uploads`` of a multipart form built by hand: the ``uploader`` field's bytes
    as given, then the ``file`` part, under a Content-Type with ``charset`` if given."""
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="uploader"\r\n\r\n'.encode()
        + uploader
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="a.ogg"\r\nContent-Type: audio/ogg\r\n\r\n'.encode()
        + (UPLOADS / upload).read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    kind = f"multipart/form-data; boundary={boundary}" + (f"; charset={charset}" if charset else "")
    return client.post("/v1/uploads", content=body, headers={**bearer(key), "Content-Type": kind})


def test_an_upload_form_field_that_is_not_utf8_is_refused(service) -> None:
    client, key, _ = service
    answer = post_form(client, key["screen"], b"\xff\xfe label", "unrelated_a.ogg")
    assert answer.status_code == 422, answer.text
    assert "'uploader' is not UTF-8 text" in answer.json()["error"]["message"]


def test_a_file_part_that_names_its_file_only_as_filename_star_is_told_why(service) -> None:
    """``filename*=`` alone (RFC 5987) makes no file part for the form parser: the audio is a
    text field, over the 16 KB fields may hold. The 422 says that, not only "too large"."""
    client, key, _ = service
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        "filename*=UTF-8''a.ogg\r\nContent-Type: audio/ogg\r\n\r\n".encode()
        + (UPLOADS / "unrelated_a.ogg").read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    kind = f"multipart/form-data; boundary={boundary}"
    answer = client.post(
        "/v1/uploads", content=body, headers={**bearer(key["screen"]), "Content-Type": kind}
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "bad_form"
    assert "the field 'file' is over 16 KB" in error["message"]
    assert "filename=" in error["message"]


def test_a_catalog_folder_moved_away_is_a_503_not_a_bad_key(
    pristine_catalog_dir: Path, tmp_path: Path
) -> None:
    """The key file lives in the catalog folder: with the folder gone, a valid key is not
    'unknown or revoked' (the client would drop a good key); it is the catalog's 503."""
    root = tmp_path / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    config = ServiceConfig(db=root)
    key = KeyFile(config.keys_path).create("ingest", ["screen"])
    with TestClient(create_app(config)) as client:
        assert client.get("/v1/uploads/1", headers=bearer(key)).status_code == 200
        root.rename(tmp_path / "moved")
        answer = client.get("/v1/uploads/1", headers=bearer(key))
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "catalog_error"
        wrong = client.get("/v1/uploads/1", headers=bearer("adk_00000000_" + "x" * 43))
        assert wrong.status_code == 503
        (tmp_path / "moved").rename(root)
        assert client.get("/v1/uploads/1", headers=bearer(key)).status_code == 200


def _uploads_in(root: Path) -> int:
    with Catalog.open(root, create=False) as catalog:
        return catalog.stats().uploads


@pytest.mark.parametrize("how", ["copied back", "swapped"])
def test_a_catalog_folder_replaced_under_the_service_is_refused_not_written(
    pristine_catalog_dir: Path, tmp_path: Path, how: str
) -> None:
    """A backup restored (``rm -rf cat && cp -a backup cat``) or swapped in (``mv``) while the
    service runs: the worker's connection is still on the old database, so it refuses (503,
    ``/readyz`` not ready) rather than answer 201 for an upload recorded where nobody sees it."""
    root = tmp_path / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    config = ServiceConfig(db=root)
    key = KeyFile(config.keys_path).create("ingest", ["admin"])
    backup = tmp_path / "backup"
    shutil.copytree(root, backup)
    before = _uploads_in(root)
    body = (UPLOADS / "unrelated_b.ogg").read_bytes()
    headers = {**bearer(key), "Content-Type": "audio/ogg"}
    with TestClient(create_app(config)) as client:
        assert client.get("/v1/uploads/1", headers=bearer(key)).status_code == 200
        if how == "copied back":
            shutil.rmtree(root)
            shutil.copytree(backup, root)
        else:
            root.rename(tmp_path / "old")
            backup.rename(root)
        for url in ("/v1/uploads?uploader=late", "/v1/screen"):
            answer = client.post(url, content=body, headers=headers)
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "catalog_replaced"
            assert "restart" in answer.json()["error"]["message"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "replaced" in ready.json()["error"]["message"]
    assert _uploads_in(root) == before
    assert not list((root / "received").glob("*.ogg"))
    if how == "swapped":
        assert _uploads_in(tmp_path / "old") == before


def test_an_upload_form_s_declared_charset_does_not_change_its_text(service) -> None:
    """Fields are checked as UTF-8 and read as UTF-8: a form declaring Latin-1 cannot turn
    'caf\u00e9' into 'caf\u00c3\u00a9'."""
    client, key, _ = service
    uploader = "caf\u00e9"
    answer = post_form(client, key["screen"], uploader.encode(), "unrelated_b.ogg", "latin-1")
    assert answer.status_code == 201, answer.text
    assert answer.json()["upload"]["uploader"] == uploader


def test_a_killed_workers_partial_upload_is_removed_by_the_next_worker(tmp_path: Path) -> None:
    from audiodup.service.app import _sweep_incoming
    from audiodup.service.intake import part_name

    config = ServiceConfig(db=tmp_path / "db")
    incoming = config.received_dir / ".incoming"
    incoming.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    names = {
        "killed": part_name(gone.pid),  # a worker of this host that is gone
        "streaming": part_name(os.getpid()),  # one still receiving
        "elsewhere": f"{gone.pid}@another-host-{'0' * 32}.part",  # judged by its age only
    }
    for name in names.values():
        (incoming / name).write_bytes(b"partial")
    _sweep_incoming(config)
    assert sorted(p.name for p in incoming.iterdir()) == sorted(
        [names["streaming"], names["elsewhere"]]
    )


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        (b'form-data; name="file"; filename="C:\\Users\\x\\song.ogg"', b"C:\\Users\\x\\song.ogg"),
        (b'form-data; name="a;filename=evil.ogg"; filename="real.ogg"', b"real.ogg"),
        (b'form-data; name="file"; filename="first.ogg"; filename="last.ogg"', b"last.ogg"),
        (b'form-data; name="file"; filename="say \\"hi\\".ogg"', b'say "hi".ogg'),
        (b'form-data; name="file"', None),
    ],
)
def test_a_parts_file_name_is_read_whole(disposition: bytes, name: bytes | None) -> None:
    from audiodup.service.intake import sent_filename

    assert sent_filename(disposition) == name


def _received(folder: Path, data: bytes, digest: str):
    from audiodup.service import intake

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{len(list(folder.iterdir()))}.part"
    path.write_bytes(data)
    return intake.Received(path, len(data), digest, ".ogg")


def test_a_failed_recording_never_drops_audio_another_request_of_the_same_bytes_kept(
    tmp_path: Path,
) -> None:
    """Two service processes keep the same bytes under one name. A review found the request
    that made the file and then failed (503 busy, a full disk) deleting it after the other
    had kept it too and went on to record its upload: a recorded upload without its audio.
    A request drops only a file it made that no other request has put there since."""
    from audiodup.service import intake

    received, incoming = tmp_path / "received", tmp_path / "incoming"
    data, digest = b"the same bytes", "ab" * 32

    first = intake.keep(_received(incoming, data, digest), received)
    second = intake.keep(_received(incoming, data, digest), received)
    assert first.created and not second.created and first.path == second.path
    intake.drop(first, received)  # the first fails after the second kept the file
    assert first.path.read_bytes() == data
    intake.drop(second, received)  # the second fails: the file was there before it
    assert first.path.read_bytes() == data

    # the file the first request made was replaced, and the file system may give the new one
    # the freed inode's number: that is not the first request's file either
    dev, inode, changed = second.identity
    reused = dataclasses.replace(first, identity=(dev, inode, changed - 1))
    intake.drop(reused, received)
    assert first.path.read_bytes() == data

    alone = intake.keep(_received(incoming, b"other bytes", "cd" * 32), received)
    assert alone.created
    intake.drop(alone, received)  # made by this request, no other kept it: dropped
    assert not alone.path.exists()


def test_a_kept_file_no_upload_records_is_swept_once_old_enough(tmp_path: Path) -> None:
    """Two requests of the same bytes that both fail leave the file neither may drop; a kept
    name that nothing records is removed once older than any request could be, and nothing
    else in the folder is."""
    from audiodup.service import intake

    folder = tmp_path / "received"
    folder.mkdir()
    orphan, recorded = folder / f"{'ab' * 32}.ogg", folder / f"{'cd' * 32}.wav"
    other = folder / "notes.txt"  # not a kept file's name
    linked = folder / f"{'ef' * 32}.ogg"
    nested = folder / f"{'12' * 32}.flac"
    for path in (orphan, recorded, other):
        path.write_bytes(b"audio")
    linked.symlink_to(other)
    nested.mkdir()
    names = {recorded.name, "unrelated.ogg"}

    assert intake.sweep_unrecorded(folder, names, older_than=time.time() - 3600) == 0
    assert orphan.exists()  # too recent: a request may still be recording it
    assert intake.sweep_unrecorded(folder, names, older_than=time.time() + 60) == 1
    left = sorted(p.name for p in folder.iterdir() if p.name != ".keep.lock")
    assert left == sorted([recorded.name, other.name, linked.name, nested.name])
    assert intake.sweep_unrecorded(tmp_path / "missing", names, time.time() + 60) == 0


def test_a_starting_worker_removes_received_files_no_upload_records(
    pristine_catalog_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    from audiodup.service import engine

    monkeypatch.setattr(engine, "unrecorded_age_s", lambda config: -60.0)  # all are old
    root = tmp_path / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    config = ServiceConfig(db=root)
    key = KeyFile(config.keys_path).create("ingest", ["screen"])
    with TestClient(create_app(config)) as client:
        with open(UPLOADS / "pitch_-3_work_03.ogg", "rb") as handle:
            answer = client.post(
                "/v1/uploads", files={"file": ("a.ogg", handle, "audio/ogg")}, headers=bearer(key)
            )
        assert answer.status_code == 201, answer.text
        upload_id = answer.json()["upload"]["upload_id"]
    kept = [p for p in config.received_dir.iterdir() if p.suffix == ".ogg"]
    assert len(kept) == 1
    orphan = config.received_dir / f"{'ab' * 32}.ogg"
    orphan.write_bytes(kept[0].read_bytes())
    with TestClient(create_app(config)) as client:
        assert client.get("/readyz").status_code == 200
    assert not orphan.exists() and kept[0].exists()
    with Catalog.open(root, create=False) as catalog:
        assert os.path.basename(catalog.store.upload_file(upload_id)) == kept[0].name


def test_a_read_only_catalog_screens_and_refuses_to_record(
    pristine_catalog_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """A catalog on a read-only mount (a screening replica): ``/v1/screen`` spools its body
    outside the catalog and answers; ``/v1/uploads`` is refused with a 503 that says why, and
    no spooled part is left behind."""
    import tempfile

    from test_store_hostile import read_only_mount

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # not the machine's /tmp
    root = tmp_path / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    key = KeyFile(ServiceConfig(db=root).keys_path).create("ingest", ["screen"])
    with read_only_mount(root, tmp_path / "ro") as view:
        config = ServiceConfig(db=view)
        headers = {**bearer(key), "Content-Type": "audio/ogg"}
        body = (UPLOADS / "unrelated_b.ogg").read_bytes()
        with TestClient(create_app(config)) as client:
            assert client.get("/readyz").status_code == 200
            screened = client.post("/v1/screen", content=body, headers=headers)
            assert screened.status_code == 200, screened.text
            accepted = client.post("/v1/screen?mode=async", content=body, headers=headers)
            assert accepted.status_code == 202, accepted.text
            job = client.get(accepted.headers["location"], headers=bearer(key)).json()
            while job["status"] in ("queued", "running"):
                time.sleep(0.05)
                job = client.get(accepted.headers["location"], headers=bearer(key)).json()
            assert job["status"] == "done" and job["http_status"] == 200, job
            recorded = client.post("/v1/uploads?uploader=x", content=body, headers=headers)
            assert recorded.status_code == 503, recorded.text
            error = recorded.json()["error"]
            assert error["code"] == "read_only" and "read-only" in error["message"]
        spool = config.read_only_incoming_dir
        assert spool.parent == tmp_path / "tmp"
        assert spool.is_dir() and not list(spool.iterdir())
        assert (spool.stat().st_mode & 0o777) == 0o700
        assert (config.read_only_jobs_dir.stat().st_mode & 0o777) == 0o700


def test_start_warnings_name_a_misspelt_setting_and_a_key_file_others_can_write(
    pristine_catalog_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """A review: AUDIODUP_MAX_UPLAOD_BYTES was ignored without a word (the same name in the
    TOML file is refused), and a key file anyone could write was used as it was."""
    from audiodup.service import server

    root = tmp_path / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    config = ServiceConfig(db=root)
    KeyFile(config.keys_path).create("ingest", ["screen"])
    for name in [n for n in os.environ if n.startswith("AUDIODUP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AUDIODUP_PORT", "8000")  # a setting
    monkeypatch.setenv("AUDIODUP_FFMPEG", "none")  # another command's
    assert server.check(config) == []
    monkeypatch.setenv("AUDIODUP_MAX_UPLAOD_BYTES", "5")
    config.keys_path.chmod(0o666)
    first, second = server.check(config)
    assert first.startswith("AUDIODUP_MAX_UPLAOD_BYTES is no setting and is ignored")
    assert "can be written by other users" in second


def test_a_read_only_catalog_spools_in_the_user_s_runtime_folder(tmp_path: Path, monkeypatch):
    """Diff reviews: the spool folder's name in the shared /tmp is predictable, so another
    user could make it first and the read-only replica refuses every screening; systemd's
    RuntimeDirectory= sets RUNTIME_DIRECTORY, and a runtime folder others can enter is none."""
    private, open_to_all = tmp_path / "run", tmp_path / "shared"
    private.mkdir(mode=0o700)
    open_to_all.mkdir()
    open_to_all.chmod(0o755)
    for name in ("RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)

    def base() -> Path:
        config = ServiceConfig(db=tmp_path / "db")
        assert config.read_only_jobs_dir.parent == config.read_only_incoming_dir.parent
        return config.read_only_incoming_dir.parent

    temporary = base()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(private))
    assert base() == private
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(open_to_all))
    assert base() == temporary
    monkeypatch.setenv("RUNTIME_DIRECTORY", f"{private}:{open_to_all}")
    assert base() == private
