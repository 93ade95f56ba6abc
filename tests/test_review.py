"""The review queue (audiodup/service/review.py) against the real application in a FastAPI
TestClient: uploads recorded through ``POST /v1/uploads``, then signing in with a review key,
the queue and its filters, an upload's page (evidence, picture, A/B excerpts, form), decisions
from the form (CSRF, origin) and from the API (scopes), the export, hostile text, and a
revoked key ending its session."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("pedalboard")

from fastapi.testclient import TestClient  # noqa: E402

from audiodup import Catalog  # noqa: E402
from audiodup.schema import validate  # noqa: E402
from audiodup.service import sessions  # noqa: E402
from audiodup.service.app import create_app  # noqa: E402
from audiodup.service.auth import KeyFile  # noqa: E402
from audiodup.service.config import ServiceConfig  # noqa: E402
from audiodup.service.review import flagged_uploads  # noqa: E402
from audiodup.service.review_pages import QueueFilter  # noqa: E402

UPLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"
HOSTILE = '<script>alert("x")</script>\u202e'


@pytest.fixture(scope="module")
def served(pristine_catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The fixture catalog behind the application, three uploads recorded through the API
    (a tempo copy, a pitch copy by a hostile uploader name, an unrelated file) and keys."""
    root = tmp_path_factory.mktemp("review") / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    with Catalog.open(root, create=False) as catalog:  # work_02 is a rights holder's reference
        owner = next(u for u in catalog.uploads() if Path(u.source_path).stem == "work_02")
        catalog.update_uploads(
            [
                (
                    owner.upload_id,
                    {"role": "reference", "uploader": "Rights Holder", "isrc": "GBAYE0000001"},
                )
            ]
        )
    config = ServiceConfig(db=root)
    keys = KeyFile(config.keys_path)
    key = {
        "screen": keys.create("ingest", ["screen"]),
        "review": keys.create("rita", ["review"]),
        "other": keys.create("otto", ["review"]),
    }
    app = create_app(config)
    with TestClient(app) as client:
        ids = {}
        for name, uploader in (
            ("stretch_1.25_work_02.ogg", "label-a"),
            ("pitch_-3_work_03.ogg", HOSTILE),
            ("unrelated_a.ogg", "label-a"),
        ):
            with open(UPLOADS / name, "rb") as handle:
                answer = client.post(
                    "/v1/uploads",
                    files={"file": (name, handle, "audio/ogg")},
                    data={"uploader": uploader, "isrc": "USRC17607839"}
                    | ({} if name.startswith("pitch") else {"title": f"Title of {name}"}),
                    headers=bearer(key["screen"]),
                )
            assert answer.status_code == 201, answer.text
            ids[name] = answer.json()["upload"]["upload_id"]
        yield client, key, ids, keys


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def sign_in(client: TestClient, key: str) -> TestClient:
    client.cookies.clear()
    answer = client.post("/review/login", data={"key": key}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/review"
    return client


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_pages_need_a_session_and_only_a_review_key_opens_one(served) -> None:
    client, key, ids, _ = served
    client.cookies.clear()
    for path in ("/review", f"/review/uploads/{ids['stretch_1.25_work_02.ogg']}"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/review/login"
    wav = f"/review/uploads/{ids['stretch_1.25_work_02.ogg']}/listen/upload.wav?work_id=3"
    assert client.get(wav).status_code == 401
    bad = client.post("/review/login", data={"key": "adk_00000000_" + "x" * 43})
    assert bad.status_code == 401 and "unknown or revoked key" in bad.text
    screen_only = client.post("/review/login", data={"key": key["screen"]})
    assert screen_only.status_code == 401 and "lacks the review scope" in screen_only.text
    assert sessions.SESSION_COOKIE not in client.cookies
    answer = client.post("/review/login", data={"key": key["review"]}, follow_redirects=False)
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert key["review"] not in cookie  # the key itself is never in the cookie
    # a forged or altered cookie is no session
    client.cookies.set(sessions.SESSION_COOKIE, answer.cookies[sessions.SESSION_COOKIE] + "x")
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_the_queue_lists_flagged_uploads_and_filters_them(served) -> None:
    client, key, ids, _ = served
    sign_in(client, key["review"])
    page = client.get("/review")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    listed = {int(i) for i in re.findall(r'href="/review/uploads/(\d+)"', page.text)}
    assert listed == {ids["stretch_1.25_work_02.ogg"], ids["pitch_-3_work_03.ogg"]}
    assert 'id="reviewer">rita<' in page.text
    # an upload is named by its title, else by the file name its client sent
    names = dict(re.findall(r'href="/review/uploads/(\d+)">([^<]*)</a>', page.text))
    assert names == {
        str(ids["stretch_1.25_work_02.ogg"]): "Title of stretch_1.25_work_02.ogg",
        str(ids["pitch_-3_work_03.ogg"]): "pitch_-3_work_03.ogg",
    }
    by_label = client.get("/review", params={"uploader": "label-a"}).text
    assert set(re.findall(r'href="/review/uploads/(\d+)"', by_label)) == {
        str(ids["stretch_1.25_work_02.ogg"])
    }
    clean = client.get("/review", params={"verdict": "clean"}).text  # not a queue filter
    assert len(re.findall(r'href="/review/uploads/(\d+)"', clean)) == 2
    future = client.get("/review", params={"since": "2999-01-01"}).text
    assert 'id="queue-empty"' in future
    past = client.get("/review", params={"until": "2000-01-01"}).text
    last = client.get("/review", params={"until": "9999-12-31"})  # the last day: no bound
    assert (
        last.status_code == 200 and len(re.findall(r'href="/review/uploads/(\d+)"', last.text)) == 2
    )
    assert 'id="queue-empty"' in past
    # hostile text is escaped, never markup
    assert "<script>alert" not in page.text and "&lt;script&gt;alert" in page.text
    assert "\u202e" not in page.text and "\\u202e" in page.text


def test_the_uploader_filter_is_exact_and_survives_the_form_and_the_links(served) -> None:
    client, key, ids, _ = served
    sign_in(client, key["review"])
    page = client.get("/review", params={"uploader": HOSTILE}).text
    assert re.findall(r'href="/review/uploads/(\d+)"', page) == [str(ids["pitch_-3_work_03.ogg"])]
    # the filter box holds the uploader itself (sent again, it finds the same upload) ...
    value = re.search(r'<input name="uploader" value="([^"]*)"', page)[1]
    assert html.unescape(value) == HOSTILE
    # ... and each row links to the queue of exactly its uploader
    (link,) = re.findall(r'href="/review\?(uploader=[^"]*)"', page)
    assert parse_qs(html.unescape(link))["uploader"] == [HOSTILE]
    # exact: spaces are part of an uploader, not trimmed away
    spaced = client.get("/review", params={"uploader": " label-a "}).text
    assert 'id="queue-empty"' in spaced


def test_an_uploader_longer_than_the_api_takes_has_its_queue(served) -> None:
    """A metadata CSV takes an uploader of any length; its row's link must find it."""
    client, key, ids, _ = served
    upload_id, long = ids["pitch_-3_work_03.ogg"], "a metadata CSV's uploader " * 60
    with Catalog.open(client.app.state.config.db, create=False) as catalog:
        catalog.update_uploads([(upload_id, {"uploader": long})])
    try:
        sign_in(client, key["review"])
        page = client.get("/review", params={"uploader": long}).text
        assert re.findall(r'href="/review/uploads/(\d+)"', page) == [str(upload_id)]
    finally:
        with Catalog.open(client.app.state.config.db, create=False) as catalog:
            catalog.update_uploads([(upload_id, {"uploader": HOSTILE})])


def test_an_upload_page_shows_the_evidence_picture_players_and_form(served) -> None:
    client, key, ids, _ = served
    sign_in(client, key["review"])
    upload_id = ids["stretch_1.25_work_02.ogg"]
    page = client.get(f"/review/uploads/{upload_id}").text
    for shown in ("label-a", "isrc", "USRC17607839", "x1.25", "Decision", "not a copy"):
        assert shown in page, shown
    # the match names its owner: the reference upload, its identifiers and why it was chosen
    for shown in ("reference, by Rights Holder", "GBAYE0000001", "the rights holder&#x27;s"):
        assert shown in page, shown
    # an owner without an uploader shows none (not "nan")
    unnamed = client.get(f"/review/uploads/{ids['pitch_-3_work_03.ogg']}").text
    assert "upload, by" not in unnamed
    assert all(re.search(r"\bnan\b", shown) is None for shown in (page, unnamed))
    work_id = int(re.search(r'name="work_id" id="decision-work"><option value="(\d+)"', page)[1])
    assert f'src="/review/uploads/{upload_id}/explain.png?work_id={work_id}"' in page
    assert page.count("<audio ") == 2
    assert re.search(r"(https?:)?//", page) is None  # nothing outside this server
    png = client.get(f"/review/uploads/{upload_id}/explain.png", params={"work_id": work_id})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    wavs = {}
    for side in ("reference", "upload"):
        answer = client.get(
            f"/review/uploads/{upload_id}/listen/{side}.wav", params={"work_id": work_id}
        )
        assert answer.status_code == 200 and answer.headers["content-type"] == "audio/wav"
        wavs[side], rate = sf.read(io.BytesIO(answer.content), dtype="float32")
        assert np.sqrt(np.mean(wavs[side] ** 2)) > 0.01  # audio, not silence
    # brought back: as long as the reference's excerpt, not 1/1.25 of it
    assert len(wavs["upload"]) == pytest.approx(len(wavs["reference"]), rel=0.03)
    assert len(wavs["reference"]) / rate > 5
    unmatched = client.get(f"/review/uploads/{upload_id}/listen/upload.wav?work_id=999")
    assert unmatched.status_code == 404
    assert client.get("/review/uploads/99999").status_code == 404


def test_a_decision_from_the_form_needs_its_csrf_token_and_shows_in_the_export(served) -> None:
    client, key, ids, _ = served
    sign_in(client, key["review"])
    upload_id = ids["pitch_-3_work_03.ogg"]
    page = client.get(f"/review/uploads/{upload_id}").text
    work_id = int(re.search(r'name="work_id" id="decision-work"><option value="(\d+)"', page)[1])
    form = {"work_id": str(work_id), "decision": "escalate", "note": "=ask legal " + HOSTILE}
    action = f"/review/uploads/{upload_id}/decision"
    assert client.post(action, data=form).status_code == 403  # no token
    assert client.post(action, data={**form, "csrf": "forged"}).status_code == 403
    assert client.post(action, data={**form, "csrf": "forg\u00e9d"}).status_code == 403
    token = csrf_of(page)
    elsewhere = client.post(
        action, data={**form, "csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert elsewhere.status_code == 403
    wrong = client.post(action, data={**form, "csrf": token, "decision": "maybe"})
    assert wrong.status_code == 400
    done = client.post(action, data={**form, "csrf": token}, follow_redirects=False)
    assert done.status_code == 303
    shown = client.get(done.headers["location"]).text
    assert 'id="notice"' in shown and "escalate" in shown and "&lt;script&gt;" in shown
    document = client.get("/v1/reviews/export", params={"format": "json"}).json()  # by cookie
    validate(document, "decisions")
    mine = [d for d in document["decisions"] if d["upload_id"] == upload_id]
    assert [(d["decision"], d["work_id"], d["reviewer"]) for d in mine] == [
        ("escalate", work_id, "rita")
    ]
    assert mine[0]["note"] == form["note"]
    rows = list(csv.DictReader(io.StringIO(client.get("/v1/reviews/export?format=csv").text)))
    row = next(r for r in rows if r["upload_id"] == str(upload_id))
    assert row["decision"] == "escalate" and row["note"].startswith("'=ask legal")
    # a session's token does not fit another session's form
    sign_in(client, key["other"])
    assert client.post(action, data={**form, "csrf": token}).status_code == 403


def test_the_api_records_decisions_by_scope_and_the_latest_wins(served) -> None:
    client, key, ids, _ = served
    client.cookies.clear()
    upload_id = ids["stretch_1.25_work_02.ogg"]
    entry = client.get(f"/v1/uploads/{upload_id}", headers=bearer(key["screen"])).json()
    work_id = entry["upload"]["screen"]["matches"][0]["work_id"]
    url = f"/v1/reviews/{upload_id}/decisions"
    body = {"work_id": work_id, "decision": "copy", "note": "same master"}
    assert client.post(url, json=body).status_code == 401
    assert client.post(url, json=body, headers=bearer(key["screen"])).status_code == 403
    assert client.get("/v1/reviews/export").status_code == 401
    bad = client.post(url, json={**body, "decision": "maybe"}, headers=bearer(key["review"]))
    assert bad.status_code == 422
    for odd in ({"work_id": 2**70}, {"note": "\ud800"}, {"work_id": 0}):  # as JSON text
        refused = client.post(
            url,
            content=json.dumps({**body, **odd}),
            headers={**bearer(key["review"]), "Content-Type": "application/json"},
        )
        assert refused.status_code == 422, odd
    huge = client.get(f"/v1/reviews/{2**70}/decisions", headers=bearer(key["review"]))
    assert huge.status_code == 422
    elsewhere = client.post(url, json={**body, "work_id": 999}, headers=bearer(key["review"]))
    assert elsewhere.status_code == 404
    clean = ids["unrelated_a.ogg"]
    no_match = client.post(
        f"/v1/reviews/{clean}/decisions", json=body, headers=bearer(key["review"])
    )
    assert no_match.status_code == 404
    first = client.post(url, json=body, headers=bearer(key["review"]))
    assert first.status_code == 201 and first.json()["reviewer"] == "rita"
    second = client.post(url, json={**body, "decision": "not_a_copy"}, headers=bearer(key["other"]))
    assert second.status_code == 201
    history = client.get(url, headers=bearer(key["review"])).json()
    validate(history, "decisions")
    assert [d["decision"] for d in history["decisions"]] == ["copy", "not_a_copy"]
    latest = client.get("/v1/reviews/export", headers=bearer(key["review"])).json()
    assert latest["latest_only"] is True
    assert [d["decision"] for d in latest["decisions"] if d["upload_id"] == upload_id] == [
        "not_a_copy"
    ]
    # logs and metrics name the route with its router's prefix, not the client's path
    scraped = client.get("/metrics").text
    assert 'method="POST",route="/v1/reviews/{upload_id}/decisions",status="201"' in scraped
    assert f"/v1/reviews/{upload_id}/decisions" not in scraped
    everything = client.get("/v1/reviews/export?history=true", headers=bearer(key["review"]))
    assert len(json.loads(everything.text)["decisions"]) >= 2
    assert (
        client.get("/v1/reviews/export?format=xml", headers=bearer(key["review"])).status_code
        == 422
    )
    # the queue shows the decision in force, and "undecided only" leaves the upload out
    sign_in(client, key["review"])
    queue = client.get("/review").text
    assert "decided-not_a_copy" in queue
    undecided = client.get("/review", params={"undecided": "1"}).text
    assert f'href="/review/uploads/{upload_id}"' not in undecided


def test_the_queue_pages_through_every_flagged_upload_once(served) -> None:
    client, _, ids, _ = served
    flagged = sorted((ids["stretch_1.25_work_02.ogg"], ids["pitch_-3_work_03.ogg"]))
    engine = client.app.state.engine
    with engine.lock:
        seen, cursor, pages_read = [], 0, 0
        while cursor is not None:
            rows, cursor = flagged_uploads(engine.catalog, QueueFilter(), cursor, page_size=1)
            seen += [r.upload.upload_id for r in rows]
            pages_read += 1
        assert seen == flagged and pages_read <= 3
        only_suspects, more = flagged_uploads(engine.catalog, QueueFilter(verdict="suspect"))
        assert only_suspects == [] and more is None
        assert flagged_uploads(engine.catalog, QueueFilter(until="2000-01-01")) == ([], None)


def test_a_revoked_key_ends_its_sessions(served) -> None:
    client, _, _, keys = served
    extra = keys.create("temp-reviewer", ["review"])
    sign_in(client, extra)
    assert client.get("/review").status_code == 200
    keys.revoke("temp-reviewer")
    assert client.get("/review", follow_redirects=False).status_code == 303
    assert client.get("/v1/reviews/export").status_code == 401


def test_session_tokens_expire_and_refuse_tampering(tmp_path: Path) -> None:
    secret = sessions.load_secret(tmp_path / "service")
    assert sessions.load_secret(tmp_path / "service") == secret  # one secret per catalog
    assert (tmp_path / "service" / sessions.SECRET_FILE).stat().st_mode & 0o077 == 0
    token, session = sessions.issue(secret, "0123abcd", "rita", now=1000.0)
    assert sessions.read(secret, token, now=1001.0) == session
    assert sessions.read(secret, token, now=1000.0 + sessions.SESSION_S + 1) is None
    assert sessions.read(b"another secret" * 3, token, now=1001.0) is None
    payload, signature = token.split(".")
    assert sessions.read(secret, payload[:-2] + "xx." + signature, now=1001.0) is None
    assert sessions.read(secret, None) is None and sessions.read(secret, "a.b.c") is None
    assert sessions.csrf_ok(secret, session, sessions.csrf_token(secret, session))
    assert not sessions.csrf_ok(secret, session, None)


def test_a_picture_the_dask_cluster_cannot_draw_is_a_503(served, monkeypatch) -> None:
    """``serve --dask``: a picture whose catalog statistics the cluster cannot give is the
    cluster's 503 (retry later), not a 409 that says the picture cannot be made."""
    from audiodup.errors import ClusterError
    from audiodup.service import review

    def cluster_gone(*args, **kwargs):
        raise ClusterError("the Dask cluster has had no workers for 20 s; nothing can be screened")

    client, key, ids, _ = served
    sign_in(client, key["review"])
    upload_id = ids["pitch_-3_work_03.ogg"]
    page = client.get(f"/review/uploads/{upload_id}").text
    work_id = int(re.search(r'name="work_id" id="decision-work"><option value="(\d+)"', page)[1])
    monkeypatch.setattr(review, "render_explain", cluster_gone)
    answer = client.get(f"/review/uploads/{upload_id}/explain.png", params={"work_id": work_id})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "cluster_unavailable"
