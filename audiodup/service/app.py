"""The ASGI application of ``audiodup serve`` (FastAPI).

Routes (the OpenAPI document is ``/openapi.json``, the interactive docs ``/docs``):

=============================  =========  ====================================================
``POST /v1/screen``            screen     screen one upload: the ``screen --json`` document
``POST /v1/uploads``           screen     screen and record one upload (``Idempotency-Key``)
``GET /v1/uploads``            screen     the ledger with verdicts (``verdict``, ``uploader``,
                                          ``since``, ``after``, ``limit``)
``GET /v1/uploads/{id}``       screen     one upload, its verdict and metadata
``GET /v1/works/{id}``         screen     one work (content) and its uploads
``GET /v1/jobs/{id}``          screen     an asynchronous job (202 answers point here)
``GET /healthz``, ``/readyz``  none       the process answers / the catalog is open
``GET /metrics``               none       Prometheus metrics
=============================  =========  ====================================================

``review`` and ``admin`` keys also pass ``screen``-scoped reads of uploads and works; ``admin``
passes everything, and only ``admin`` may record a ``reference`` upload. The review queue
(``audiodup.service.review``, when installed) is mounted at ``/review`` (pages) and
``/v1/reviews`` (its API).

Why FastAPI: the OpenAPI document and interactive docs come from the route signatures (the
contract schemathesis tests against), dependencies give one place for auth and the catalog
lock, and it runs on uvicorn, whose multiprocess supervisor replaces a worker that dies.
Litestar would do as well; FastAPI's ecosystem (schemathesis examples, Starlette's multipart
parser we stream through) decided it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import time
import traceback
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import results
from ..audio import load_audio
from ..catalog import clock, since
from ..errors import AudiodupError
from ..fingerprint import UploadFingerprints
from ..metadata import parse_timestamp, upload_date_problem
from ..schema import SCHEMA_VERSION
from ..store import NewWork, Screening
from . import intake, logs, metrics
from .auth import KeyFile, KeyFileError, RateLimiter, require_scope
from .config import CONFIG_ENV, ServiceConfig
from .engine import Engine
from .errors import ApiError, engine_error, forbidden, not_found
from .jobs import JobStore, process_alive

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_MAX_FIELD_CHARS = 1000
UPLOAD_METADATA = ("uploader", "uploaded_at", "title", "artist", "isrc", "upc", "external_id")


class Mode(StrEnum):
    auto = "auto"
    sync = "sync"
    async_ = "async"


class VerdictFilter(StrEnum):
    duplicate = "duplicate"
    suspect = "suspect"
    clean = "clean"


class Role(StrEnum):
    upload = "upload"
    reference = "reference"


# -- the request body, documented for OpenAPI (the handler reads it itself) ------------------
_AUDIO_BODY = {"type": "string", "format": "binary"}
_FORM = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "the audio"},
        **{
            name: {"type": "string", "maxLength": _MAX_FIELD_CHARS}
            for name in (*UPLOAD_METADATA, "role")
        },
    },
}
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _FORM},
            "audio/*": {"schema": _AUDIO_BODY},
            "application/octet-stream": {"schema": _AUDIO_BODY},
        },
    }
}
_ERROR_DOC = {
    "description": "an error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["status", "code", "message", "request_id"],
                        "properties": {
                            "status": {"type": "integer"},
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "request_id": {"type": "string"},
                        },
                    }
                },
            }
        }
    },
}
_ERRORS = {
    status: _ERROR_DOC
    for status in (400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503, 504, 507)
}


@dataclass(frozen=True)
class UploadRequest:
    """What ``POST /v1/uploads`` records besides the audio."""

    metadata: dict[str, str]
    role: str
    client: str
    idempotency_key: str | None
    request_hash: str


def create_app(config: ServiceConfig, *, open_in_background: bool = False) -> FastAPI:
    """The application for one worker process: it opens the catalog at start-up (and closes
    it at shutdown), then serves the routes in the module docstring. With
    ``open_in_background`` (``audiodup serve``'s workers) it serves at once and opens the
    catalog in the engine thread: ``/readyz`` says why it is not ready until then, and
    requests wait for the catalog."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = Engine(config)
        app.state.engine = engine
        if open_in_background:
            engine.open_in_background()
        else:
            await asyncio.get_running_loop().run_in_executor(None, engine.open)
        app.state.jobs.sweep()
        JobStore(config.read_only_jobs_dir).sweep()
        # read now: a key file there at the start that goes missing later is an error, not "no
        # keys" (one unreadable now is answered 503 at each request)
        with contextlib.suppress(KeyFileError):
            app.state.keys.records()
        _sweep_incoming(config)
        try:
            yield
        finally:
            engine.close()

    app = FastAPI(
        title="audiodup",
        version=SCHEMA_VERSION,
        summary="Screen uploads for tempo-, pitch- or length-altered copies of catalog works.",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.config = config
    app.state.keys = KeyFile(config.keys_path)
    app.state.rate_limiter = RateLimiter(
        config.db / "service" / "rate-limits.sqlite",
        config.rate_limit_per_minute,
        config.rate_limit_burst,
    )
    app.state.jobs = JobStore(config.jobs_dir)
    app.state.tasks = set()
    _install_errors(app)
    app.add_middleware(RequestContext)
    _add_routes(app, config)
    _mount_review(app)
    return app


def app_from_environment() -> FastAPI:
    """The factory uvicorn's worker processes call (``audiodup serve`` hands them the config
    in the environment)."""
    config = ServiceConfig.from_json(os.environ[CONFIG_ENV])
    logs.configure(config.log_level)
    return create_app(config, open_in_background=True)


# where the review module's routers are included; a route matched inside one keeps its own path
# in the ASGI scope (FastAPI >= 0.16x), without the prefix
ROUTER_PREFIXES = ("/review", "/v1/reviews")


def _mount_review(app: FastAPI) -> None:
    """The review queue (another module, optional): ``router`` at ``/review``, and its API
    (``api_router``, or ``router`` itself) at ``/v1/reviews``."""
    if importlib.util.find_spec("audiodup.service.review") is None:
        return
    from . import review  # type: ignore[attr-defined]

    page_prefix, api_prefix = ROUTER_PREFIXES
    app.include_router(review.router, prefix=page_prefix)
    app.include_router(getattr(review, "api_router", review.router), prefix=api_prefix)


def _sweep_incoming(config: ServiceConfig) -> None:
    """Remove partial uploads left by a worker that was killed: those of a process of this host
    that is gone, and any older than any request could be (in the catalog's spool folder and in
    the one a read-only catalog's bodies go to)."""
    limit = time.time() - 2 * max(config.request_timeout_s, config.job_timeout_s)
    for folder in (config.incoming_dir, config.read_only_incoming_dir):
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                with contextlib.suppress(OSError):
                    if not entry.name.endswith(".part"):
                        continue
                    orphaned = intake.orphaned_part(entry.name, process_alive)
                    if orphaned or entry.stat().st_mtime < limit:
                        os.unlink(entry.path)


# -- request context: request id, logs, metrics ------------------------------------------------
class RequestContext:
    """Pure ASGI middleware: gives each request an id (the client's ``X-Request-ID`` when it
    is a plain token, else a new one), returns it as ``X-Request-ID``, and logs and counts
    the request when it ends."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("ascii")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            template = route_template(scope)
            metrics.REQUESTS.labels(scope["method"], template, str(status)).inc()
            metrics.LATENCY.labels(scope["method"], template).observe(elapsed)
            state = scope.get("state", {})
            logs.event(
                "request",
                request_id=request_id,
                method=scope["method"],
                route=template,
                path=scope.get("path", ""),
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                key=state.get("key_name"),
                pid=os.getpid(),
            )


def route_template(scope: dict) -> str:
    """The matched route's path template for logs and metrics (``/v1/reviews/{upload_id}``, never
    the client's path), with the prefix of the router it was included under."""
    route = scope.get("route")
    if route is None:
        return "<unmatched>"
    # a router's root (``/review``) has the empty path
    template = getattr(route, "path_format", None) or getattr(route, "path", None) or ""
    regex = getattr(route, "path_regex", None)
    path = scope.get("path", "")
    if regex is None or regex.match(path):
        return template
    for prefix in sorted(ROUTER_PREFIXES, key=len, reverse=True):
        if path.startswith(prefix) and regex.match(path[len(prefix) :]):
            return prefix + template
    return template or "<unmatched>"


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


def _log_detail(exc: ApiError, **where) -> None:
    """An error answer's detail for the operator (:attr:`ApiError.logged`)."""
    logs.event(
        "error detail", logging.WARNING, status=exc.status, code=exc.code, error=exc.logged, **where
    )


class SafeJSONResponse(JSONResponse):
    """JSON whose strings hold no character that drives a terminal (:func:`results.dumps`): an
    upload's name, uploader or title comes back as sent, and ``curl`` to a terminal shows it."""

    def render(self, content) -> bytes:
        return results.dumps(content, compact=True).encode("utf-8")


def error_response(request: Request, status: int, code: str, message: str, headers=None):
    body = {
        "error": {
            "status": status,
            "code": code,
            "message": message,
            "request_id": _request_id(request),
        }
    }
    return SafeJSONResponse(body, status_code=status, headers=headers)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        if exc.logged:
            _log_detail(exc, request_id=_request_id(request))
        return error_response(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(KeyFileError)
    async def keys_unreadable(request: Request, exc: KeyFileError):
        # the operator's file and its path: in the log, not in the answer
        logs.event("key file unreadable", logging.ERROR, error=str(exc))
        return error_response(
            request, 503, "keys_unavailable", "the API keys cannot be read (the log says why)"
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(
            request, exc.status_code, code, str(exc.detail), getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(part) for part in error.get("loc", ()))
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return error_response(request, 422, "invalid_request", "; ".join(problems))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        logs.event(
            "internal error",
            logging.ERROR,
            request_id=_request_id(request),
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc))[-4000:],
        )
        return error_response(
            request, 500, "internal", "internal error; the request id names it in the logs"
        )


# -- the screening work (runs in the engine thread) --------------------------------------------
def _decode(engine: Engine, received: intake.Received):
    config = engine.config
    try:
        audio = load_audio(received.path, engine.catalog.settings)
    except AudiodupError as exc:
        raise engine_error(exc) from None
    if audio.truncated or audio.source_duration_s > config.max_duration_s:
        raise ApiError(
            413, "too_long", f"the upload is longer than {config.max_duration_s:g} s of audio"
        )
    return audio


def _screen(engine: Engine, received: intake.Received, name: str):
    """The decoded upload, its fingerprints (one analysis for screening and the ledger) and
    its verdict."""
    started = clock()  # the verdict's fingerprint_s counts the decoding, as the CLI's does
    audio = _decode(engine, received)
    prints = UploadFingerprints(audio, engine.catalog.settings)
    spent = since(started)  # not the wait for the catalog below
    with engine.read() as catalog:
        verdict = catalog.screen_audio(
            audio, name=name, top_k=engine.config.top_k, prints=prints, fingerprint_time=spent
        )
    return audio, prints, verdict


def screen_work(engine: Engine, received: intake.Received, name: str) -> tuple[int, dict]:
    try:
        _, _, verdict = _screen(engine, received, name)
    finally:
        received.discard()
    metrics.VERDICTS.labels(results.screen_label(verdict)).inc()
    return 200, results.screen_document([verdict])


def record_work(
    engine: Engine, received: intake.Received, name: str, upload: UploadRequest
) -> tuple[int, dict]:
    """Screen the upload, then record it: the received file is kept under its bytes' hash,
    and the upload, its content and its screening are committed in one transaction."""
    try:
        with engine.read():
            earlier = _replay(engine, upload)
        if earlier is not None:
            return earlier
        audio, prints, verdict = _screen(engine, received, name)
        fingerprint = prints.stored()  # from the screening's STFT and peak search: one of each
        kept = intake.keep(received, engine.config.received_dir)
        stat = kept.path.stat()
        item = NewWork(
            path=str(kept.path),
            sha256=audio.sha256,
            duration_s=audio.duration_s,
            fingerprint=fingerprint,
            title=upload.metadata.get("title") or audio.title,
            artist=upload.metadata.get("artist") or audio.artist,
            file_size=stat.st_size,
            file_mtime=stat.st_mtime,
            metadata=dict(upload.metadata),
            role=upload.role,
        )
        entry = results.verdict_to_dict(verdict)
        screening = Screening(
            upload_id=0,
            verdict=results.screen_label(verdict),
            result=json.dumps(results.to_jsonable(entry)),
            screened_at=_now(),
            client=upload.client,
            idempotency_key=upload.idempotency_key,
            request_hash=upload.request_hash,
        )
        committed = None
        try:
            with engine.read() as catalog:
                committed, recorded = catalog.store.record_screened_upload(item, screening)
                if committed.status == "present":  # the same key won a race with this request
                    return _answer_replay(engine, upload, recorded)
                found = catalog.store.find_uploads(upload_id=committed.upload_id)
        except BaseException:
            if committed is None:  # a full disk, a replaced catalog: audio no upload records
                intake.drop(kept, engine.config.received_dir)
            raise
        if committed.status == "added":  # a shard was written
            engine.merge_soon()
    finally:
        received.discard()
    metrics.VERDICTS.labels(screening.verdict).inc()
    info, stored = found[0]
    return 201, {
        "schema_version": SCHEMA_VERSION,
        "status": committed.status,
        "replayed": False,
        "upload": upload_record(info, stored),
    }


def _replay(engine: Engine, upload: UploadRequest) -> tuple[int, dict] | None:
    """The answer already given to this idempotency key (caller holds the lock)."""
    if upload.idempotency_key is None:
        return None
    earlier = engine.catalog.store.screening_by_key(upload.client, upload.idempotency_key)
    return None if earlier is None else _answer_replay(engine, upload, earlier)


def _answer_replay(engine: Engine, upload: UploadRequest, earlier: Screening) -> tuple[int, dict]:
    if earlier.request_hash != upload.request_hash:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with another upload or other metadata",
        )
    found = engine.catalog.store.find_uploads(upload_id=earlier.upload_id)
    if not found:
        raise ApiError(
            409, "upload_removed", "the upload recorded under this Idempotency-Key was removed"
        )
    info, stored = found[0]
    return 200, {
        "schema_version": SCHEMA_VERSION,
        "status": "recorded",
        "replayed": True,
        "upload": upload_record(info, stored),
    }


def upload_record(upload, screening: Screening | None) -> dict:
    """One upload as the API shows it: the ledger fields, then the service's verdict."""
    data = results.to_jsonable(upload)
    data["verdict"] = screening.verdict if screening else None
    data["screened_at"] = screening.screened_at if screening else None
    data["recorded_by"] = screening.client if screening else None
    data["screen"] = json.loads(screening.result) if screening else None
    return data


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="microseconds")


