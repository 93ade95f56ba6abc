"""Prometheus metrics. With several worker processes ``audiodup serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the workers start, and ``/metrics``
sums every worker's values (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import contextlib
import os
import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "audiodup_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "audiodup_http_request_duration_seconds",
    "Time from request to response.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
VERDICTS = Counter("audiodup_verdicts_total", "Uploads screened, by verdict.", ["verdict"])
RATE_LIMITS_UNENFORCED = Counter(
    "audiodup_rate_limits_unenforced_total",
    "Requests let through unlimited because the rate-limit buckets could not be read.",
)
QUEUE_DEPTH = Gauge(
    "audiodup_engine_queue_depth",
    "Engine calls waiting or running (summed over live workers).",
    multiprocess_mode="livesum",
)
CATALOG_WORKS = Gauge(
    "audiodup_catalog_works",
    "Works (distinct audio) in the catalog.",
    multiprocess_mode="mostrecent",
)
CATALOG_UPLOADS = Gauge(
    "audiodup_catalog_uploads", "Uploads in the ledger.", multiprocess_mode="mostrecent"
)
CATALOG_HOURS = Gauge(
    "audiodup_catalog_hours", "Hours of audio in the catalog.", multiprocess_mode="mostrecent"
)

_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def forget_dead_workers() -> None:
    """Drop the live gauges of worker processes that are gone (a killed worker cannot)."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            found = _LIVE_FILE.fullmatch(name)
            if found is None:
                continue
            pid = int(found.group(1))
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                multiprocess.mark_process_dead(pid, folder)
            except PermissionError:
                pass


def render() -> tuple[bytes, str]:
    """The metrics text and its content type."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        forget_dead_workers()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
