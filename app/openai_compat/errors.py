"""Every error under /v1 in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

app/errors.py builds every error of the app (auth decorators, flask-limiter,
werkzeug, validation, outages) and hands those of a /v1 request to `openai_error`
with Relay's status, code, message and details. Statuses stay OpenAI's, but a 422
is OpenAI's 400; the headers (Retry-After, WWW-Authenticate, X-RateLimit-*) stay.
"""

from __future__ import annotations

from typing import Any

# Relay's 429 codes in OpenAI's terms (type, code); an exhausted quota or budget is not worth a quick retry.
_TOO_MANY = {
    "rate_limited": ("requests", "rate_limit_exceeded"),
    "quota_exceeded": ("insufficient_quota", "insufficient_quota"),
    "budget_exceeded": ("insufficient_quota", "insufficient_quota"),
}
_CLIENT_CODES = frozenset({"unsupported_parameter", "model_not_found"})


def openai_error(status: int, code: str, message: str, details: dict[str, Any]) -> tuple[int, dict, dict[str, str]]:
    """(status, body, extra headers) of one error in OpenAI's shape."""
    param = details.get("param") or _first_field(details.get("fields"))
    headers: dict[str, str] = {}
    kind = "invalid_request_error"
    if status == 422 or (status == 400 and code not in _CLIENT_CODES):
        status, code = 400, "invalid_request_error"
        if param and details.get("fields"):
            message = f"{message} ({param}: {_reason(details['fields'][param])})"
    elif status == 401:
        code = "invalid_api_key"
    elif status == 429:
        kind, code = _TOO_MANY.get(code, ("requests", "rate_limit_exceeded"))
        if kind == "insufficient_quota":
            headers["x-should-retry"] = "false"  # the OpenAI SDKs' own hint: waiting seconds will not help
        if details.get("limit"):
            message = f"{message} (limit: {details['limit']})"
    elif status >= 500:
        kind = "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return status, body, headers


def _first_field(fields: Any) -> str | None:
    if isinstance(fields, dict) and fields:
        return str(next(iter(fields)))
    return None


def _reason(reasons: Any) -> str:
    if isinstance(reasons, list) and reasons:
        return str(reasons[0])
    return str(reasons)