# -- routes --------------------------------------------------------------------------------------
# FastAPI reads the dependencies from the annotations, resolved in this module's globals
screen_scope = require_scope("screen")
read_scope = require_scope("screen", "review")


def _add_routes(app: FastAPI, config: ServiceConfig) -> None:
    @app.get("/healthz", tags=["operations"], summary="The process answers.")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="The catalog is open, its indexes loaded (with dask: its cluster has workers), "
        "and its database readable now.",
        responses={503: _ERROR_DOC},
    )
    async def readyz(request: Request) -> dict:
        engine: Engine = request.app.state.engine
        reason = engine.not_ready_reason()
        if reason is None:
            reason = await run_in_threadpool(engine.unreadable_reason)
        if reason is None:
            reason = await run_in_threadpool(engine.replaced_reason)
        if reason is None:
            reason = await run_in_threadpool(engine.cluster_reason)
        if reason is not None:
            raise ApiError(503, "not_ready", reason, {"Retry-After": "5"})
        return {"status": "ready"}

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics.",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics_endpoint(request: Request) -> Response:
        engine: Engine = request.app.state.engine
        # a scrape does not wait long for a screening: the catalog gauges keep their last value
        if engine.lock.acquire(timeout=2.0):
            try:
                with contextlib.suppress(AudiodupError, ApiError):
                    engine.check_same_catalog()  # not the stats of a replaced catalog
                    stats = engine.catalog.stats()
                    metrics.CATALOG_WORKS.set(stats.works)
                    metrics.CATALOG_UPLOADS.set(stats.uploads)
                    metrics.CATALOG_HOURS.set(stats.hours)
            finally:
                engine.lock.release()
        body, kind = metrics.render()
        return Response(body, media_type=kind)

    async def take_body(request: Request, hash_bytes: bool = True) -> intake.Received:
        engine: Engine = request.app.state.engine
        if not engine.ready:  # whether the catalog can be written decides where bodies go
            await run_in_threadpool(engine.wait_open)
        try:
            return await asyncio.wait_for(
                intake.receive(
                    request,
                    engine.incoming_dir(),
                    config.max_upload_bytes,
                    hash_bytes=hash_bytes,
                ),
                config.request_timeout_s,
            )
        except TimeoutError:
            raise ApiError(408, "request_timeout", "the upload was not received in time") from None

    async def answer(
        request: Request, client: str, mode: Mode, received: intake.Received, kind: str, work
    ) -> JSONResponse:
        engine: Engine = request.app.state.engine
        asynchronous = mode == Mode.async_ or (
            mode == Mode.auto and received.size > config.async_above_bytes
        )
        if asynchronous:
            return _start_job(request, client, kind, work, received.discard)
        # the work removes the received file itself; if it never runs, this does
        status, body = await engine.run(
            work,
            timeout_s=config.request_timeout_s,
            on_dropped=received.discard,
            still_running=_STILL_RECORDING if kind == "upload" else "",
        )
        headers = {}
        if status == 201:
            headers["Location"] = f"/v1/uploads/{body['upload']['upload_id']}"
        return SafeJSONResponse(body, status_code=status, headers=headers)

    @app.post(
        "/v1/screen",
        tags=["screening"],
        summary="Screen one upload (the same JSON document as `audiodup screen --json`).",
        openapi_extra=_BODY_DOC,
        responses={
            200: {"description": "the screen document (schema: screen.schema.json)"},
            202: {"description": "accepted as an asynchronous job; poll its URL"},
            **_ERRORS,
        },
    )
    async def screen_upload(
        request: Request,
        client: Annotated[str, Depends(screen_scope)],
        mode: Annotated[Mode, Query(description="async: answer 202 with a job URL")] = Mode.auto,
    ) -> JSONResponse:
        intake.check_query(request, ("mode",))
        received = await take_body(request, hash_bytes=False)  # nothing is recorded
        if received.fields:
            received.discard()
            raise ApiError(422, "bad_form", "/v1/screen takes only the 'file' part")
        name = received.filename or "upload"
        engine: Engine = request.app.state.engine
        return await answer(
            request,
            client,
            mode,
            received,
            "screen",
            lambda: screen_work(engine, received, name),
        )

    @app.post(
        "/v1/uploads",
        tags=["uploads"],
        summary="Screen one upload and record it in the ledger with its metadata.",
        openapi_extra=_BODY_DOC,
        status_code=201,
        responses={
            200: {"description": "a retried request: the upload recorded the first time"},
            201: {"description": "recorded: the upload, its status and its verdict"},
            202: {"description": "accepted as an asynchronous job; poll its URL"},
            **_ERRORS,
        },
    )
    async def record_upload(
        request: Request,
        client: Annotated[str, Depends(screen_scope)],
        mode: Annotated[Mode, Query(description="async: answer 202 with a job URL")] = Mode.auto,
        idempotency_key: Annotated[
            str | None,
            Header(
                description="A retried request with the same key is recorded once (per API "
                "key); up to 255 visible ASCII characters"
            ),
        ] = None,
        uploader: Annotated[str | None, Query(max_length=_MAX_FIELD_CHARS)] = None,
        uploaded_at: Annotated[
            str | None,
            Query(
                max_length=64,
                description="ISO 8601 date or date-time, not later than a day from now. "
                "Taken from an admin key only (a backfill); any other key's upload is dated "
                "by its arrival and this kept as claimed_uploaded_at",
            ),
        ] = None,
        title: Annotated[str | None, Query(max_length=_MAX_FIELD_CHARS)] = None,
        artist: Annotated[str | None, Query(max_length=_MAX_FIELD_CHARS)] = None,
        isrc: Annotated[str | None, Query(max_length=64)] = None,
        upc: Annotated[str | None, Query(max_length=64)] = None,
        external_id: Annotated[str | None, Query(max_length=_MAX_FIELD_CHARS)] = None,
        role: Annotated[Role | None, Query(description="reference needs an admin key")] = None,
    ) -> JSONResponse:
        if idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise ApiError(
                422, "invalid_request", "Idempotency-Key: 1-255 visible ASCII characters"
            )
        intake.check_query(request, ("mode", *UPLOAD_METADATA, "role"))
        engine: Engine = request.app.state.engine
        if not engine.ready:
            await run_in_threadpool(engine.wait_open)
        if engine.read_only_reason() is not None:  # refused before its body is received
            raise ApiError(
                503,
                "read_only",
                "this service's catalog is read-only: it screens (/v1/screen) but records no "
                "upload",
                logged=engine.read_only_reason(),
            )
        given = {
            "uploader": uploader,
            "uploaded_at": uploaded_at,
            "title": title,
            "artist": artist,
            "isrc": isrc,
            "upc": upc,
            "external_id": external_id,
            "role": role.value if role is not None else None,
        }
        received = await take_body(request)
        try:
            upload = _upload_request(request, client, given, received, idempotency_key)
        except BaseException:
            received.discard()
            raise
        name = received.filename or "upload"
        return await answer(
            request,
            client,
            mode,
            received,
            "upload",
            lambda: record_work(engine, received, name, upload),
        )

    @app.get(
        "/v1/uploads",
        tags=["uploads"],
        summary="The upload ledger with verdicts, oldest first; filter and page through it.",
        responses=_ERRORS,
    )
    def list_uploads(
        request: Request,
        client: Annotated[str, Depends(read_scope)],
        verdict: VerdictFilter | None = None,
        uploader: Annotated[str | None, Query(max_length=_MAX_FIELD_CHARS)] = None,
        since: Annotated[
            str | None,
            Query(max_length=64, description="recorded at or after (ISO 8601, UTC if no zone)"),
        ] = None,
        after: Annotated[int, Query(ge=0, le=2**62, description="upload id to page after")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict:
        # a misspelt filter (uplaoder=) must not list every uploader's uploads
        intake.check_query(request, ("verdict", "uploader", "since", "after", "limit"))
        since_text = None
        if since is not None:
            try:
                since_text = (
                    parse_timestamp(since).astimezone(_utc()).isoformat(timespec="microseconds")
                )
            except (ValueError, OverflowError):
                raise ApiError(
                    422, "invalid_request", "since: not an ISO 8601 date or date-time"
                ) from None
        engine: Engine = request.app.state.engine
        with engine.read() as catalog:
            found = catalog.store.find_uploads(
                verdict=verdict.value if verdict else None,
                uploader=uploader,
                since=since_text,
                after_id=after,
                limit=limit + 1,
            )
        more = len(found) > limit
        found = found[:limit]
        next_url = None
        if more:
            query = {"after": found[-1][0].upload_id, "limit": limit}
            query.update(
                {
                    k: v
                    for k, v in (("verdict", verdict), ("uploader", uploader), ("since", since))
                    if v
                }
            )
            from urllib.parse import urlencode

            next_url = "/v1/uploads?" + urlencode({k: str(v) for k, v in query.items()})
        return {
            "schema_version": SCHEMA_VERSION,
            "uploads": [upload_record(u, s) for u, s in found],
            "next": next_url,
        }

    @app.get(
        "/v1/uploads/{upload_id}",
        tags=["uploads"],
        summary="One upload: its ledger record and verdict.",
        responses=_ERRORS,
    )
    def get_upload(
        request: Request,
        client: Annotated[str, Depends(read_scope)],
        upload_id: Annotated[int, PathParam(ge=1, le=2**62)],
    ) -> dict:
        engine: Engine = request.app.state.engine
        with engine.read() as catalog:
            found = catalog.store.find_uploads(upload_id=upload_id)
        if not found:
            raise not_found(f"no upload {upload_id}")
        info, screening = found[0]
        return {"schema_version": SCHEMA_VERSION, "upload": upload_record(info, screening)}

    @app.get(
        "/v1/works/{work_id}",
        tags=["works"],
        summary="One work (distinct audio) and every upload of it.",
        responses=_ERRORS,
    )
    def get_work(
        request: Request,
        client: Annotated[str, Depends(read_scope)],
        work_id: Annotated[int, PathParam(ge=1, le=2**62)],
    ) -> dict:
        engine: Engine = request.app.state.engine
        with engine.read() as catalog:
            work = catalog.work(work_id)
            uploads = catalog.store.uploads([work_id]) if work else []
            screenings = catalog.store.screenings([u.upload_id for u in uploads])
        if work is None:
            raise not_found(f"no work {work_id}")
        return {
            "schema_version": SCHEMA_VERSION,
            "work": results.to_jsonable(work),
            "uploads": [upload_record(u, screenings.get(u.upload_id)) for u in uploads],
        }

    @app.get(
        "/v1/jobs/{job_id}",
        tags=["screening"],
        summary="An asynchronous job: queued, running, done (with its result) or failed.",
        responses=_ERRORS,
    )
    def get_job(
        request: Request,
        client: Annotated[str, Depends(screen_scope)],
        job_id: Annotated[str, PathParam(max_length=64)],
    ) -> dict:
        job = _job_store(request).get(job_id)
        admin = getattr(request.state, "key_is_admin", False)
        if job is None or (job.get("client") != client and not admin):
            raise not_found(f"no job {results.shown_text(job_id)[:64]}")
        job.pop("pid", None)
        return {"schema_version": SCHEMA_VERSION, **job}


def _utc():
    from datetime import UTC

    return UTC


def _upload_request(
    request: Request,
    client: str,
    given: dict[str, str | None],
    received: intake.Received,
    idempotency_key: str | None,
) -> UploadRequest:
    """The upload's metadata from the query and the form fields (a field given in both is an
    error), checked: known names, bounded lengths, an ISO 8601 ``uploaded_at``, a role."""
    fields = {k: v for k, v in given.items() if v is not None}
    for name, value in received.fields.items():
        if name not in (*UPLOAD_METADATA, "role"):
            raise ApiError(422, "bad_form", f"unknown form field {results.shown_text(name)!r}")
        if name in fields:
            raise ApiError(422, "bad_form", f"{name} is given both in the query and the form")
        if len(value) > _MAX_FIELD_CHARS:
            raise ApiError(422, "bad_form", f"{name} is longer than {_MAX_FIELD_CHARS} characters")
        fields[name] = value
    fields = {k: v for k, v in fields.items() if v.strip()}
    role = fields.pop("role", "upload")
    if role not in ("upload", "reference"):
        raise ApiError(422, "invalid_request", "role: upload or reference")
    admin = getattr(request.state, "key_is_admin", False)
    if role == "reference" and not admin:
        raise forbidden("recording a reference needs an admin key")
    if "uploaded_at" in fields:
        problem = upload_date_problem(fields["uploaded_at"])
        if problem:
            raise ApiError(422, "invalid_request", f"uploaded_at: {problem}")
    request_hash = hashlib.sha256(
        json.dumps([received.sha256, role, sorted(fields.items())]).encode()
    ).hexdigest()
    # the earliest dated upload is a work's original, so only an admin dates one (a backfill
    # of history); any other key's upload is dated by its arrival, the date it gives kept as
    # claimed_uploaded_at (a thief dating his copy an hour before the owner's took the work)
    if not admin and "uploaded_at" in fields:
        fields["claimed_uploaded_at"] = fields.pop("uploaded_at")
    fields.setdefault("uploaded_at", _now())
    return UploadRequest(fields, role, client, idempotency_key, request_hash)


# a 504 (or a job failed by its timeout) of an upload whose screening already runs: it may
# still be recorded, and the Idempotency-Key is how a client learns whether it was
_STILL_RECORDING = (
    "the upload may still be recorded: send it again with the same Idempotency-Key to get its "
    "outcome (without one, a retry records it again)"
)


def _job_store(request: Request) -> JobStore:
    """The jobs of this service: in the catalog, or outside a catalog that cannot be written."""
    engine: Engine = request.app.state.engine
    folder = engine.jobs_dir()
    jobs: JobStore = request.app.state.jobs
    return jobs if folder == jobs.folder else JobStore(folder)


def _start_job(request: Request, client: str, kind: str, work, cleanup) -> JSONResponse:
    """Answer 202 now and run ``work`` in the engine thread; its answer goes to the job
    (``cleanup`` runs if the work never does)."""
    jobs = _job_store(request)
    engine: Engine = request.app.state.engine
    config: ServiceConfig = request.app.state.config
    job_id = jobs.create(client, kind)

    def running():
        jobs.update(job_id, status="running")
        return work()

    async def run() -> None:
        try:
            status, body = await engine.run(
                running,
                timeout_s=config.job_timeout_s,
                on_dropped=cleanup,
                still_running=_STILL_RECORDING if kind == "upload" else "",
            )
            jobs.update(job_id, status="done", http_status=status, result=body)
        except ApiError as exc:
            if exc.logged:
                _log_detail(exc, job_id=job_id)
            jobs.update(
                job_id,
                status="failed",
                http_status=exc.status,
                error={"status": exc.status, "code": exc.code, "message": exc.message},
            )
        except Exception as exc:  # noqa: BLE001 - the job records it, the worker goes on
            logs.event("job failed", logging.ERROR, job_id=job_id, error=repr(exc)[:500])
            jobs.update(
                job_id,
                status="failed",
                http_status=500,
                error={"status": 500, "code": "internal", "message": "internal error"},
            )

    task = asyncio.get_running_loop().create_task(run())
    tasks: set = request.app.state.tasks
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    url = f"/v1/jobs/{job_id}"
    return SafeJSONResponse(
        {"schema_version": SCHEMA_VERSION, "job_id": job_id, "status": "queued", "url": url},
        status_code=202,
        headers={"Location": url},
    )


__all__ = ["app_from_environment", "create_app", "error_response", "upload_record"]
