"""Observability: Prometheus metrics, and the wiring of Relay's logs (app/logs.py) into the app."""

from __future__ import annotations

import os

from flask import Flask, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from . import logs


def configure_logging(app: Flask) -> None:
    """One format for the whole process (app/logs.py), every handler redacting, a line per request."""
    logs.install(app.config)
    logs.init_request_log(app)


# -- Prometheus metrics ------------------------------------------------------------
# Labels are bounded: never a user, tenant or stream id, nor a method or path a client made up.
# With PROMETHEUS_MULTIPROC_DIR set (make run and the Procfile set it), gunicorn and Celery
# processes share one view.
AUTH_FAILURES = Counter("auth_failures_total", "Failed authentications", ["reason", "endpoint"])
RATE_LIMIT_HITS = Counter("rate_limit_hits_total", "Requests refused by a limit", ["limit", "endpoint"])
SECURITY_VIOLATIONS = Counter("security_violations_total", "Security-relevant refusals", ["type", "severity"])
HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
HTTP_DURATION = Histogram("http_request_duration_seconds", "Time to the response's headers", ["method", "endpoint"])
STREAMS_ACTIVE = Gauge("relay_streams_active", "Open SSE streams", multiprocess_mode="livesum")
STREAM_TTFT = Histogram(
    "relay_stream_ttft_seconds",
    "Provider time to first chunk, measured by the worker",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STREAMS_TOTAL = Counter("relay_streams_total", "Finished streams by outcome", ["outcome"])
LLM_COST = Counter("relay_llm_cost_usd_total", "Provider spend in USD", ["model"])
WEBHOOK_DELIVERIES = Counter("relay_webhook_deliveries_total", "Outbound webhook attempts", ["outcome"])
STREAM_DISPATCH = Counter(
    "relay_stream_dispatch_total",
    "How generation jobs were sent: direct (a listening worker claimed it), celery, celery_after_offer",
    ["path"],
)
DEPENDENCY_ERRORS = Counter("relay_dependency_errors_total", "Dependency failures answered with 503", ["dependency"])


# The methods Relay's routes answer (HEAD and OPTIONS come with them); anything else is one label.
SERVED_METHODS = frozenset({"GET", "HEAD", "POST", "DELETE", "OPTIONS"})


def endpoint_label() -> str:
    """The matched route (bounded), never the raw path with ids in it; 404s and 405s are "unmatched"."""
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def method_label() -> str:
    """The request's method when Relay serves it, else "other": a client cannot mint series."""
    return request.method if request.method in SERVED_METHODS else "other"


def metrics_text() -> tuple[bytes, str]:
    """The exposition of this process, or of all processes in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
