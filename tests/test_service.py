"""``audiodup serve`` tested as a client sees it: a real server (two worker processes) started
on 127.0.0.1 by the tests, every endpoint, every error status, auth and scopes, hot reload after
``index add`` by another process, idempotent retries, asynchronous jobs, metrics, logs; then
property-based requests from the OpenAPI document (schemathesis) that must never get a 5xx."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import os
import shutil
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
schemathesis = pytest.importorskip("schemathesis")

import soundfile as sf  # noqa: E402
from conftest import UPLOADS_DIR  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from service_server import Server, cli, start_server  # noqa: E402

from audiodup import Catalog  # noqa: E402
from audiodup.results import verdict_to_dict  # noqa: E402
from audiodup.schema import validate  # noqa: E402
from audiodup.synth import synthesize_work  # noqa: E402

MAX_UPLOAD_BYTES = 3_000_000
MAX_DURATION_S = 60.0
_CONFIG = f"""
max_upload_bytes = {MAX_UPLOAD_BYTES}
max_duration_s = {MAX_DURATION_S}
rate_limit_per_minute = 600
rate_limit_burst = 100
log_level = "info"
"""
SCOPES = {"admin": "admin", "pipeline": "screen", "reviewer": "review", "burst": "screen"}
SCOPES |= {"fuzz": "screen", "other": "screen"}


def synth_wav(seed: int, duration_s: float = 20.0) -> bytes:
    """A distinct piece of music as WAV bytes (nothing else in any test's catalog)."""
    buffer = io.BytesIO()
    sf.write(buffer, synthesize_work(seed, duration_s, 11025), 11025, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(pristine_catalog_dir: Path, tmp_path_factory) -> Server:
    root = tmp_path_factory.mktemp("service")
    db = root / "db"
    shutil.copytree(pristine_catalog_dir, db)
    keys = {
        name: cli("keys", "create", name, "--scope", scope, "--db", str(db)).stdout.strip()
        for name, scope in SCOPES.items()
    }
    running = start_server(db, root, workers=2, toml=_CONFIG)
    running.keys = keys
    yield running
    running.stop()


@pytest.fixture(scope="module")
def works(pristine_catalog_dir: Path) -> dict[str, int]:
    with Catalog.open(pristine_catalog_dir, create=False) as catalog:
        return {Path(w.path).stem: w.work_id for w in catalog.works()}


def _error(response, status: int, code: str | None = None) -> dict:
    """The JSON error of ``response``: its status, code and request id (the header's)."""
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    if code is not None:
        assert body["code"] == code, body
    return body


# -- operations ----------------------------------------------------------------------------------
def test_health_readiness_openapi_and_docs(server):
    with server.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json() == {"status": "ready"}
        spec = http.get("/openapi.json").json()
        assert {
            "/v1/screen",
            "/v1/uploads",
            "/v1/uploads/{upload_id}",
            "/v1/works/{work_id}",
            "/v1/jobs/{job_id}",
            "/healthz",
            "/readyz",
            "/metrics",
        } <= set(spec["paths"])
        body = spec["paths"]["/v1/uploads"]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "audio/*", "application/octet-stream"} <= set(body)
        docs = http.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        _error(http.get("/v1/nothing-here"), 404, "not_found")
        _error(http.delete("/v1/screen"), 405)


# -- screening ---------------------------------------------------------------------------------
def test_screen_answers_the_cli_document(server, works, pristine_catalog_dir):
    upload = UPLOADS_DIR / "stretch_0.80_work_01.ogg"
    data = upload.read_bytes()
    with server.client("pipeline") as http:
        raw = http.post("/v1/screen", content=data, headers={"Content-Type": "audio/ogg"})
        form = http.post("/v1/screen", files={"file": ("any name.ogg", data, "audio/ogg")})
    for response in (raw, form):
        assert response.status_code == 200, response.text
        document = response.json()
        validate(document, "screen")
        assert document["summary"]["duplicate"] == 1
    entry = form.json()["results"][0]
    assert entry["path"] == "any name.ogg"  # the client's name, shown, never opened
    # decoding and fingerprinting 50 s of Ogg Vorbis are counted (they were not: ~1e-4 s)
    assert entry["fingerprint_s"] > 0.005 and entry["fingerprint_cpu_s"] > 0.005, entry
    assert entry["matches"][0]["work_id"] == works["work_01"]
    # the same entry as the library (and so screen --json) gives, timings aside
    with Catalog.open(pristine_catalog_dir, create=False) as catalog:
        local = verdict_to_dict(catalog.screen(upload))
    served = json.loads(json.dumps(entry))
    timings = ("fingerprint_s", "search_s", "fingerprint_cpu_s", "search_cpu_s")
    for key in ("path", *timings, "index_load_s", "index_load_cpu_s"):
        served.pop(key), local.pop(key)
    assert served == json.loads(json.dumps(local))


def test_screen_a_clean_upload(server):
    with server.client("pipeline") as http:
        response = http.post(
            "/v1/screen", content=synth_wav(7001), headers={"Content-Type": "audio/wav"}
        )
    assert response.status_code == 200
    validate(response.json(), "screen")
    assert response.json()["results"][0]["verdict"] == "clean"


# -- auth and scopes -----------------------------------------------------------------------------
def multipart_file(filename: bytes, data: bytes) -> tuple[bytes, dict[str, str]]:
    """A multipart body of one 'file' part whose file name is ``filename``, sent as a browser
    sends it (its bytes as they are, within the quotes)."""
    boundary = "audiodup-test-boundary"
    head = b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"'
    body = b"\r\n".join(
        [
            f"--{boundary}".encode(),
            head,
            b"Content-Type: audio/ogg",
            b"",
            data,
            f"--{boundary}--".encode(),
            b"",
        ]
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_a_file_name_comes_back_as_sent_and_cannot_drive_a_terminal(server):
    data = (UPLOADS_DIR / "unrelated_a.ogg").read_bytes()
    names = [
        "C:\\Users\\someone\\song.ogg",  # python-multipart keeps "song.ogg" of such a name
        "rtl \u202egpj.ogg, c1 \u009b31m, line \u2028 separator.ogg",
    ]
    with server.client("pipeline") as http:
        for name in names:
            body, headers = multipart_file(name.encode("utf-8"), data)
            response = http.post("/v1/screen", content=body, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json()["results"][0]["path"] == name
            for acting in ("\u202e", "\u009b", "\u2028"):  # escaped as \uNNNN, as screen --json
                assert acting.encode("utf-8") not in response.content
        body, headers = multipart_file(b"latin-1 \xe9t\xe9.ogg", data)
        refused = http.post("/v1/screen", content=body, headers=headers)
    assert "not UTF-8" in _error(refused, 422, "bad_form")["message"]


def test_keys_and_scopes(server):
    anonymous = server.client()
    body = _error(anonymous.get("/v1/uploads"), 401, "unauthorized")
    assert "Bearer" in body["message"]
    assert anonymous.get("/v1/uploads").headers["www-authenticate"] == "Bearer"
    _error(anonymous.get("/v1/uploads", headers={"Authorization": "Basic abc"}), 401)
    wrong = server.keys["pipeline"][:-2] + "zz"
    _error(anonymous.get("/v1/uploads", headers={"Authorization": f"Bearer {wrong}"}), 401)
    with server.client("reviewer") as reviewer:
        assert reviewer.get("/v1/uploads").status_code == 200  # reads are open to review
        refused = reviewer.post("/v1/screen", content=b"x", headers={"Content-Type": "audio/wav"})
        _error(refused, 403, "forbidden")
    with server.client("pipeline") as pipeline:
        reference = pipeline.post(
            "/v1/uploads?role=reference",
            content=synth_wav(7002),
            headers={"Content-Type": "audio/wav"},
        )
        _error(reference, 403, "forbidden")  # only an admin registers a reference
    with server.client("admin") as admin:
        assert admin.get("/v1/uploads?limit=1").status_code == 200


def test_revoked_key_is_refused_at_once(server):
    key = cli(
        "keys", "create", "temporary", "--scope", "screen", "--db", str(server.db)
    ).stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    with server.client() as http:
        assert all(
            http.get("/v1/uploads?limit=1", headers=headers).status_code == 200 for _ in range(4)
        )
        cli("keys", "revoke", "temporary", "--db", str(server.db))
        assert all(
            http.get("/v1/uploads?limit=1", headers=headers).status_code == 401 for _ in range(4)
        )


def test_a_revoked_admin_keys_name_grants_a_new_key_nothing(server):
    def create(scope: str) -> dict[str, str]:
        made = cli("keys", "create", "rotated", "--scope", scope, "--db", str(server.db))
        return {"Authorization": f"Bearer {made.stdout.strip()}"}

    create("admin")
    cli("keys", "revoke", "rotated", "--db", str(server.db))
    screen_only = create("screen")
    with server.client("other") as other, server.client() as http:
        job = other.post(
            "/v1/screen?mode=async", content=synth_wav(7003), headers={"Content-Type": "audio/wav"}
        )
        assert job.status_code == 202, job.text
        reference = http.post(
            "/v1/uploads?role=reference",
            content=synth_wav(7004),
            headers={"Content-Type": "audio/wav", **screen_only},
        )
        _error(reference, 403, "forbidden")
        _error(http.get(job.headers["location"], headers=screen_only), 404, "not_found")
    cli("keys", "revoke", "rotated", "--db", str(server.db))


# -- limits --------------------------------------------------------------------------------------
def test_content_type_size_and_duration_limits(server):
    with server.client("pipeline") as http:
        _error(
            http.post("/v1/screen", content=b"hello", headers={"Content-Type": "text/plain"}), 415
        )
        _error(http.post("/v1/screen", content=b"hello"), 415)  # no type at all
        part = http.post("/v1/screen", files={"file": ("a.txt", b"hello", "text/plain")})
        _error(part, 415, "unsupported_media_type")
        big = b"\0" * (MAX_UPLOAD_BYTES + 1)
        _error(
            http.post("/v1/screen", content=big, headers={"Content-Type": "audio/wav"}),
            413,
            "too_large",
        )
        streamed = http.post(  # no Content-Length: counted while it streams
            "/v1/uploads",
            content=iter([big[:1_000_000]] * 4),
            headers={"Content-Type": "application/octet-stream"},
        )
        _error(streamed, 413, "too_large")
        _error(http.post("/v1/screen", files={"file": ("big.wav", big, "audio/wav")}), 413)
        long_file = synth_wav(7003, MAX_DURATION_S + 5)
        assert len(long_file) < MAX_UPLOAD_BYTES
        _error(
            http.post("/v1/uploads", content=long_file, headers={"Content-Type": "audio/wav"}),
            413,
            "too_long",
        )
        _error(
            http.post("/v1/screen", content=b"", headers={"Content-Type": "audio/wav"}),
            422,
            "empty",
        )
        garbage = http.post(
            "/v1/screen", content=b"RIFF" + os.urandom(5000), headers={"Content-Type": "audio/wav"}
        )
        _error(garbage, 422, "undecodable")
        _error(
            http.post("/v1/screen", files={"data": ("a.wav", b"x", "audio/wav")}), 422, "bad_form"
        )
        _error(
            http.post(
                "/v1/screen", data={"title": "x"}, files={"file": ("a.wav", b"x", "audio/wav")}
            ),
            422,
        )
    # nothing half-received is left behind
    assert not list((server.db / "received" / ".incoming").glob("*.part"))


def test_rate_limit_per_key(server):
    with server.client("burst") as http:
        first = http.get("/v1/uploads?limit=1").status_code
        # eight at a time: far faster than the key's rate refills (10/s after a burst of 100,
        # one bucket for both workers)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(lambda _: http.get("/v1/uploads?limit=1").status_code, range(400))
            )
        limited = http.get("/v1/uploads?limit=1")
    assert first == 200
    assert 429 in statuses, statuses
    assert set(statuses) <= {200, 429}
    if limited.status_code == 429:
        assert int(limited.headers["retry-after"]) >= 1
        _error(limited, 429, "rate_limited")
    with server.client("pipeline") as other:  # another key has its own bucket
        assert other.get("/v1/uploads?limit=1").status_code == 200


# -- uploads: recording, idempotency, the ledger -------------------------------------------------
def test_upload_is_recorded_once_per_idempotency_key(server):
    audio = synth_wav(7101)
    fields = {
        "uploader": "label-a",
        "uploaded_at": "2024-03-01T10:00:00Z",
        "isrc": "USRC17607839",
        "external_id": "A-1",
        "title": "First",
        "artist": "Someone",
    }
    headers = {"Idempotency-Key": "upload-7101"}
    with server.client("pipeline") as http:
        first = http.post(
            "/v1/uploads",
            data=fields,
            files={"file": ("t.wav", audio, "audio/wav")},
            headers=headers,
        )
        assert first.status_code == 201, first.text
        created = first.json()
        upload = created["upload"]
        assert created["status"] == "added" and created["replayed"] is False
        assert first.headers["location"] == f"/v1/uploads/{upload['upload_id']}"
        # a key other than admin dates its upload by the arrival; its date is kept as claimed
        assert {k: upload[k] for k in fields if k != "uploaded_at"} == {
            k: v for k, v in fields.items() if k != "uploaded_at"
        }
        assert upload["extra"] == {"claimed_uploaded_at": fields["uploaded_at"]}
        assert upload["uploaded_at"] > "2026"
        assert upload["verdict"] == "clean" and upload["recorded_by"] == "pipeline"
        validate(
            {
                "schema_version": created["schema_version"],
                "summary": {
                    "uploads": 1,
                    "duplicate": 0,
                    "suspect": 0,
                    "clean": 1,
                    "error": 0,
                    "partly_screened": 0,
                },
                "results": [upload["screen"]],
            },
            "screen",
        )
        # the received bytes are kept under the catalog, named by their hash
        kept = Path(upload["source_path"])
        assert kept.parent == server.db / "received" and kept.read_bytes() == audio
        # retried: the same answer, nothing recorded twice
        again = http.post(
            "/v1/uploads",
            data=fields,
            files={"file": ("t.wav", audio, "audio/wav")},
            headers=headers,
        )
        assert again.status_code == 200 and again.json()["replayed"] is True
        assert again.json()["upload"]["upload_id"] == upload["upload_id"]
        listed = http.get("/v1/uploads", params={"uploader": "label-a"}).json()["uploads"]
        assert [u["upload_id"] for u in listed] == [upload["upload_id"]]
        # the key with another body or other metadata is a client error
        other = http.post(
            "/v1/uploads",
            data={**fields, "title": "Changed"},
            files={"file": ("t.wav", audio, "audio/wav")},
            headers=headers,
        )
        _error(other, 422, "idempotency_key_reused")
        # one key per client: another key's same idempotency key is its own upload
        with server.client("other") as second:
            theirs = second.post(
                "/v1/uploads",
                data=fields,
                files={"file": ("t.wav", audio, "audio/wav")},
                headers=headers,
            )
        assert theirs.status_code == 201 and theirs.json()["status"] == "identical"
        assert theirs.json()["upload"]["work_id"] == upload["work_id"]
        one = http.get(f"/v1/uploads/{upload['upload_id']}").json()["upload"]
        assert one == upload
        work = http.get(f"/v1/works/{upload['work_id']}").json()
        assert [u["upload_id"] for u in work["uploads"]] == [
            upload["upload_id"],
            theirs.json()["upload"]["upload_id"],
        ]
        assert work["work"]["sha256"] == upload["sha256"]
    # the catalog itself agrees (another process reads it)
    with Catalog.open(server.db, create=False) as catalog:
        mine = [u for u in catalog.uploads() if u.uploader == "label-a"]
        assert len(mine) == 2 and {u.external_id for u in mine} == {"A-1"}


def test_concurrent_retries_record_one_upload(server):
    audio = synth_wav(7102)
    headers = {"Idempotency-Key": "race-7102", "Content-Type": "audio/wav"}

    def send(_):
        with server.client("pipeline") as http:
            return http.post("/v1/uploads?uploader=racer", content=audio, headers=headers)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(4)))
    assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers]
    assert sorted(a.status_code for a in answers)[-1] == 201
    assert len({a.json()["upload"]["upload_id"] for a in answers}) == 1
    with server.client("pipeline") as http:
        assert len(http.get("/v1/uploads?uploader=racer").json()["uploads"]) == 1


