"""Relay's log lines: JSON in production, text locally, and never a secret.

Redaction happens in three places, so that no path around one of them leaks:
every log record is scrubbed when it is created (a record factory: its message
with the arguments filled in, its traceback and stack), every handler of the
process carries `RedactingFilter` (records made before the factory was
installed, fields added with `extra=`), and both formatters pass what they
write through `redact()` once more.

Besides free-form lines, operators search for three kinds, each with fixed
fields (top-level keys in JSON, `key=value` in text):
  relay.request   one per HTTP request: request id, principal, route, status, latency
  relay.stream    one per finished stream, written by the worker: outcome, ttft, tokens, cost
  relay.security  one per security event (the audit log's recording path)
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, g, has_request_context, request

# A name that announces a secret: `SECRET_KEY=`, `"password": "`, `x-api-key: `, `access_token=`.
# Plural names (`completion_tokens`) and a bare `key` (principal ids are "key:<id>") are not secrets.
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:[_-]key|apikey|secret|password|passwd|passphrase|token|credential|authorization)"  # noqa: S105 - a pattern for secret names, not a secret
_REDACTIONS = (
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
        "[REDACTED_PRIVATE_KEY]",
    ),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}(?:\.[A-Za-z0-9_-]*)?"), "[REDACTED_JWT]"),
    (re.compile(r"relay_sk_[A-Za-z0-9_-]+"), "relay_sk_[REDACTED]"),
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), "whsec_[REDACTED]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), "sk-[REDACTED]"),
    (re.compile(r"(?i)\b((?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (
        re.compile(rf"(?i)\b({_SECRET_NAME})(\\?[\"']?\s*[:=]\s*\\?[\"']?)(?:(?:bearer|basic)\s+)?[^\s\"',;}}&\\]+"),
        r"\1\2[REDACTED]",
    ),
    (re.compile(r"(\w+://)[^@\s/]*@"), r"\1[REDACTED]@"),  # credentials inside URLs
)
# The principal ids and field names of Relay's own lines; their values are never secrets.
_STRUCTURED = "relay_fields"


def redact(text: str) -> str:
    """Mask tokens, keys, secrets, passwords, Authorization values and credentials inside URLs."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def _scrub(record: logging.LogRecord) -> None:
    """Replace a record's message, traceback and stack with redacted text (idempotent)."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is the handler's to report, with its own redaction
        message = None
    if message is not None:
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, ()
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = redact(text)
        record.exc_info = None  # the traceback's frames and values are gone; only the text is written
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for name, value in list(vars(record).items()):
        if name not in _BUILTIN_FIELDS and isinstance(value, str):
            setattr(record, name, redact(value))


_BUILTIN_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """On every handler: no secret reaches a log line, whoever built the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub(record)
        return True


def _install_record_factory() -> None:
    base = logging.getLogRecordFactory()
    if getattr(base, "relay_redacting", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        _scrub(record)
        return record

    make_record.relay_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return dict(getattr(record, _STRUCTURED, None) or {})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the request id, the line's own fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context() and g.get("request_id"):
            line["request_id"] = g.request_id
        line.update(_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(_redacted(line), default=str, ensure_ascii=False)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _redacted(item) for key, item in value.items()}
    return value


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message`, redacted as a whole (traceback included)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def log_format(settings: Mapping[str, Any]) -> str:
    """`json` or `text`: LOG_FORMAT when set, else JSON in production and text elsewhere."""
    chosen = str(settings.get("LOG_FORMAT") or "").lower()
    if chosen in ("json", "text"):
        return chosen
    return "json" if settings.get("RELAY_ENV") == "production" else "text"


def make_formatter(kind: str) -> logging.Formatter:
    """The formatter of a log format name."""
    return JsonFormatter() if kind == "json" else TextFormatter()


def protect(handlers: list[logging.Handler], kind: str | None = None) -> None:
    """Give each handler the redaction filter (once) and, when `kind` is given, Relay's formatter."""
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
        if kind is not None:
            handler.setFormatter(make_formatter(kind))


def install(settings: Mapping[str, Any]) -> None:
    """Configure the process: one root handler in the chosen format, redaction everywhere."""
    _install_record_factory()
    kind = log_format(settings)
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "relay_handler", False)]
    if not ours:
        handler = logging.StreamHandler()
        handler.relay_handler = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        ours = [handler]
    protect(ours, kind)
    protect(root.handlers)
    root.setLevel(str(settings.get("LOG_LEVEL", "INFO")).upper())


# -- the three structured lines -----------------------------------------------------
request_log = logging.getLogger("relay.request")
stream_log = logging.getLogger("relay.stream")
security_log = logging.getLogger("relay.security")
PROBE_ENDPOINTS = frozenset({"health.health", "health.ready", "metrics.metrics"})


def _emit(logger: logging.Logger, level: int, kind: str, fields: Mapping[str, Any]) -> None:
    if not logger.isEnabledFor(level):
        return
    text = " ".join(f"{name}={value}" for name, value in fields.items() if value is not None)
    logger.log(level, "%s %s", kind, text, extra={_STRUCTURED: {"kind": kind, **fields}})


def _principal_fields() -> dict[str, Any]:
    principal = g.get("principal") if has_request_context() else None
    if principal is None:
        return {"principal_kind": None, "principal_id": None}
    return {"principal_kind": principal.kind, "principal_id": principal.id}


def init_request_log(app: Flask) -> None:
    """One `relay.request` line per request (probes at DEBUG: Prometheus scrapes every few seconds)."""

    @app.before_request
    def _start_clock() -> None:
        g.log_started = time.perf_counter()

    @app.after_request
    def _log_request(response):
        started = g.get("log_started")
        rule = request.url_rule
        fields = {
            "request_id": g.get("request_id"),
            "method": request.method[:16],
            "route": rule.rule if rule is not None else "unmatched",
            "endpoint": request.endpoint,
            "status": response.status_code,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1) if started is not None else None,
            **_principal_fields(),
            "ip": request.remote_addr,
        }
        level = logging.DEBUG if request.endpoint in PROBE_ENDPOINTS else logging.INFO
        _emit(request_log, level, "request", fields)
        return response


def stream_finished(stream_id: str, model: str | None, event: str, data: Mapping[str, Any]) -> None:
    """The `relay.stream` line of a stream that ended with `event` (`done` or `error`) and its data."""
    usage = data.get("usage") or {}
    fields = {
        "stream_id": stream_id,
        "model": model,
        "outcome": data.get("finish_reason") if event == "done" else data.get("error_code"),
        "ttft_ms": data.get("ttft_ms"),
        "duration_ms": data.get("duration_ms"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "cost_usd": data.get("cost_usd"),
    }
    _emit(stream_log, logging.INFO if event == "done" else logging.WARNING, "stream", fields)


def security_event(event_type: str, principal: Any, details: Mapping[str, Any], tenant_id: str | None) -> None:
    """The `relay.security` line of one audited event (details already cleaned by the audit log)."""
    fields = {
        "event": event_type,
        "principal_kind": getattr(principal, "kind", None),
        "principal_id": getattr(principal, "id", None),
        "tenant_id": tenant_id or getattr(principal, "tenant_id", None),
        **({"details": json.dumps(dict(details), default=str, sort_keys=True)} if details else {}),
    }
    if has_request_context():
        rule = request.url_rule
        fields.update(request_id=g.get("request_id"), route=rule.rule if rule else "unmatched", ip=request.remote_addr)
    _emit(security_log, logging.WARNING, "security", fields)
