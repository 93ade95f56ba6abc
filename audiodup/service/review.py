"""The review queue of ``audiodup serve``: HTML pages under ``/review``, an API under
``/v1/reviews``.

Pages (a signed-in browser session, :mod:`audiodup.service.sessions`):

* ``GET /review/login``, ``POST /review/login``: exchange an API key with the ``review`` scope
  for the session cookie; ``POST /review/logout`` ends it.
* ``GET /review``: flagged uploads (duplicate and suspect verdicts the service recorded),
  filterable by verdict, uploader, recording date and "undecided only", 50 a page.
* ``GET /review/uploads/{id}``: the upload, its evidence, the explain picture, the A/B players
  and the decision form (``POST /review/uploads/{id}/decision``, with a CSRF token).
* ``GET /review/uploads/{id}/explain.png?work_id=W`` and
  ``GET /review/uploads/{id}/listen/{reference|upload}.wav?work_id=W``: the picture and the
  two excerpts (:mod:`audiodup.listen`: the upload's brought back to the reference's tempo and
  key).

API (``Authorization: Bearer KEY`` with the ``review`` scope; the export also accepts the
session cookie, so the queue's export links work in the browser):

* ``GET /v1/reviews/export?format=csv|json[&history=true]``: the decision in force per upload
  (or every decision): CSV, or the ``decisions`` JSON document (``schema_version``).
* ``GET /v1/reviews/{id}/decisions``, ``POST /v1/reviews/{id}/decisions``: one upload's
  history, and recording a decision (``{"work_id", "decision", "note"}``).

Catalog reads take the worker's engine lock briefly (:mod:`audiodup.service.engine`); decoding,
stretching and fingerprinting happen outside it. Files opened are the catalog's own: a work's
stored path and the file the service kept for an upload, never a name sent by a client.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from ..audio import load_audio
from ..catalog import Catalog
from ..errors import AudiodupError, CatalogError, ClusterError
from ..explain import drawn_queries, most_patterns, render_explain, titled
from ..listen import ListeningPair, listening_pair, wav_bytes
from ..report import decisions_csv
from ..report_html import PICTURE_DPI
from ..rescan.serialise import match_from_dict
from ..results import REVIEW_LABELS, Match, ReviewDecision, UploadInfo, decisions_document, dumps
from ..stereo import signal_audio
from . import auth, intake, sessions
from . import review_pages as pages
from .auth import require_scope
from .errors import ApiError, engine_error, not_found

router = APIRouter()  # mounted at /review (audiodup.service.app)
api_router = APIRouter()  # mounted at /v1/reviews

PAGE_SIZE = 50
MAX_NOTE_CHARS = 4000
_MAX_FORM_BYTES = 64 * 1024
_CACHE_ENTRIES = 8  # A/B pairs and pictures kept per worker: a reviewer replays, seeks, reloads
_require_review = require_scope("review")
_MAX_ID = 2**63 - 1  # SQLite's integers: a larger id is no upload, and must not be a 500
UploadId = Annotated[int, PathParam(ge=1, le=_MAX_ID)]
WorkIdQuery = Annotated[int, Query(ge=1, le=_MAX_ID)]


# -- pages ------------------------------------------------------------------------------------
@router.get("/login", include_in_schema=False)
def login_form(request: Request) -> Response:
    nonce = _nonce()
    return _html(pages.login_page(nonce), nonce)


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    _same_origin(request)
    form = await _form(request)
    key = str(form.get("key") or "").strip()
    try:
        record = await run_in_threadpool(request.app.state.keys.verify, key) if key else None
    except auth.KeyChecksThrottled as exc:
        raise auth.throttled(exc) from None
    nonce = _nonce()
    if record is None or not record.allows("review"):
        why = "unknown or revoked key" if record is None else "this key lacks the review scope"
        return _html(pages.login_page(nonce, f"Not signed in: {why}."), nonce, status=401)
    token, _ = sessions.issue(_secret(request), record.key_id, record.name)
    response = RedirectResponse("/review", status_code=303)
    response.set_cookie(
        sessions.SESSION_COOKIE,
        token,
        max_age=sessions.SESSION_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    _same_origin(request)
    session = _session(request)
    form = await _form(request)
    if session is not None and not sessions.csrf_ok(_secret(request), session, form.get("csrf")):
        return _forbidden_page()
    response = RedirectResponse("/review/login", status_code=303)
    response.delete_cookie(sessions.SESSION_COOKIE, path="/")
    return response


@router.get("", include_in_schema=False)
def queue(
    request: Request,
    verdict: str = "",
    uploader: str = "",
    since: str = "",
    until: str = "",
    undecided: str = "",
    after_id: int = Query(0, ge=0, le=_MAX_ID),
) -> Response:
    session = _session(request)
    if session is None:
        return _to_login()
    filters = pages.QueueFilter(
        verdict=verdict if verdict in pages.FLAGGED else "",
        uploader=uploader,  # exact, whole: an uploader's spaces and length are its own
        since=_date_text(since),
        until=_date_text(until),
        undecided=bool(undecided),
    )
    with _catalog(request) as catalog:
        rows, more_after = flagged_uploads(catalog, filters, after_id)
    nonce = _nonce()
    text = pages.queue_page(
        rows,
        filters,
        nonce=nonce,
        reviewer=session.name,
        csrf=sessions.csrf_token(_secret(request), session),
        more_after=more_after,
    )
    return _html(text, nonce)


@router.get("/uploads/{upload_id}", include_in_schema=False)
def upload_page(
    request: Request, upload_id: UploadId, work_id: WorkIdQuery | None = None, recorded: str = ""
) -> Response:
    session = _session(request)
    if session is None:
        return _to_login()
    with _catalog(request) as catalog:
        found = _screened(catalog, upload_id)
        history = catalog.decisions(upload_id)
    if found is None:
        return _not_found_page(f"upload {upload_id} was not screened by the service")
    chosen = _chosen(found.matches, work_id) if found.matches else None
    nonce = _nonce()
    text = pages.upload_page(
        found.upload,
        found.name,
        found.verdict,
        found.screened_at,
        found.matches,
        chosen,
        history,
        nonce=nonce,
        reviewer=session.name,
        csrf=sessions.csrf_token(_secret(request), session),
        notice="Decision recorded." if recorded and history else None,
    )
    return _html(text, nonce)


@router.post("/uploads/{upload_id}/decision", include_in_schema=False)
async def decide_from_page(request: Request, upload_id: UploadId) -> Response:
    _same_origin(request)
    session = _session(request)
    if session is None:
        return _to_login()
    form = await _form(request)
    if not sessions.csrf_ok(_secret(request), session, form.get("csrf")):
        return _forbidden_page()
    try:
        work_id = int(str(form.get("work_id", "")))
    except ValueError:
        work_id = 0
    if not 1 <= work_id <= _MAX_ID:
        return _bad_request_page("choose the matched work the decision is about")
    decision = str(form.get("decision", ""))
    note = str(form.get("note", ""))
    problem = _decision_problem(decision, note)
    if problem:
        return _bad_request_page(problem)
    made = await run_in_threadpool(
        _record, request, upload_id, work_id, decision, note, session.name
    )
    if made is None:
        return _not_found_page(f"upload {upload_id} has no match with work {work_id}")
    return RedirectResponse(
        f"/review/uploads/{upload_id}?work_id={work_id}&recorded=1", status_code=303
    )


@router.get("/uploads/{upload_id}/explain.png", include_in_schema=False)
def explain_picture(request: Request, upload_id: UploadId, work_id: WorkIdQuery) -> Response:
    if _session(request) is None:
        raise ApiError(401, "unauthorized", "sign in at /review/login")
    png = _cached(
        request, ("explain", upload_id, work_id), lambda: _picture(request, upload_id, work_id)
    )
    return Response(png, media_type="image/png", headers=_PRIVATE)


@router.get("/uploads/{upload_id}/listen/{side}.wav", include_in_schema=False)
def listen(
    request: Request,
    upload_id: UploadId,
    side: Literal["reference", "upload"],
    work_id: WorkIdQuery,
) -> Response:
    if _session(request) is None:
        raise ApiError(401, "unauthorized", "sign in at /review/login")
    pair: ListeningPair = _cached(
        request, ("listen", upload_id, work_id), lambda: _pair(request, upload_id, work_id)
    )
    samples = pair.reference if side == "reference" else pair.upload
    wav = wav_bytes(samples, pair.sample_rate_hz)
    return Response(wav, media_type="audio/wav", headers=_PRIVATE)


# -- API --------------------------------------------------------------------------------------
class DecisionIn(BaseModel):
    """A reviewer's decision on one flagged upload."""

    work_id: int = Field(
        ge=1, le=_MAX_ID, description="The matched work the upload was compared with."
    )
    decision: Literal["copy", "not_a_copy", "escalate"]
    note: str = Field("", max_length=MAX_NOTE_CHARS, description="Free text, kept as given.")

    @field_validator("note")
    @classmethod
    def _note_is_text(cls, note: str) -> str:
        if not _storable(note):
            raise ValueError("the note holds a lone surrogate, which is no text")
        return note