def test_identical_content_from_another_uploader(server):
    audio = synth_wav(7103)
    with server.client("pipeline") as http:
        first = http.post(
            "/v1/uploads?uploader=u1", content=audio, headers={"Content-Type": "audio/wav"}
        ).json()
        second = http.post(
            "/v1/uploads?uploader=u2", content=audio, headers={"Content-Type": "audio/wav"}
        )
    assert second.status_code == 201
    assert second.json()["status"] == "identical"
    assert second.json()["upload"]["work_id"] == first["upload"]["work_id"]
    assert second.json()["upload"]["verdict"] == "duplicate"  # it matches the first one
    match = second.json()["upload"]["screen"]["matches"][0]
    assert match["identical_content"] is True and match["uploader"] == "u1"


def test_an_upload_is_dated_by_its_arrival_and_only_an_admin_dates_one_back(server):
    """Reviews found a thief's dated upload made the original of an owner's upload recorded
    before it without a date (an undated upload never counts as the first), any past date
    believed, and then a thief's date an hour before the owner's believed from any key: the
    earliest dated upload is a work's original. Only an admin dates an upload (a backfill);
    any other key's is dated by its arrival, the date it gave kept as claimed."""
    before = datetime.now(UTC)
    with server.client("pipeline") as http:
        owner = http.post(
            "/v1/uploads?uploader=owner",
            content=synth_wav(7105, 5),
            headers={"Content-Type": "audio/wav"},
        )
        assert owner.status_code == 201, owner.text
        dated = datetime.fromisoformat(owner.json()["upload"]["uploaded_at"])
        assert before <= dated <= datetime.now(UTC)
        for claimed in ("1970-01-01", (before - timedelta(hours=1)).isoformat()):
            thief = http.post(
                "/v1/uploads",
                params={"uploader": "thief", "uploaded_at": claimed},
                content=synth_wav(7106, 5),
                headers={"Content-Type": "audio/wav"},
            )
            assert thief.status_code == 201, thief.text
            recorded = thief.json()["upload"]
            assert datetime.fromisoformat(recorded["uploaded_at"]) >= dated
            assert recorded["extra"] == {"claimed_uploaded_at": claimed}
    with server.client("admin") as http:  # a backfill of history
        backfill = http.post(
            "/v1/uploads?uploader=history&uploaded_at=2019-06-01",
            content=synth_wav(7107, 5),
            headers={"Content-Type": "audio/wav"},
        )
        assert backfill.status_code == 201, backfill.text
        assert backfill.json()["upload"]["uploaded_at"] == "2019-06-01"


