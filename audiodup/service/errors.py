"""API errors: one exception type the application turns into a JSON body with the request id
(``{"error": {"status", "code", "message", "request_id"}}``)."""

from __future__ import annotations

import logging

from .. import results
from ..errors import (
    AudioDecodeError,
    AudiodupError,
    CatalogBusyError,
    CatalogError,
    ClusterError,
    DiskFullError,
    SchedulerUnreachableError,
)
from . import logs


class ApiError(Exception):
    """An HTTP error answer. ``code`` is a stable machine-readable word (``too_large``,
    ``unsupported_media_type``, ...); ``message`` one line for a person; ``logged`` the
    operator's detail (the catalog's paths), written to the log with the request id and never
    sent to the client."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        logged: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.logged = logged


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def engine_error(exc: BaseException) -> ApiError:
    """The API error of a library error met while screening, recording or reading: 422 for an
    upload that cannot be screened, 503 (``Retry-After``) for a busy catalog, 507 for a full
    disk, 503 for another catalog error, 503 (``Retry-After``) for a Dask cluster that did
    not answer (``serve --dask``). Anything else is raised again. A catalog error's own text
    names the service's files: it is logged (:attr:`ApiError.logged`), the answer says what
    kind of error it was."""
    if isinstance(exc, ApiError):
        return exc
    text = results.shown_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if isinstance(exc, AudioDecodeError):
        return ApiError(422, "undecodable", f"the upload cannot be screened: {text}")
    if isinstance(exc, CatalogBusyError):
        message = "the catalog is busy with another writer; try again"
        return ApiError(503, "busy", message, {"Retry-After": "5"}, logged=text)
    if isinstance(exc, DiskFullError):
        return ApiError(507, "disk_full", "the service's disk is full", logged=text)
    if isinstance(exc, CatalogError):
        message = "the catalog cannot be read or written (the service's log says why)"
        return ApiError(503, "catalog_error", message, logged=text)
    if isinstance(exc, SchedulerUnreachableError):  # its address is the operator's, not shown
        logs.event("dask scheduler unreachable", logging.WARNING, error=text)
        text = "the Dask scheduler cannot be reached (the service's log says why)"
    if isinstance(exc, ClusterError):
        return ApiError(503, "cluster_unavailable", text, {"Retry-After": "5"})
    if isinstance(exc, AudiodupError):
        return ApiError(422, "rejected", text)
    raise exc
