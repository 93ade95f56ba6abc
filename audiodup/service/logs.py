"""Structured logs: one JSON object per line on stderr, with the request id. API keys never
reach a log: requests are logged by the key's *name*, and headers are not logged."""

from __future__ import annotations

import json
import logging
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


def log_config(level: str) -> dict:
    """A ``logging.config.dictConfig`` for the service and uvicorn: JSON lines on stderr
    (uvicorn's access log is off: the service logs each request itself)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
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


def event(message: str, level: int = logging.INFO, exc_info=None, **fields) -> None:
    LOGGER.log(level, message, exc_info=exc_info, extra={"fields": fields})


def configure(level: str) -> None:
    import logging.config

    logging.config.dictConfig(log_config(level))
    sys.stderr.reconfigure(line_buffering=True)