def test_bad_metadata_is_refused(server):
    with server.client("pipeline") as http:
        audio = synth_wav(7104, 5)
        _error(
            http.post(
                "/v1/uploads?uploaded_at=yesterday",
                content=audio,
                headers={"Content-Type": "audio/wav"},
            ),
            422,
        )
        future = http.post(  # a date still to come would make it the original
            "/v1/uploads?uploaded_at=2999-12-31T23:59:59Z",
            content=audio,
            headers={"Content-Type": "audio/wav"},
        )
        _error(future, 422)
        assert "is in the future" in future.json()["error"]["message"]
        _error(
            http.post(
                "/v1/uploads", data={"colour": "red"}, files={"file": ("a.wav", audio, "audio/wav")}
            ),
            422,
            "bad_form",
        )
        _error(
            http.post(
                "/v1/uploads?uploader=a",
                data={"uploader": "b"},
                files={"file": ("a.wav", audio, "audio/wav")},
            ),
            422,
        )
        _error(
            http.post(
                "/v1/uploads",
                content=audio,
                headers={"Content-Type": "audio/wav", "Idempotency-Key": "bad key"},
            ),
            422,
        )
        _error(
            http.post(
                "/v1/uploads?role=owner", content=audio, headers={"Content-Type": "audio/wav"}
            ),
            422,
        )
        assert http.get("/v1/uploads?uploader=a").json()["uploads"] == []


