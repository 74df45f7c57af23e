"""Liveness and readiness. Never a URL, host, credential or secret."""

from __future__ import annotations

import time

from flask import Blueprint, current_app
from sqlalchemy import text

from .. import __version__
from ..extensions import database, redis_store

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


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception:  # noqa: BLE001 - any failure means "not ready"; details stay in logs
        return "failed"


def _workers() -> str:
    try:
        replies = current_app.extensions["celery"].control.ping(timeout=0.5)
    except Exception:  # noqa: BLE001
        return "none"
    return "ok" if replies else "none"


def _database_probe() -> None:
    with database.session() as session:
        session.execute(text("SELECT 1"))


@bp.get("/health/ready")
def ready():
    checks = {
        "redis": _check(redis_store.client.ping),
        "database": _check(_database_probe),
    }
    checks["workers"] = _workers() if checks["redis"] == "ok" else "none"
    failing = checks["redis"] != "ok" or checks["database"] != "ok"
    body = {"status": "unavailable" if failing else "ready", "checks": checks}
    return (body, 503, {"Retry-After": "5"}) if failing else body
