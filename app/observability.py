"""JSON logs that carry the request id, and Prometheus metrics."""

from __future__ import annotations

import logging
import os
import re
import sys
from contextvars import ContextVar
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from pythonjsonlogger.json import JsonFormatter

_pid = os.getpid()


def _remember_pid() -> None:
    global _pid
    _pid = os.getpid()


def _process_id() -> int:
    return _pid


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Each metric update checks the pid (a fork needs its own file). os.getpid is a system
    # call, several per request; the pid remembered, and renewed in a forked child, is not.
    os.register_at_fork(after_in_child=_remember_pid)
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_id)  # type: ignore[no-untyped-call]

request_id_var: ContextVar[str] = ContextVar("request_id", default="")
subject_var: ContextVar[str] = ContextVar("subject", default="")
# The service acting for the user (a valid X-Service-Token), logged beside the subject.
service_subject_var: ContextVar[str] = ContextVar("service_subject", default="")

REQUESTS = Counter("allot_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "allot_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GENERATION_RETRIES = Counter(
    "allot_generation_conflict_retries_total",
    "Write transactions retried after losing a race",
)
RATE_LIMITED = Counter(
    "allot_rate_limit_rejections_total", "Requests refused by a rate limit", ["kind"]
)
POOL_CHECKED_OUT = Gauge(
    "allot_db_pool_checked_out",
    "Database connections in use",
    multiprocess_mode="livesum",
)
REPLICA_LAG = Gauge(
    "allot_db_replica_lag_seconds",
    "Upper bound on the read replica's staleness (-1: not usable)",
    multiprocess_mode="max",
)
REPLICA_READS = Counter(
    "allot_db_stale_reads_total",
    "Reads that may be stale, by where they were served",
    ["target"],
)
KEYSTONE_VALIDATIONS = Counter(
    "allot_keystone_validations_total",
    "Keystone token validations asked of Keystone, by outcome (valid, invalid, unavailable)",
    ["result"],
)
KEYSTONE_CACHE_HITS = Counter(
    "allot_keystone_cache_hits_total",
    "Keystone tokens answered from the cache, by what was remembered (valid, invalid)",
    ["result"],
)
KEYSTONE_FAILURES = Counter(
    "allot_keystone_failures_total",
    "Calls to Keystone that gave no answer, by reason",
    ["reason"],
)
KEYSTONE_LATENCY = Histogram(
    "allot_keystone_request_duration_seconds",
    "Latency of calls to Keystone (validate a token; authenticate allot's service user)",
    ["call"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Belt and braces: whatever a log call is handed, a bearer token never reaches the output.
_SECRET_RE = re.compile(
    r"(?i)(bearer\s+|x-(?:auth|service|subject)-token[\"':=\s]+)[A-Za-z0-9._~+/=-]+"
)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.subject = subject_var.get()
        record.service_subject = service_subject_var.get()
        if isinstance(record.msg, str):
            record.msg = _SECRET_RE.sub(r"\1[redacted]", record.msg)
        return True


_make_record = logging.getLogRecordFactory()


def _record_with_context(*args: Any, **kwargs: Any) -> logging.LogRecord:
    # Every record, whichever handler sees it first, carries the request's id and subject.
    record = _make_record(*args, **kwargs)
    record.request_id = request_id_var.get()
    record.subject = subject_var.get()
    record.service_subject = service_subject_var.get()
    return record


class _AllotHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring twice replaces it and keeps everyone else's handlers."""


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(subject)s "
        "%(service_subject)s",
        rename_fields={"asctime": "time", "levelname": "level"},
    )


def configure_logging(level: str) -> None:
    handler = _AllotHandler(sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(_ContextFilter())
    logging.setLogRecordFactory(_record_with_context)
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _AllotHandler)] + [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True
    # Casbin prints its whole model at INFO on every load; httpx a line per call to Keystone.
    for chatty in ("casbin", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    # Uvicorn's own loggers go through the same JSON handler.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True


def metrics_payload() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