def test_listing_filters_and_pages(server):
    with server.client("pipeline") as http:
        for seed, who in ((7201, "lister"), (7202, "lister")):
            http.post(
                f"/v1/uploads?uploader={who}",
                content=synth_wav(seed),
                headers={"Content-Type": "audio/wav"},
            )
        dup = http.post(
            "/v1/uploads?uploader=lister",
            content=(UPLOADS_DIR / "pitch_-3_work_03.ogg").read_bytes(),
            headers={"Content-Type": "audio/ogg"},
        )
        assert dup.json()["upload"]["verdict"] == "duplicate"
        everything = http.get("/v1/uploads", params={"uploader": "lister"}).json()
        assert len(everything["uploads"]) == 3 and everything["next"] is None
        assert [u["verdict"] for u in everything["uploads"]] == ["clean", "clean", "duplicate"]
        only = http.get("/v1/uploads", params={"uploader": "lister", "verdict": "duplicate"}).json()
        assert [u["upload_id"] for u in only["uploads"]] == [dup.json()["upload"]["upload_id"]]
        since = everything["uploads"][1]["recorded_at"]
        later = http.get("/v1/uploads", params={"uploader": "lister", "since": since}).json()[
            "uploads"
        ]
        assert [u["upload_id"] for u in later] == [
            u["upload_id"] for u in everything["uploads"][1:]
        ]
        assert http.get("/v1/uploads", params={"since": "2999-01-01"}).json()["uploads"] == []
        _error(http.get("/v1/uploads", params={"since": "last week"}), 422)
        _error(http.get("/v1/uploads", params={"verdict": "maybe"}), 422, "invalid_request")
        # a misspelt, repeated or undecodable filter is refused, never dropped
        for query in ("uplaoder=lister", "uploader=lister&uploader=x", "uploader=%ff"):
            _error(http.get(f"/v1/uploads?{query}"), 422, "invalid_request")
        pages, url = [], "/v1/uploads?uploader=lister&limit=1"
        while url:
            page = http.get(url).json()
            pages += page["uploads"]
            url = page["next"]
        assert pages == everything["uploads"]
        # the fixture catalog's own works are uploads too (recorded by index add, not screened)
        first = http.get("/v1/uploads?limit=1").json()["uploads"][0]
        assert first["upload_id"] == 1 and first["verdict"] is None
        _error(http.get("/v1/uploads/999999"), 404, "not_found")
        _error(http.get("/v1/works/999999"), 404, "not_found")
        _error(http.get("/v1/uploads/abc"), 422)


