"""Security events (auth failures, refusals, limits, key changes) for the tenant's audit log.

`record_event` never raises and never stores a secret: details keep only short
scalar values, passed through the same redaction as log lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask import g, has_request_context, request

from .db import audit as queries
from .extensions import database
from .logs import redact, security_event

if TYPE_CHECKING:
    from .principal import Principal

log = logging.getLogger("relay.audit")

AUTH_FAILURE = "auth_failure"
USER_NOT_ALLOWED = "user_not_allowed"
INSUFFICIENT_SCOPE = "insufficient_scope"
FORBIDDEN = "forbidden"
RATE_LIMITED = "rate_limited"
KEY_CREATED = "api_key_created"
KEY_REVOKED = "api_key_revoked"
USER_PROVISIONED = "user_provisioned"
DEPENDENCY_UNAVAILABLE = "dependency_unavailable"

# An outage answers every request with 503; one audit row per dependency per process per interval.
OUTAGE_AUDIT_INTERVAL_S = 10.0
_last_outage_audit: dict[str, float] = {}

MAX_DETAILS = 16
MAX_DETAIL_CHARS = 200


def _clean(details: Mapping[str, Any] | None) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for name, value in list((details or {}).items())[:MAX_DETAILS]:
        if value is None or isinstance(value, bool | int | float):
            cleaned[str(name)[:40]] = value
        else:
            text = redact(str(value))  # before truncating: a cut token would no longer look like one
            cleaned[str(name)[:40]] = "".join(char for char in text if char.isprintable())[:MAX_DETAIL_CHARS]
    return cleaned


def _request_fields() -> dict[str, Any]:
    if not has_request_context():
        return {}
    rule = request.url_rule
    return {
        "ip": (request.remote_addr or "")[:64] or None,
        "request_id": g.get("request_id"),
        "endpoint": f"{request.method} {rule.rule if rule is not None else 'unmatched'}"[:200],
    }


def record_event(
    event_type: str,
    principal: Principal | None,
    details: Mapping[str, Any] | None = None,
    *,
    tenant_id: str | None = None,
) -> None:
    """Append one event to the audit log (and its `relay.security` log line); failures are logged, never raised."""
    cleaned = _clean(details)
    security_event(event_type, principal, cleaned, tenant_id)
    try:
        with database.session() as session:
            queries.add_event(
                session,
                type=event_type[:50],
                tenant_id=tenant_id or (principal.tenant_id if principal else None),
                principal_id=principal.id if principal else None,
                details=cleaned,
                **_request_fields(),
            )
    except Exception as exc:  # noqa: BLE001 - the audit log must never break the request it describes
        log.warning("audit event %s not recorded: %s", event_type, type(exc).__name__)


def record_outage(dependency: str) -> None:
    """A dependency failed a request: audit it, at most once per interval in this process."""
    now = time.monotonic()
    if now - _last_outage_audit.get(dependency, float("-inf")) < OUTAGE_AUDIT_INTERVAL_S:
        return
    _last_outage_audit[dependency] = now
    record_event(DEPENDENCY_UNAVAILABLE, None, {"dependency": dependency})
