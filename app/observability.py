"""Logging with secret redaction (metrics and audit events join this module later)."""

from __future__ import annotations

import logging
import re

from flask import Flask

# Anything that looks like a credential is masked before a log line is written.
_REDACTIONS = (
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (re.compile(r"relay_sk_[A-Za-z0-9_-]+"), "relay_sk_[REDACTED]"),
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), "whsec_[REDACTED]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[REDACTED_JWT]"),
    (re.compile(r"(?i)((?:api[_-]?key|secret|password|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"), r"\1[REDACTED]"),
    (re.compile(r"(\w+://)[^@\s/]*@"), r"\1[REDACTED]@"),  # credentials inside URLs
)


def redact(text: str) -> str:
    """Mask tokens, keys, secrets and credentials inside URLs."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure_logging(app: Flask) -> None:
    """One format for the whole process; every handler redacts secrets."""
    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
        for existing in root.handlers:
            existing.addFilter(RedactingFilter())
    root.setLevel(app.config["LOG_LEVEL"].upper())