def test_removed_upload_answers_its_retry_with_409(server):
    audio = synth_wav(7301)
    headers = {"Idempotency-Key": "gone-7301", "Content-Type": "audio/wav"}
    with server.client("pipeline") as http:
        created = http.post("/v1/uploads", content=audio, headers=headers).json()["upload"]
        cli("index", "remove", str(created["work_id"]), "--db", str(server.db))
        _error(http.post("/v1/uploads", content=audio, headers=headers), 409, "upload_removed")


# -- another process changes the catalog -------------------------------------------------------
def test_new_catalog_commits_are_seen_without_restart(server, tmp_path):
    song = tmp_path / "newly-indexed.wav"
    song.write_bytes(synth_wav(7401, 30))
    with server.client("pipeline") as http:
        before = [
            http.post(
                "/v1/screen", content=song.read_bytes(), headers={"Content-Type": "audio/wav"}
            ).json()
            for _ in range(2)
        ]
        assert {d["results"][0]["verdict"] for d in before} == {"clean"}
        cli("index", "add", str(song), "--db", str(server.db))
        # every worker sees it (four requests spread over the two workers)
        after = [
            http.post(
                "/v1/screen", content=song.read_bytes(), headers={"Content-Type": "audio/wav"}
            ).json()
            for _ in range(4)
        ]
    assert {d["results"][0]["verdict"] for d in after} == {"duplicate"}
    with Catalog.open(server.db, create=False) as catalog:
        added = [w for w in catalog.works() if w.path == str(song.resolve())]
    assert all(d["results"][0]["matches"][0]["work_id"] == added[0].work_id for d in after)


