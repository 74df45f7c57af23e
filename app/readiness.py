"""Is Relay ready? The checks behind /health/ready, and the gauges /metrics adds at each scrape.

Redis and the database decide readiness. The workers' answer (a Celery ping)
and the local model's state are reused for HEALTH_WORKER_CACHE_SECONDS per
process: /health/ready is public, and each uncached check broadcasts a ping and
waits for the answers. At most one check runs at a time; callers that arrive
meanwhile wait and share its answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, current_app
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from sqlalchemy import text

from .extensions import database, redis_store
from .limits import budget
from .worker_state import local_model_state

PING_TIMEOUT_SECONDS = 0.5


class WorkerCheck:
    """A probe's answer, reused for `ttl_s`; one probe in flight at a time."""

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


def _check(probe: Callable[[], Any]) -> str:
    try:
        probe()
        return "ok"
    except Exception:  # noqa: BLE001 - any failure means "not ready"; details stay in logs
        return "failed"


def _probe_workers(app: Flask) -> dict[str, str]:
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
        ttl = app.config["HEALTH_WORKER_CACHE_SECONDS"]
        check = app.extensions.setdefault("relay.health", WorkerCheck(ttl, lambda: _probe_workers(app)))
    return check


def _database_probe() -> None:
    with database.session() as session:
        session.execute(text("SELECT 1"))


def checks() -> dict[str, str]:
    """redis, database, workers and local_model, each `ok` or what is wrong."""
    result = {"redis": _check(redis_store.client.ping), "database": _check(_database_probe)}
    if result["redis"] == "ok":
        result.update(_worker_check().get())
    else:
        result.update(workers="none", local_model="none")
    return result


def is_ready(result: Mapping[str, str]) -> bool:
    """Only Redis and the database decide readiness; workers and the local model only report."""
    return result["redis"] == "ok" and result["database"] == "ok"


def scrape_gauges(config: Mapping[str, Any]) -> bytes:
    """Gauges read fresh at each scrape (the alert rules' inputs): whether each dependency is up,
    and today's spend against the platform-wide budgets (no per-tenant labels: labels stay bounded)."""
    registry = CollectorRegistry()
    up = Gauge("relay_dependency_up", "1 when the dependency answers", ["dependency"], registry=registry)
    result = checks()
    for dependency in ("redis", "database", "workers"):
        up.labels(dependency).set(1 if result[dependency] == "ok" else 0)
    if result["redis"] == "ok":
        spent = Gauge("relay_budget_spent_usd", "spend and reservations today (UTC)", ["budget"], registry=registry)
        ceiling = Gauge("relay_budget_ceiling_usd", "daily ceiling; 0 is off", ["budget"], registry=registry)
        for name, parts, setting in (("daily", ("global",), "DAILY_SPEND_CEILING_USD"),
                                     ("anonymous", ("anon",), "ANON_DAILY_BUDGET_USD")):  # fmt: skip
            spent.labels(name).set(budget.spent_today_usd(*parts))
            ceiling.labels(name).set(config[setting])
    return generate_latest(registry)
