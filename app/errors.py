"""One error shape for every 4xx and 5xx, from every layer.

`{"error": {"code", "message", "details", "request_id"}}`: never HTML, never a
stack trace. Domain errors subclass werkzeug's HTTPException so Flask routes
them here too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import kombu.exceptions
import redis
import sqlalchemy.exc
from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("relay.errors")
# app.extensions key of a callable(dependency) told of every 503 for a dependency, whoever raised it.
OUTAGE_LISTENER = "relay.outage_listener"

# Failures of what Relay depends on: answered 503 dependency_unavailable.
DEPENDENCY_EXCEPTIONS = (
    redis.ConnectionError,
    redis.TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.TimeoutError,
    kombu.exceptions.OperationalError,
)

# werkzeug's own exceptions, in the contract's codes.
_HTTP_CODES = {
    400: "bad_request",
    401: "missing_token",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal",
    503: "dependency_unavailable",
}

_MESSAGES = {
    404: "The requested resource was not found.",
    405: "This method is not allowed on this resource.",
    413: "The request body is too large.",
    415: "Send the body as JSON with Content-Type: application/json.",
    500: "An internal error occurred.",
}


class APIError(HTTPException):
    """An error in the contract's shape: status, code, message, details, headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description=message)
        self.code = status
        self.error_code = code
        self.details = details or {}
        self.extra_headers = headers or {}


def unauthorized(code: str, message: str) -> APIError:
    """401 with the RFC 6750 challenge; without `error=` when no credentials were sent (its section 3.1)."""
    challenge = 'Bearer realm="relay"'
    if code != "missing_token":
        challenge += f', error="invalid_token", error_description="{code}"'
    return APIError(401, code, message, headers={"WWW-Authenticate": challenge})


def forbidden(thing: str) -> APIError:
    return APIError(403, "forbidden", f"You do not have access to this {thing}")


def not_found(thing: str) -> APIError:
    return APIError(404, "not_found", f"No such {thing}")


def unavailable(dependency: str, retry_after: int = 5) -> APIError:
    return APIError(
        503,
        "dependency_unavailable",
        f"A dependency ({dependency}) is unavailable; try again shortly.",
        {"dependency": dependency},
        {"Retry-After": str(max(1, retry_after))},
    )


def too_many(code: str, limit: str, retry_after: float, message: str) -> APIError:
    seconds = max(1, math.ceil(retry_after))
    return APIError(429, code, message, {"limit": limit, "retry_after": seconds}, {"Retry-After": str(seconds)})


def validation_error(fields: dict[str, list[str]], message: str = "The request is not valid.") -> APIError:
    """422 validation_error naming the fields at fault: `{"fields": {name: [reasons]}}`."""
    return APIError(422, "validation_error", message, {"fields": fields})


def error_body(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details or {},
            "request_id": getattr(g, "request_id", None),
        }
    }


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    render = _dialect()
    if render is not None:  # a URL prefix with an error shape of its own (the OpenAI-compatible /v1)
        status, body, extra = render(status, code, message, details or {})
        response, headers = jsonify(body), {**(headers or {}), **extra}
    else:
        response = jsonify(error_body(status, code, message, details))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# -- Another error shape for the requests under a URL prefix (the OpenAI-compatible /v1) --------
# render(status, code, message, details) -> (status, body, extra headers)
ErrorDialect = Callable[[int, str, str, dict[str, Any]], tuple[int, dict[str, Any], dict[str, str]]]
ERROR_DIALECTS = "relay.error_dialects"


def register_dialect(app: Flask, prefix: str, render: ErrorDialect) -> None:
    """Every error of a request under `prefix` (from any layer: all come through error_response)
    is rendered by `render` instead of in the contract's shape."""
    app.extensions.setdefault(ERROR_DIALECTS, {})[prefix.rstrip("/")] = render


def _dialect() -> ErrorDialect | None:
    if not request:  # no request: the contract's shape
        return None
    path = request.path
    for prefix, render in current_app.extensions.get(ERROR_DIALECTS, {}).items():
        if path == prefix or path.startswith(prefix + "/"):
            return render
    return None


def _from_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    if isinstance(exc, APIError):
        if exc.error_code == "dependency_unavailable":
            _report_outage(exc)
        return error_response(status, exc.error_code, exc.description, exc.details, exc.extra_headers)
    headers = {}
    valid_methods = getattr(exc, "valid_methods", None)
    if status == 405 and valid_methods:
        headers["Allow"] = ", ".join(sorted(valid_methods))
    message = _MESSAGES.get(status) or exc.description or exc.name
    return error_response(status, _HTTP_CODES.get(status, exc.name.lower().replace(" ", "_")), message, None, headers)


def _from_unexpected(exc: Exception) -> Response:
    # Database sessions are scoped to `with` blocks that roll back on error; log once.
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "internal", _MESSAGES[500])


def _from_dependency(exc: Exception) -> Response:
    dependency = "redis" if isinstance(exc, redis.RedisError) else "database"
    if isinstance(exc, kombu.exceptions.OperationalError):
        dependency = "broker"
    log.error("%s unavailable on %s %s: %s", dependency, request.method, request.path, type(exc).__name__)
    return _from_http_exception(unavailable(dependency))


def _report_outage(error: APIError) -> None:
    """Tell the app's outage listener (registered by app/registration.py: metrics and audit)."""
    listener = current_app.extensions.get(OUTAGE_LISTENER)
    if listener is not None:
        listener(str(error.details.get("dependency", "unknown")))


def register_errorhandlers(app: Flask) -> None:
    """Route every HTTPException and every unexpected exception to one JSON shape;
    a dependency that is down is a 503 with Retry-After, never a 500."""
    app.register_error_handler(HTTPException, _from_http_exception)
    for dependency_error in DEPENDENCY_EXCEPTIONS:
        app.register_error_handler(dependency_error, _from_dependency)
    app.register_error_handler(Exception, _from_unexpected)