# -- asynchronous jobs ---------------------------------------------------------------------------
def _poll(http, url: str) -> dict:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = http.get(url).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {url} did not finish")


def test_async_jobs(server):
    with server.client("pipeline") as http:
        accepted = http.post(
            "/v1/uploads?mode=async&uploader=async-user",
            content=synth_wav(7501),
            headers={"Content-Type": "audio/wav", "Idempotency-Key": "async-7501"},
        )
        assert accepted.status_code == 202
        url = accepted.headers["location"]
        assert accepted.json()["url"] == url and url.startswith("/v1/jobs/")
        job = _poll(http, url)
        assert job["status"] == "done" and job["http_status"] == 201
        assert job["result"]["upload"]["uploader"] == "async-user"
        screened = _poll(
            http,
            http.post(
                "/v1/screen?mode=async",
                content=(UPLOADS_DIR / "speed_1.15_work_05.ogg").read_bytes(),
                headers={"Content-Type": "audio/ogg"},
            ).headers["location"],
        )
        validate(screened["result"], "screen")
        assert screened["result"]["summary"]["duplicate"] == 1
        failed = _poll(
            http,
            http.post(
                "/v1/screen?mode=async",
                content=b"not audio at all",
                headers={"Content-Type": "audio/wav"},
            ).headers["location"],
        )
        assert failed["status"] == "failed" and failed["error"]["code"] == "undecodable"
        _error(http.get("/v1/jobs/" + "0" * 32), 404)
        _error(http.get("/v1/jobs/..%2F..%2Fkeys"), 404)
    with server.client("other") as stranger:  # a job is its client's
        _error(stranger.get(url), 404)
    with server.client("admin") as admin:
        assert admin.get(url).json()["status"] == "done"


