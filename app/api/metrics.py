"""Prometheus metrics, optionally behind METRICS_TOKEN."""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, Response, current_app, request

from ..errors import unauthorized
from ..observability import metrics_text
from ..readiness import scrape_gauges

bp = Blueprint("metrics", __name__)


def _digest(text: str) -> bytes:
    # Compared as digests: equal lengths, so neither the token's content nor its length leaks through timing.
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


@bp.get("/metrics")
def metrics():
    """The exposition of every process; 401 without `Bearer <METRICS_TOKEN>` when that is set."""
    token = current_app.config["METRICS_TOKEN"]
    if token:
        supplied = request.headers.get("Authorization", "")
        if not supplied:
            raise unauthorized("missing_token", "This endpoint needs the metrics token.")
        scheme, _, credential = supplied.partition(" ")
        matches = hmac.compare_digest(_digest(credential.strip()), _digest(token))
        if scheme.lower() != "bearer" or not matches:
            raise unauthorized("invalid_token", "This endpoint needs the metrics token.")
    body, content_type = metrics_text()
    return Response(body + scrape_gauges(current_app.config), content_type=content_type)
