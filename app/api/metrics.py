"""Prometheus metrics, optionally behind METRICS_TOKEN."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request

from ..errors import unauthorized
from ..observability import metrics_text

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    token = current_app.config["METRICS_TOKEN"]
    if token:
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
            raise unauthorized("invalid_token", "This endpoint needs the metrics token.")
    body, content_type = metrics_text()
    return Response(body, content_type=content_type)