@api_router.get("/export", tags=["review"])
async def export(
    request: Request,
    format: Literal["csv", "json"] = "json",
    history: bool = False,
) -> Response:
    """The review decisions: the one in force per upload, or (``history=true``) every one,
    oldest first. CSV (formula-safe cells) or the versioned ``decisions`` JSON document."""
    await _reviewer(request)

    def read() -> list[ReviewDecision]:
        with _catalog(request) as catalog:
            return catalog.decisions() if history else catalog.latest_decisions()

    decisions = await run_in_threadpool(read)
    if format == "csv":
        return Response(
            decisions_csv(decisions),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="audiodup-decisions.csv"',
                **_PRIVATE,
            },
        )
    document = decisions_document(decisions, latest_only=not history)
    return Response(dumps(document), media_type="application/json", headers=_PRIVATE)


@api_router.get("/{upload_id}/decisions", tags=["review"])
async def upload_decisions(request: Request, upload_id: UploadId) -> Response:
    """Every decision on one upload, oldest first (the last is in force)."""
    await _reviewer(request)

    def read() -> list[ReviewDecision]:
        with _catalog(request) as catalog:
            return catalog.decisions(upload_id)

    document = decisions_document(await run_in_threadpool(read), latest_only=False)
    return Response(dumps(document), media_type="application/json", headers=_PRIVATE)