# -- metrics and logs ----------------------------------------------------------------------------
def test_metrics(server):
    # its own requests: under pytest-xdist the module's other tests may run in another worker
    with server.client("pipeline") as http:
        duplicate = (UPLOADS_DIR / "stretch_0.80_work_01.ogg").read_bytes()
        screened = http.post("/v1/screen", content=duplicate, headers={"Content-Type": "audio/ogg"})
        assert screened.status_code == 200 and screened.json()["summary"]["duplicate"] == 1
        recorded = http.post(
            "/v1/uploads", content=synth_wav(7311), headers={"Content-Type": "audio/wav"}
        )
        assert recorded.status_code == 201, recorded.text
    with server.client() as http:
        text = http.get("/metrics").text
    assert 'audiodup_http_requests_total{method="POST",route="/v1/uploads",status="201"}' in text
    assert (
        'audiodup_http_request_duration_seconds_bucket{le="0.5",method="POST",route="/v1/screen"}'
        in text
    )
    assert 'audiodup_verdicts_total{verdict="duplicate"}' in text
    assert "audiodup_engine_queue_depth 0.0" in text
    works = float(
        next(
            line.split()[1]
            for line in text.splitlines()
            if line.startswith("audiodup_catalog_works ")
        )
    )
    with Catalog.open(server.db, create=False) as catalog:
        assert works == catalog.stats().works


def test_request_ids_and_logs(server):
    with server.client("pipeline") as http:
        response = http.get("/v1/uploads/999998", headers={"X-Request-ID": "trace-42"})
        assert response.headers["x-request-id"] == "trace-42"
        assert _error(response, 404)["request_id"] == "trace-42"
        forged = http.get("/v1/uploads?limit=1", headers={"X-Request-ID": "a\tb c"})
        assert forged.headers["x-request-id"] != "a\tb c"  # not a plain token: a new one
    time.sleep(0.5)
    lines = server.log_lines()
    requests = [e for e in lines if e.get("message") == "request"]
    traced = [e for e in requests if e["request_id"] == "trace-42"]
    assert traced and traced[0]["status"] == 404 and traced[0]["key"] == "pipeline"
    text = server.log.read_text()
    for key in server.keys.values():
        secret = key.split("_", 2)[2]  # adk_<id>_<secret>; the secret may hold "_" itself
        assert key not in text and secret not in text


