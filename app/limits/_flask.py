"""flask-limiter on Redis: global_ip, per-endpoint limits, 429s and X-RateLimit-* headers.

Binding: the Limiter in app/extensions.py is configured per app by `init_app`
through flask-limiter's settings (storage on REDIS_URL under REDIS_KEY_PREFIX,
the moving-window strategy, global_ip as the application limit, no in-memory
fallback, errors not swallowed). When Redis is down its calls raise
redis.ConnectionError, which app/errors.py answers with 503
dependency_unavailable and Retry-After, logged and counted: never a 500, never
fail-open. The next request reconnects by itself.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from flask import Flask, g, request
from flask_limiter import Limiter, RateLimitExceeded, RequestLimit
from werkzeug.wrappers import Response

from .. import audit, extensions
from ..errors import APIError, error_response, too_many
from ..observability import RATE_LIMIT_HITS, SECURITY_VIOLATIONS, endpoint_label
from ..redis_store import bounded_pool
from ._rules import client_ip, code_for, limit_string

log = logging.getLogger("relay.limits")
F = TypeVar("F", bound=Callable[..., Any])

# Operational endpoints a load balancer or Prometheus calls: never limited.
_EXEMPT_PATHS = frozenset({"/health", "/metrics"})  # and /health/*
_APPLICATION_SCOPE = "global"  # flask-limiter's scope of application limits: ours is global_ip
_HEADER_NAMES = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
_AUDIT_EVERY_SECONDS = 60.0  # one audit event per limit and key and process in this time
_audited: dict[tuple[str, str], float] = {}


def _exempt() -> bool:
    path = request.path
    return path in _EXEMPT_PATHS or path.startswith("/health/")


def init_app(app: Flask, limiter: Limiter) -> None:
    """Bind the limiter to the app's Redis; register the 429 handler and the headers hook."""
    config = app.config
    config["RATELIMIT_APPLICATION"] = lambda: limit_string("global_ip")
    config["RATELIMIT_APPLICATION_EXEMPT_WHEN"] = _exempt
    config["RATELIMIT_STRATEGY"] = "moving-window"
    config["RATELIMIT_HEADERS_ENABLED"] = False  # `_headers` writes them, for the most constraining limit
    config["RATELIMIT_SWALLOW_ERRORS"] = False
    config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] = False
    # Unmatched paths (404, 405) count too; flask-limiter skips a request without an endpoint.
    config["RATELIMIT_REQUEST_IDENTIFIER"] = lambda: request.endpoint or "unmatched"
    config["RATELIMIT_STORAGE_URI"] = config["REDIS_URL"]
    config["RATELIMIT_STORAGE_OPTIONS"] = {
        "key_prefix": extensions.redis_store.key("limits"),
        "connection_pool": bounded_pool(
            config["REDIS_URL"], config["LIMITER_POOL_SIZE"], config["REDIS_POOL_TIMEOUT_SECONDS"]
        ),
    }
    limiter.init_app(app)
    app.before_request(_remember_application_limits)
    app.register_error_handler(RateLimitExceeded, _rate_limit_exceeded)
    app.after_request(_headers)


def limit(name: str, key: Callable[[], str]) -> Callable[[F], F]:
    """A per-endpoint limit from the table (e.g. anon_mint per IP), counted in Redis by flask-limiter."""
    from ..extensions import limiter

    return limiter.limit(lambda: limit_string(name), key_func=key, scope=name, override_defaults=False)


def tenant_key() -> str:
    """The caller's tenant (or the principal itself when it has none); use after authentication."""
    principal = g.principal
    return principal.tenant_id or principal.id


def _limiter() -> Limiter:
    return extensions.limiter


def _name(limit: RequestLimit) -> str:
    # flask-limiter's key arguments end with the scope: our limit's name (after "endpoint:" when not
    # shared); the application limit's scope is flask-limiter's own "global".
    name = str(limit.request_args[-1]).rsplit(":", 1)[-1]
    return "global_ip" if name == _APPLICATION_SCOPE else name


def _remember_application_limits() -> None:
    # A decorated limit replaces flask-limiter's record of this request's limits; keep global_ip's.
    g.relay_app_limits = list(_limiter().current_limits)


@dataclass(frozen=True)
class Window:
    name: str
    key: str  # the full Redis key
    count: int
    seconds: int


def global_windows() -> list[Window]:
    """flask-limiter's limits counted for this request, as keys the admission script can read."""
    storage = _limiter().storage
    return [
        Window(_name(item), storage.prefixed_key(item.key), item.limit.amount, item.limit.get_expiry())
        for item in g.get("relay_app_limits", [])
    ]


def refused(error: APIError, count: int | None = None, reset: int | None = None) -> None:
    """Count, audit and annotate a 429 (details.limit names the limit)."""
    name = error.details["limit"]
    RATE_LIMIT_HITS.labels(name, endpoint_label()).inc()
    if count is not None:
        reset = reset or int(time.time()) + int(error.extra_headers["Retry-After"])
        error.extra_headers.update(zip(_HEADER_NAMES, (str(count), "0", str(reset)), strict=True))
    g.relay_rate_limit_done = True
    _audit(name)


def _audit(name: str) -> None:
    principal = g.get("principal")
    key = (name, principal.id if principal else client_ip())
    now = time.monotonic()
    if now - _audited.get(key, -_AUDIT_EVERY_SECONDS) < _AUDIT_EVERY_SECONDS:
        return
    if len(_audited) > 10_000:
        _audited.clear()
    _audited[key] = now
    if name == "global_ip":
        SECURITY_VIOLATIONS.labels("rate_limit_flood", "low").inc()
    audit.record_event(audit.RATE_LIMITED, principal, {"limit": name})


def _rate_limit_exceeded(exc: RateLimitExceeded) -> Response:
    current = _limiter().current_limit
    name = _name(current) if current is not None else "global_ip"
    reset = current.window.reset_time if current is not None else time.time() + 1
    error = too_many(code_for(name), name, reset - time.time(), "Too many requests; slow down.")
    refused(error, exc.limit.limit.amount, math.ceil(reset))
    return error_response(429, error.error_code, error.description, error.details, error.extra_headers)


def _headers(response: Response) -> Response:
    """X-RateLimit-* for the most constraining limit that applied (fewest requests left)."""
    if g.get("relay_rate_limit_done") or _exempt() or _HEADER_NAMES[0] in response.headers:
        return response
    chosen = g.get("relay_rate_limit")  # the admission script's pick, global_ip included
    if chosen is None:
        chosen = _most_constraining()
    if chosen is not None:
        for name, value in zip(_HEADER_NAMES, chosen, strict=True):
            response.headers[name] = str(value)
    return response


def _most_constraining() -> tuple[int, int, int] | None:
    seen: dict[str, RequestLimit] = {}
    for item in [*g.get("relay_app_limits", []), *_limiter().current_limits]:
        seen.setdefault(item.key, item)
    best = None
    try:
        for item in seen.values():
            reset, remaining = item.window
            candidate = (item.limit.amount, max(0, remaining), math.ceil(reset))
            if best is None or (candidate[1], -candidate[2]) < (best[1], -best[2]):
                best = candidate
    except (redis.ConnectionError, redis.TimeoutError):
        log.warning("rate-limit headers left out: Redis unavailable")
        return None
    return best