_DECISION_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": DecisionIn.model_json_schema()}},
    }
}


@api_router.post(
    "/{upload_id}/decisions", status_code=201, tags=["review"], openapi_extra=_DECISION_DOC
)
async def record_decision(request: Request, upload_id: UploadId) -> Response:
    """Record a decision on a flagged upload (API keys only: a browser uses the pages)."""
    reviewer = await _require_review(request)  # before the body is read
    decision = await _decision_in(request)
    made = await run_in_threadpool(
        _record, request, upload_id, decision.work_id, decision.decision, decision.note, reviewer
    )
    if made is None:
        raise not_found(f"upload {upload_id} has no screened match with work {decision.work_id}")
    return Response(dumps(made), status_code=201, media_type="application/json")


# -- the queue and the evidence ---------------------------------------------------------------
def flagged_uploads(
    catalog: Catalog, filters: pages.QueueFilter, after_id: int = 0, page_size: int = PAGE_SIZE
) -> tuple[list[pages.QueueRow], int | None]:
    """One page of flagged uploads after ``after_id`` that pass ``filters``, by upload id, and
    the id the next page starts after (None: no more)."""
    verdicts = (filters.verdict,) if filters.verdict else pages.FLAGGED
    latest = {d.upload_id: d for d in catalog.latest_decisions()}
    until = _day_after(filters.until)
    rows: list[pages.QueueRow] = []
    cursor = after_id
    while True:
        window = []
        for verdict in verdicts:
            window += catalog.store.find_uploads(
                verdict=verdict,
                uploader=filters.uploader or None,
                since=filters.since or None,
                after_id=cursor,
                limit=page_size,
            )
        if not window:
            return rows, None
        # the first page_size ids of the union: every verdict's query returned its first ones
        window = sorted(window, key=lambda found: found[0].upload_id)[:page_size]
        for upload, screening in window:
            cursor = upload.upload_id
            if until is not None and upload.recorded_at >= until:
                return rows, None  # ids follow recording times: every later one is later

            decision = latest.get(upload.upload_id)
            if filters.undecided and decision is not None:
                continue
            found = _screening_of(upload, screening)
            rows.append(
                pages.QueueRow(
                    upload,
                    found.name,
                    found.verdict,
                    found.screened_at,
                    found.matches[0] if found.matches else None,
                    decision,
                )
            )
            if len(rows) == page_size:
                return rows, cursor


@dataclass(frozen=True)
class _Sources:
    upload_path: str
    reference_path: str
    match: Match
    upload_name: str


@dataclass(frozen=True)
class _Screened:
    """A recorded upload with the service's screening of it."""

    upload: UploadInfo
    verdict: str
    screened_at: str
    matches: list[Match]
    name: str  # what the page calls it: its title, else the file name the client sent


def _screened(catalog: Catalog, upload_id: int) -> _Screened | None:
    found = catalog.store.find_uploads(upload_id=upload_id, limit=1)
    if not found or found[0][1] is None:
        return None
    return _screening_of(*found[0])


