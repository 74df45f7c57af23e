"""Liveness and readiness. Never a URL, host, credential or secret."""

from __future__ import annotations

import time

from flask import Blueprint, current_app

from .. import __version__, readiness

bp = Blueprint("health", __name__)
_STARTED = time.monotonic()


@bp.get("/health")
def health():
    config = current_app.config
    return {
        "status": "ok",
        "version": __version__,
        "uptime_s": round(time.monotonic() - _STARTED, 1),
        "secured": True,
        "jwt_enabled": bool(config["JWT_SECRET"] or config["JWKS_URL"]),
    }


@bp.get("/health/ready")
def ready():
    checks = readiness.checks()
    if readiness.is_ready(checks):
        return {"status": "ready", "checks": checks}
    return {"status": "unavailable", "checks": checks}, 503, {"Retry-After": "5"}
