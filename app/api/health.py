"""Liveness and readiness. Never a URL, host, credential or secret."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import Blueprint, current_app
from sqlalchemy import text

from .. import __version__
from ..extensions import database, redis_store
from ..worker_state import local_model_state

bp = Blueprint("health", __name__)
_STARTED = time.monotonic()
PING_TIMEOUT_SECONDS = 0.5


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


class WorkerCheck:
    """The workers' and local model's state, reused for a few seconds per process: /health/ready
    is public, and each uncached check broadcasts a Celery ping and waits for the answers.
    At most one check runs at a time; callers that arrive meanwhile wait and share its answer."""

    def __init__(self, ttl_s: float, probe: Callable[[], dict[str, str]]) -> None:
        self.ttl_s = ttl_s
        self.probe = probe
        self._lock = threading.Lock()
        self._value: dict[str, str] | None = None
        self._at = 0.0

    def _fresh(self) -> dict[str, str] | None:
        if self._value is not None and time.monotonic() - self._at < self.ttl_s:
            return self._value
        return None

    def get(self) -> dict[str, str]:
        value = self._fresh()
        if value is not None:
            return value
        with self._lock:
            value = self._fresh()  # the check that held the lock may have just answered
            if value is None:
                value = self._value = self.probe()
                self._at = time.monotonic()
            return value


def _probe_workers(app) -> dict[str, str]:
    """`workers`: ok when any worker answers a ping; `local_model`: what live local workers recorded."""
    local_model = _local_model(app.config["REDIS_KEY_PREFIX"])
    try:
        replies = app.extensions["celery"].control.ping(timeout=PING_TIMEOUT_SECONDS)
    except Exception:  # noqa: BLE001
        replies = []
    return {"workers": "ok" if replies else "none", "local_model": local_model}


def _local_model(prefix: str) -> str:
    try:
        return local_model_state(redis_store.client, prefix)
    except Exception:  # noqa: BLE001 - Redis trouble shows in the redis check
        return "none"


def _worker_check() -> WorkerCheck:
    app = current_app._get_current_object()
    check = app.extensions.get("relay.health")
    if check is None:
        check = app.extensions.setdefault(
            "relay.health", WorkerCheck(app.config["HEALTH_WORKER_CACHE_SECONDS"], lambda: _probe_workers(app))
        )
    return check


def _database_probe() -> None:
    with database.session() as session:
        session.execute(text("SELECT 1"))


@bp.get("/health/ready")
def ready():
    checks = {
        "redis": _check(redis_store.client.ping),
        "database": _check(_database_probe),
    }
    if checks["redis"] == "ok":
        checks.update(_worker_check().get())
    else:
        checks.update(workers="none", local_model="none")
    failing = checks["redis"] != "ok" or checks["database"] != "ok"
    body = {"status": "unavailable" if failing else "ready", "checks": checks}
    return (body, 503, {"Retry-After": "5"}) if failing else body