def _screening_of(upload: UploadInfo, screening) -> _Screened:
    """The upload and what its stored verdict entry says (matches; the client's file name,
    shown, never used as a path). A damaged entry shows no match rather than failing."""
    try:
        entry = json.loads(screening.result)
        matches = [match_from_dict(m) for m in entry.get("matches", ())]
        sent = entry.get("path")
    except (ValueError, TypeError, KeyError, AttributeError):
        matches, sent = [], None
    name = upload.title or (sent if isinstance(sent, str) and sent else None)
    return _Screened(
        upload,
        screening.verdict,
        screening.screened_at,
        matches,
        name or f"upload {upload.upload_id}",
    )


def _chosen(matches: list[Match], work_id: int | None) -> Match:
    return next((m for m in matches if m.work_id == work_id), matches[0])


def _sources(request: Request, upload_id: int, work_id: int) -> _Sources:
    with _catalog(request) as catalog:
        found = _screened(catalog, upload_id)
        matches = [] if found is None else found.matches
        match = next((m for m in matches if m.work_id == work_id), None)
        work = catalog.work(work_id) if match is not None else None
        if found is None or match is None or work is None:
            raise not_found(f"upload {upload_id} has no match with work {work_id}")
        # the files themselves: a name that is not UTF-8 is shown otherwise
        upload_file = catalog.store.upload_file(upload_id) or found.upload.source_path
        work_file = catalog.store.work_file(work_id) or work.path
    return _Sources(upload_file, work_file, match, found.name)


def _pair(request: Request, upload_id: int, work_id: int) -> ListeningPair:
    src = _sources(request, upload_id, work_id)
    settings = request.app.state.engine.catalog.settings
    try:
        m = src.match
        upload = signal_audio(load_audio(src.upload_path, settings), m.signal, settings)
        reference = load_audio(src.reference_path, settings)
        return listening_pair(
            upload.samples,
            reference.samples,
            upload.sample_rate_hz,
            tempo_ratio=m.tempo_ratio,
            pitch_shift_semitones=m.pitch_shift_semitones,
            query_start_s=m.query_start_s,
            query_end_s=m.query_end_s,
            ref_start_s=m.ref_start_s,
        )
    except (AudiodupError, OSError, ValueError) as exc:
        raise ApiError(409, "audio_unavailable", f"the excerpts cannot be made: {exc}") from None


def _picture(request: Request, upload_id: int, work_id: int) -> bytes:
    src = _sources(request, upload_id, work_id)
    settings = request.app.state.engine.catalog.settings
    try:
        upload = signal_audio(load_audio(src.upload_path, settings), src.match.signal, settings)
        drawn = drawn_queries(upload, settings)
    except (AudiodupError, OSError) as exc:
        raise ApiError(409, "audio_unavailable", f"the upload cannot be read: {exc}") from None
    with _catalog(request) as catalog:
        try:
            query, how, evidence = most_patterns(catalog, drawn, work_id)
            name = titled(src.upload_name, how)
            return render_explain(
                catalog, query, work_id, upload_name=name, dpi=PICTURE_DPI, evidence=evidence
            )
        except (ClusterError, CatalogError) as exc:  # the cluster or the catalog failed, not
            raise engine_error(exc) from None  # the picture (the catalog's text: to the log)
        except AudiodupError as exc:
            raise ApiError(409, "picture_unavailable", str(exc)) from None


def _record(
    request: Request, upload_id: int, work_id: int, decision: str, note: str, reviewer: str
) -> ReviewDecision | None:
    """Record a decision on a flagged upload against one of its matches (None: no such
    upload, screening or match)."""
    with _catalog(request) as catalog:
        found = _screened(catalog, upload_id)
        if found is None or all(m.work_id != work_id for m in found.matches):
            return None
        try:
            return catalog.record_decision(upload_id, work_id, decision, note, reviewer)
        except CatalogError as exc:
            if "is not in the catalog" in str(exc):
                return None
            raise


# -- sessions, forms and answers --------------------------------------------------------------
@contextmanager
def _catalog(request: Request) -> Iterator[Catalog]:
    engine = request.app.state.engine
    engine.wait_open()
    with engine.lock:
        engine.check_same_catalog()
        yield engine.catalog


def _secret(request: Request) -> bytes:
    state = request.app.state
    secret = getattr(state, "review_secret", None)
    if secret is None:
        secret = sessions.load_secret(Path(state.config.db) / "service")
        state.review_secret = secret
    return secret


def _session(request: Request) -> sessions.Session | None:
    """The signed-in reviewer, while the session is valid and its key is live and still
    holds the ``review`` scope."""
    session = sessions.read(_secret(request), request.cookies.get(sessions.SESSION_COOKIE))
    if session is None:
        return None
    for record in request.app.state.keys.records():
        if record.key_id == session.key_id:
            if record.revoked_at is None and record.allows("review"):
                request.state.key_name = record.name
                return session
            return None
    return None


