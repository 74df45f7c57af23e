"""POST /webhooks/relay: verify, deduplicate, store, and attach action results to their deliveries.

Order: configured? -> signature (any configured secret) -> timestamp within
WEBHOOK_TOLERANCE_SECONDS either way -> body is a JSON object -> first sight of
its `webhook-id` (SET NX EX in Redis, kept for twice the tolerance, the whole
span in which the timestamp is accepted) -> stored. If storing fails, the id is
forgotten again so the sender's retry is processed.

Which tenant an `action.result` belongs to: the one of the delivery its
`data.delivery_id` names (ids are 128 random bits; the senders hold Relay's own
WEBHOOK_SIGNING_SECRET, so they are trusted to name a delivery). A result that
also names `data.tenant_id` attaches only if it matches.

Every refusal is audited (type, reason, code, IP; never the body or a
signature) and counted in security_violations_total and
relay_webhook_deliveries_total{outcome="inbound_rejected"}.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from .. import audit
from ..db import actions as queries
from ..db.models import utcnow
from ..errors import APIError
from ..extensions import database, redis_store
from ..observability import SECURITY_VIOLATIONS, WEBHOOK_DELIVERIES
from . import _crypto
from .signing import VerificationError, Verified, verify

log = logging.getLogger("relay.webhooks.inbound")

WEBHOOK_REJECTED = "webhook_rejected"
RESULT_TYPE = "action.result"
_SEVERITY = {"missing_signature": "low", "invalid_signature": "high", "stale_timestamp": "medium"}
_MESSAGES = {
    "missing_signature": "Sign the request with the Standard Webhooks headers.",
    "invalid_signature": "The webhook signature does not verify.",
    "stale_timestamp": "The webhook timestamp is outside the accepted window.",
    "webhook_not_configured": "Inbound webhooks are not configured on this server.",
}


NOT_CONFIGURED_RETRY_AFTER = 300


def _reject(code: str, reason: str, status: int = 401) -> APIError:
    SECURITY_VIOLATIONS.labels(WEBHOOK_REJECTED, _SEVERITY.get(code, "low")).inc()
    WEBHOOK_DELIVERIES.labels("inbound_rejected").inc()
    audit.record_event(WEBHOOK_REJECTED, None, {"reason": reason, "code": code})
    headers = {"WWW-Authenticate": 'Standard-Webhooks realm="relay"'} if status == 401 else {}
    if status == 503:  # every 503 says when to try again; a sender retries after an operator configures a secret
        headers["Retry-After"] = str(NOT_CONFIGURED_RETRY_AFTER)
    return APIError(status, code, _MESSAGES[code], {"reason": reason} if status == 401 else {}, headers)


def _secrets(config: Mapping[str, Any]) -> list[str]:
    usable = []
    for secret in config["WEBHOOK_SIGNING_SECRET"]:
        try:
            _crypto.secret_bytes(secret)
            usable.append(secret)
        except (binascii.Error, ValueError):
            log.error("WEBHOOK_SIGNING_SECRET: one whsec_ value is not valid base64; it is ignored")
    return usable


def _object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise APIError(400, "invalid_json", "The webhook body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise APIError(422, "validation_error", "The webhook body must be a JSON object.")
    return parsed


def receive(headers: Mapping[str, str], body: bytes, config: Mapping[str, Any]) -> dict[str, str]:
    """Process one inbound webhook; APIError for every refusal."""
    secrets = _secrets(config)
    if not secrets:
        raise _reject("webhook_not_configured", "not_configured", status=503)
    try:
        verified = verify(
            headers,
            body,
            secrets,
            now=int(time.time()),
            tolerance=config["WEBHOOK_TOLERANCE_SECONDS"],
            accept_legacy=config["WEBHOOK_ACCEPT_LEGACY"],
        )
    except VerificationError as exc:
        raise _reject(exc.code, exc.reason) from None
    event = _object(body)
    seen = redis_store.key("webhooks", "seen", hashlib.sha256(verified.webhook_id.encode()).hexdigest())
    ttl = 2 * config["WEBHOOK_TOLERANCE_SECONDS"] + 60
    if not redis_store.client.set(seen, "1", nx=True, ex=ttl):
        WEBHOOK_DELIVERIES.labels("inbound_duplicate").inc()
        return {"status": "duplicate"}
    try:
        _store(verified, event)
    except BaseException:
        redis_store.client.delete(seen)
        raise
    WEBHOOK_DELIVERIES.labels("inbound_accepted").inc()
    return {"status": "accepted", "id": verified.webhook_id}


def _store(verified: Verified, event: dict[str, Any]) -> None:
    kind = event.get("type") if isinstance(event.get("type"), str) else None
    with database.session() as session:
        tenant_id = delivery_id = None
        data = event.get("data")
        if kind == RESULT_TYPE and isinstance(data, dict) and isinstance(data.get("delivery_id"), str):
            delivery = queries.delivery_by_id(session, data["delivery_id"][:64])
            named_tenant = data.get("tenant_id")
            if delivery is not None and named_tenant in (None, delivery.tenant_id):
                delivery.result = data.get("result", {k: v for k, v in data.items() if k != "delivery_id"})
                delivery.result_at = utcnow()
                tenant_id, delivery_id = delivery.tenant_id, delivery.id
        queries.add_event(
            session,
            webhook_id=verified.webhook_id,
            type=(kind or "")[:100] or None,
            sent_at=verified.timestamp,
            tenant_id=tenant_id,
            delivery_id=delivery_id,
            body=event,
        )
