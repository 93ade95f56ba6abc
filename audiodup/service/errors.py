"""API errors: one exception type the application turns into a JSON body with the request id
(``{"error": {"status", "code", "message", "request_id"}}``)."""

from __future__ import annotations


class ApiError(Exception):
    """An HTTP error answer. ``code`` is a stable machine-readable word (``too_large``,
    ``unsupported_media_type``, ...); ``message`` one line for a person."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)
