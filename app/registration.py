"""The register_* steps of create_app(): extensions, hooks, error handlers, blueprints."""

from __future__ import annotations

import os
import re
import time
import uuid

from flask import Flask, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from . import audit, errors, limits, schemas
from .extensions import cors, database, migrate, redis_store, talisman
from .observability import DEPENDENCY_ERRORS, HTTP_DURATION, HTTP_REQUESTS, endpoint_label, method_label
from .streams import StreamRuntime
from .tasks import celery_init_app

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
EXPOSED_HEADERS = [
    "X-Request-ID",
    "X-Stream-Id",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
]
PROBES = ("health.health", "health.ready", "metrics.metrics")
# The widget needs only its own scripts and styles, and fetch() to this origin.
CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
}


def register_extensions(app: Flask) -> None:
    config = app.config
    production = config["RELAY_ENV"] == "production"
    if config["TRUSTED_PROXY_COUNT"] > 0:
        hops = config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    database.init(config["DATABASE_URL"], config["DB_POOL_SIZE"])
    redis_store.init(
        config["REDIS_URL"], config["REDIS_KEY_PREFIX"], config["REDIS_POOL_SIZE"], config["REDIS_POOL_TIMEOUT_SECONDS"]
    )
    migrate.init_app(app, database, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    cors.init_app(
        app,
        origins=list(config["ALLOWED_ORIGINS"]),
        expose_headers=EXPOSED_HEADERS,
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID", "X-Relay-Cost-Cap"],
        methods=["GET", "POST", "DELETE"],
        supports_credentials=False,  # bearer tokens, never cookies: no credentialed (or wildcard) CORS
        max_age=600,
    )
    talisman.init_app(
        app,
        force_https=production and config["TRUSTED_PROXY_COUNT"] > 0,
        strict_transport_security=production,
        content_security_policy=CSP,
        frame_options="DENY",
        referrer_policy="no-referrer",
        session_cookie_secure=production,
    )
    celery = celery_init_app(app)
    app.extensions["relay.streams"] = StreamRuntime(config, database, redis_store, celery)


def register_hooks(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        g.started = time.perf_counter()
        supplied = request.headers.get("X-Request-ID", "")
        g.request_id = supplied if REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex

    @app.after_request
    def echo_request_id_and_count(response):
        response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
        response.vary.add("Origin")  # CORS answers differ by Origin: shared caches must not mix them
        method, endpoint = method_label(), endpoint_label()
        HTTP_REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
        if "started" in g:
            HTTP_DURATION.labels(method, endpoint).observe(time.perf_counter() - g.started)
        return response

    # After the request id: a limit may refuse the request, and the refusal carries its id.
    limits.init_app(app)
    schemas.init_app(app)  # after the limits: a malformed request still counts against global_ip


def register_errorhandlers(app: Flask) -> None:
    errors.register_errorhandlers(app)
    app.extensions[errors.OUTAGE_LISTENER] = _count_outage


def _count_outage(dependency: str) -> None:
    """Every 503 for a dependency, whoever raised it: counted, and audited (throttled)."""
    DEPENDENCY_ERRORS.labels(dependency).inc()
    audit.record_outage(dependency)


def register_blueprints(app: Flask) -> None:
    from .api import BLUEPRINTS

    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    # Load balancers and Prometheus probe over plain HTTP inside the network: never redirect them.
    for endpoint in PROBES:
        app.view_functions[endpoint].talisman_view_options = {"force_https": False}