def test_every_answered_request_is_logged_while_workers_decode(server):
    """32 screenings, 8 at a time: each answer's request id is in the log. (The decoder points
    file descriptor 2 at /dev/null while it decodes; the logs must not go there with it.)"""
    upload = synth_wav(7701, 20.0)

    def screen(_) -> str:
        with server.client("other") as http:
            response = http.post(
                "/v1/screen", content=upload, headers={"Content-Type": "audio/wav"}
            )
        assert response.status_code == 200, response.text
        return response.headers["x-request-id"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answered = set(pool.map(screen, range(32)))
    assert len(answered) == 32
    deadline = time.monotonic() + 60  # a line is written just after its answer is sent
    while True:
        logged = {e.get("request_id") for e in server.log_lines() if e.get("message") == "request"}
        if answered <= logged or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answered - logged == set()


# -- workers -------------------------------------------------------------------------------------
def test_a_killed_worker_is_replaced(server):
    workers = server.worker_pids()
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        now = server.worker_pids()
        if len(now) == 2 and workers[0] not in now:
            break
        time.sleep(0.2)
    now = server.worker_pids()
    assert len(now) == 2 and workers[0] not in now
    with server.client("pipeline") as http:
        answers = [http.get("/v1/uploads?limit=1").status_code for _ in range(6)]
    assert answers == [200] * 6


@contextlib.contextmanager
def own_server(catalog_dir: Path, tmp_path: Path, toml: str):
    """A one-worker server of its own, on a copy of ``catalog_dir`` with ``toml``'s settings:
    ``(a client with a screen key, the catalog folder)``."""
    db = tmp_path / "db"
    shutil.copytree(catalog_dir, db)
    key = cli("keys", "create", "t", "--scope", "screen", "--db", str(db)).stdout.strip()
    server = start_server(db, tmp_path, workers=1, toml=toml)
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as http:
            yield http, db
    finally:
        server.stop()


def test_timeouts(pristine_catalog_dir, tmp_path):
    """A request over its time gets 504 (a server with a tiny request timeout)."""
    with own_server(pristine_catalog_dir, tmp_path, "request_timeout_s = 0.05\n") as (http, _):
        response = http.post(
            "/v1/screen", content=synth_wav(7601, 180), headers={"Content-Type": "audio/wav"}
        )
        body = _error(response, response.status_code)
        assert (response.status_code, body["code"]) in ((504, "timeout"), (408, "request_timeout"))
        assert http.get("/readyz").status_code == 200  # and the worker goes on


def _held_writer_lock(db: Path):
    """The catalog's writer lock, as a long ``index add`` or rebuild in another process holds it."""
    from filelock import FileLock

    lock = FileLock(str(db / "catalog.lock"))
    lock.acquire()
    return lock


def test_another_writers_lock_is_a_quick_503_and_screening_goes_on(pristine_catalog_dir, tmp_path):
    with own_server(pristine_catalog_dir, tmp_path, "lock_wait_s = 0.5\n") as (http, db):
        wav = {"content": synth_wav(7602), "headers": {"Content-Type": "audio/wav"}}
        lock = _held_writer_lock(db)
        try:
            refused = http.post("/v1/uploads", **wav)
            assert _error(refused, 503, "busy") and refused.headers["retry-after"]
            assert http.post("/v1/screen", **wav).status_code == 200  # no write, no wait
        finally:
            lock.release()
        assert http.post("/v1/uploads", **wav).status_code == 201


def test_an_upload_answered_504_while_it_runs_says_it_may_still_be_recorded(
    pristine_catalog_dir, tmp_path
):
    toml = "request_timeout_s = 5\nlock_wait_s = 600\n"
    with own_server(pristine_catalog_dir, tmp_path, toml) as (http, db):
        wav = synth_wav(7603)
        headers = {"Content-Type": "audio/wav", "Idempotency-Key": "slow-7603"}
        lock = _held_writer_lock(db)  # the upload is screened, then waits to be recorded
        try:
            late = http.post("/v1/uploads", content=wav, headers=headers)
        finally:
            lock.release()
        assert "may still be recorded" in _error(late, 504, "timeout")["message"]
        # the recording went on: the same key answers its outcome (queued behind it)
        again = http.post("/v1/uploads", content=wav, headers=headers)
        assert again.status_code == 200 and again.json()["replayed"] is True


# -- property-based: the OpenAPI document, no 5xx ------------------------------------------------
@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_properties_no_server_error(case, server):
    headers = {"Authorization": f"Bearer {server.keys['fuzz']}"}
    response = case.call(headers=headers, timeout=300)
    assert response.status_code < 500, (
        case.method,
        case.path,
        response.status_code,
        response.text[:500],
    )
    case.validate_response(response, checks=[not_a_server_error])
    # every error is JSON with the request id
    if response.status_code >= 400:
        given = response.headers["x-request-id"]
        given = given[0] if isinstance(given, list) else given
        assert response.json()["error"]["request_id"] == given