async def _reviewer(request: Request) -> str:
    """The reviewer of an API call: a Bearer key with the review scope, else the browser's
    session (for reads: ``SameSite=Strict`` keeps other sites' pages from sending it)."""
    if "authorization" in request.headers:
        return await _require_review(request)
    session = _session(request)
    if session is None:
        raise ApiError(
            401,
            "unauthorized",
            "send an API key ('Authorization: Bearer KEY') or sign in at /review/login",
            {"WWW-Authenticate": "Bearer"},
        )
    return session.name


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != own:  # "null" too: a sandboxed or file page
        raise ApiError(403, "forbidden", "a form of another site cannot post here")


async def _form(request: Request):
    kind = intake.media_type(request.headers.get("content-type"))
    if kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "post the review form as a form")
    body = await intake.capped_body(request, _MAX_FORM_BYTES, "a review form")
    # a note that is no UTF-8 is refused, not replaced
    if kind == "multipart/form-data":
        return await intake.text_form(request, body, max_fields=8)
    intake.text_pairs(body, "form")

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return await Request(request.scope, replay).form(max_files=0, max_fields=8)


async def _decision_in(request: Request) -> DecisionIn:
    """The decision of an API call's JSON body, read up to the review form's size."""
    kind = intake.media_type(request.headers.get("content-type"))
    if kind != "application/json":
        raise ApiError(415, "unsupported_media_type", "post the decision as application/json")
    body = await intake.capped_body(request, _MAX_FORM_BYTES, "a decision")
    try:
        return DecisionIn.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def _decision_problem(decision: str, note: str) -> str | None:
    if decision not in REVIEW_LABELS:
        return "choose copy, not a copy or escalate"
    if len(note) > MAX_NOTE_CHARS:
        return f"the note is longer than {MAX_NOTE_CHARS} characters"
    if not _storable(note):
        return "the note holds a lone surrogate, which is no text"
    return None


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _cached(request: Request, key: tuple, make: Callable):
    """``make()``, kept for the next requests of the same ``key`` (a few per worker). The two
    players ask at once for the two halves of one pair: the second waits for the first's
    result instead of decoding and stretching again."""
    state = request.app.state
    cache = getattr(state, "review_cache", None)
    if cache is None:
        cache = state.review_cache = (threading.Lock(), OrderedDict(), {})
    guard, entries, making = cache
    with guard:
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
        turn = making.setdefault(key, threading.Lock())
    with turn:
        with guard:
            if key in entries:
                return entries[key]
        try:
            value = make()
            with guard:
                entries[key] = value
                while len(entries) > _CACHE_ENTRIES:
                    entries.popitem(last=False)
        finally:
            with guard:
                making.pop(key, None)
    return value


def _date_text(text: str) -> str:
    try:
        return date.fromisoformat(text.strip()).isoformat() if text.strip() else ""
    except ValueError:
        return ""


def _day_after(text: str) -> str | None:
    """The day after the date ``text`` (None: no date, or the last day there is: no bound)."""
    day = date.fromisoformat(text) if text else date.max
    return None if day == date.max else (day + timedelta(days=1)).isoformat()


def _nonce() -> str:
    return secrets.token_urlsafe(16)


_PRIVATE = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


def _html(text: str, nonce: str, status: int = 200) -> HTMLResponse:
    # nothing but this server's own images, audio and forms; the one style block by nonce
    policy = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self'; media-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    headers = {
        **_PRIVATE,
        "Content-Security-Policy": policy,
        "Referrer-Policy": "same-origin",  # "no-referrer" makes form posts say Origin: null
        "X-Frame-Options": "DENY",
    }
    return HTMLResponse(text, status_code=status, headers=headers)


def _to_login() -> Response:
    return RedirectResponse("/review/login", status_code=303)


def _message_page(title: str, text: str, status: int) -> HTMLResponse:
    nonce = _nonce()
    body = (
        f'<p class="error-text" role="alert">{pages._e(text)}</p><p><a href="/review">queue</a></p>'
    )
    return _html(pages.page(title, nonce, body, reviewer=None, csrf=None), nonce, status=status)


def _not_found_page(text: str) -> HTMLResponse:
    return _message_page("not found", text, 404)


def _bad_request_page(text: str) -> HTMLResponse:
    return _message_page("decision not recorded", text, 400)


def _forbidden_page() -> HTMLResponse:
    return _message_page(
        "forbidden", "the form has expired or came from elsewhere; reload the page", 403
    )
