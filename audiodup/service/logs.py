"""Structured logs: one JSON object per line on stderr, with the request id. API keys never
reach a log: requests are logged by the key's *name*, and headers are not logged."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

LOGGER = logging.getLogger("audiodup.service")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


class StderrLines(logging.Handler):
    """Each record as one ``write(2)`` of a whole line to a duplicate of stderr taken when the
    handler is made (in each worker, before any decoding). The decoder silences libmpg123 by
    pointing file descriptor 2 at /dev/null while it decodes
    (:func:`audiodup.audio.quiet_native_stderr`), for the whole process: while a worker's engine
    thread decoded, the lines its event loop logged went there (measured: 1 to 6 of 16 request
    lines lost at 16 concurrent uploads)."""

    def __init__(self, level: int = logging.NOTSET):
        super().__init__(level)
        self.fd = os.dup(2)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = memoryview((self.format(record) + "\n").encode("utf-8", "replace"))
            while data:
                data = data[os.write(self.fd, data) :]
        except Exception:  # noqa: BLE001 - logging's own policy: report, never raise
            self.handleError(record)

    def close(self) -> None:
        with self.lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
        super().close()


def log_config(level: str) -> dict:
    """A ``logging.config.dictConfig`` for the service and uvicorn: JSON lines on stderr
    (uvicorn's access log is off: the service logs each request itself)."""
    handler = {"()": StderrLines, "formatter": "json"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLines}},
        "handlers": {"stderr": handler},
        "loggers": {
            name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
            for name in ("audiodup.service", "uvicorn", "uvicorn.error")
        }
        | {"uvicorn.access": {"handlers": [], "propagate": False}},
    }


class ToServiceLog(logging.Handler):
    """Another library's records (Dask's) written as the service's JSON lines."""

    def emit(self, record: logging.LogRecord) -> None:
        LOGGER.handle(record)


def event(message: str, level: int = logging.INFO, exc_info=None, **fields) -> None:
    LOGGER.log(level, message, exc_info=exc_info, extra={"fields": fields})


def configure(level: str) -> None:
    import logging.config

    logging.config.dictConfig(log_config(level))
    sys.stderr.reconfigure(line_buffering=True)
