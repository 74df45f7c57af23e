"""Deliveries: create (idempotent), wake a worker, attempt under a lease, retry on a schedule, redeliver.

The database row is the truth; a Celery message on the `webhooks` queue only
wakes a worker for it. A worker claims the row with one conditional UPDATE
(app/db/actions.py `claim`), so however many messages exist for a delivery,
one attempt runs at a time; the lease (WEBHOOK_LEASE_SECONDS) outlives the
attempt's hard deadline (WEBHOOK_TIMEOUT_SECONDS). A worker killed mid-attempt
leaves a lease that runs out; a wake-up lost with a killed worker leaves a row
that is overdue. The sweep (`overdue_ids`, run by every webhooks worker every
WEBHOOK_SWEEP_SECONDS) wakes both again. So nothing is lost, and duplicate
wake-ups are harmless: at least once, never twice at the same time.

For other domains (e.g. executing a stored plan): `create_delivery(session, ...)`
inside your own transaction, commit, then `enqueue(ids)`.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import actions as queries
from ..db.models import Action, Delivery, DeliveryAttempt, new_id, utcnow
from ..errors import APIError, not_found
from ..extensions import database
from ..observability import WEBHOOK_DELIVERIES
from ..principal import Principal
from . import client
from .registry import guard_settings, signing_keys
from .signing import sign_headers

log = logging.getLogger("relay.webhooks.deliveries")

TASK = "workers.deliver"
QUEUE = "webhooks"
EVENT_TYPE = "action.execute"


def create_delivery(
    session: Session,
    principal: Principal,
    action: str,
    payload: dict[str, Any],
    idempotency_key: str | None = None,
    plan_id: str | None = None,
) -> Delivery:
    """A queued delivery of the tenant's action `action` (404 unknown), flushed, not committed.

    A known idempotency key returns its delivery (409 if it named another action or payload); two
    requests racing with a new key both insert, and the unique index lets one commit: the loser's
    commit raises IntegrityError, and a retry of the whole unit finds the winner's row.
    """
    if principal.tenant_id is None:
        raise not_found("action")
    if idempotency_key is not None:
        existing = queries.by_idempotency_key(session, principal.tenant_id, idempotency_key)
        if existing is not None:
            if existing.action_name != action or existing.payload != payload:
                raise APIError(409, "idempotency_conflict", "This idempotency key was used for another request.")
            return existing
    target = queries.find_action(session, principal, action)
    now = utcnow()
    delivery = Delivery(
        id=new_id(),
        tenant_id=principal.tenant_id,
        action_id=target.id,
        action_name=target.name,
        payload=payload,
        idempotency_key=idempotency_key,
        plan_id=plan_id,
        status="queued",
        next_attempt_at=now,
        created_by=principal.id,
        created_at=now,
        updated_at=now,
    )
    session.add(delivery)
    session.flush()
    return delivery


def execute(principal: Principal, action: str, payload: dict[str, Any], idempotency_key: str | None) -> dict:
    """POST /actions/execute: create (or find) the delivery, commit, wake a worker."""
    for last_try in (False, True):
        try:
            with database.session() as session:
                delivery = create_delivery(session, principal, action, payload, idempotency_key)
                answer = {"delivery_id": delivery.id, "status": delivery.status}
            break
        except IntegrityError:
            if last_try or idempotency_key is None:
                raise
            # Another request with the same key committed first: the next loop finds its delivery.
    if answer["status"] == "queued":
        enqueue([answer["delivery_id"]])
    return answer


def enqueue(delivery_ids: Iterable[str], countdown: float = 0, celery: Any = None) -> None:
    """Wake a worker for each delivery; a failed send is logged, and the sweep wakes it later."""
    celery = celery or current_app.extensions["celery"]
    for delivery_id in delivery_ids:
        try:
            celery.send_task(TASK, args=[delivery_id], queue=QUEUE, countdown=max(0.0, countdown) or None)
        except Exception as exc:  # noqa: BLE001 - the row is durable; the sweep re-sends
            log.warning("delivery %s: wake-up not sent (%s); the sweep will retry", delivery_id, type(exc).__name__)


def redeliver(principal: Principal, delivery_id: str) -> dict[str, str]:
    """Queue a failed or dead delivery again now, with a fresh retry schedule (409 otherwise)."""
    now = utcnow()
    with database.session() as session:
        delivery = queries.find_delivery(session, principal, delivery_id)
        if delivery.status not in queries.REDELIVERABLE:
            raise APIError(409, "not_redeliverable", f"A {delivery.status} delivery cannot be redelivered.")
        changed = session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, Delivery.status == delivery.status)
            .where(Delivery.attempt_count == delivery.attempt_count)
            .values(status="queued", failures=0, next_attempt_at=now, completed_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not changed:
            raise APIError(409, "not_redeliverable", "The delivery changed meanwhile; read it again.")
    enqueue([delivery_id])
    return {"delivery_id": delivery_id, "status": "queued"}


def overdue_ids(config: Mapping[str, Any]) -> list[str]:
    """Deliveries whose wake-up was lost (see the module docstring)."""
    now = utcnow()
    with database.session() as session:
        return queries.overdue(session, now, now - timedelta(seconds=config["WEBHOOK_SWEEP_SECONDS"]))


# -- one attempt (in a worker) -------------------------------------------------------------
def body_of(delivery: Delivery) -> bytes:
    """The webhook body; the same bytes on every attempt (the event's time is the delivery's)."""
    event = {
        "type": EVENT_TYPE,
        "timestamp": queries.aware(delivery.created_at).isoformat().replace("+00:00", "Z"),
        "data": {"action": delivery.action_name, "payload": delivery.payload, "delivery_id": delivery.id},
    }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def attempt(delivery_id: str, config: Mapping[str, Any]) -> str | None:
    """Claim the delivery and make one attempt; the outcome, or None when there was nothing to do."""
    now, token = utcnow(), new_id()
    with database.session() as session:
        delivery = queries.delivery_by_id(session, delivery_id)
        if delivery is None or not queries.claim(
            session, delivery, now, now + timedelta(seconds=config["WEBHOOK_LEASE_SECONDS"]), token
        ):
            return None
        number, failures = delivery.attempt_count + 1, delivery.failures
        if delivery.status == "delivering":  # its last claimer died mid-attempt
            lost = {"number": number - 1, "started_at": delivery.updated_at, "error": "worker_lost"}
            session.add(DeliveryAttempt(delivery_id=delivery_id, **lost))
        action = session.get(Action, delivery.action_id) if delivery.action_id else None
        if action is not None:
            keys, url, body = signing_keys(action, config["SECRET_KEY"], now), action.url, body_of(delivery)
    if action is None:
        return _finish(delivery_id, token, number, failures, client.Response(None, 0, "action_deleted", None), config)
    headers = {
        **sign_headers(keys, f"msg_{delivery_id}", int(now.timestamp()), body),
        "User-Agent": "Relay-Webhooks/1",
    }
    response = client.post(
        url,
        body,
        headers,
        timeout=config["WEBHOOK_TIMEOUT_SECONDS"],
        max_body=config["WEBHOOK_RESPONSE_MAX_BYTES"],
        **guard_settings(config),
    )
    return _finish(delivery_id, token, number, failures, response, config, started_at=now)


def _retry_delay(failures: int, config: Mapping[str, Any]) -> float | None:
    """Seconds until the next attempt after `failures` failed ones; None when the schedule is spent."""
    schedule = config["WEBHOOK_RETRY_SCHEDULE"]
    if failures > len(schedule):
        return None
    jitter = config["WEBHOOK_RETRY_JITTER"]
    return max(0.0, schedule[failures - 1] * (1 + random.uniform(-jitter, jitter)))  # noqa: S311 - retry jitter, not a secret


def _finish(delivery_id, token, number, failures, response, config, started_at=None) -> str:
    """Record the attempt and the delivery's next state; schedule the retry's wake-up."""
    now = utcnow()
    ok = response.status is not None and 200 <= response.status < 300
    error = response.error or (None if ok else f"HTTP {response.status}")
    delay = None if ok or response.error == "action_deleted" else _retry_delay(failures + 1, config)
    if ok:
        outcome, values = "succeeded", {"status": "succeeded", "completed_at": now, "last_error": None}
    elif delay is None:
        outcome, values = "dead", {"status": "dead", "completed_at": now, "last_error": error}
    else:
        next_at = now + timedelta(seconds=delay)
        outcome, values = "failed", {"status": "failed", "next_attempt_at": next_at, "last_error": error}
    with database.session() as session:
        session.add(
            DeliveryAttempt(
                delivery_id=delivery_id,
                number=number,
                started_at=started_at or now,
                duration_ms=response.duration_ms,
                status_code=response.status,
                error=(error or "")[:200] or None,
                response_excerpt=response.body_excerpt,
            )
        )
        values.update(failures=failures + (0 if ok else 1), updated_at=now)
        held = queries.release(session, delivery_id, token, **values)
    WEBHOOK_DELIVERIES.labels("blocked" if (error or "").startswith("blocked") else outcome).inc()
    if not held:
        log.warning("delivery %s: lease lost in attempt %d; attempt recorded, state left", delivery_id, number)
    elif delay is not None:
        enqueue([delivery_id], countdown=delay)
    return outcome
