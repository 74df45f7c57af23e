"""Actions and deliveries: tenant-scoped queries (another tenant's rows are simply not found)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, selectinload

from ..errors import not_found
from ..principal import Principal
from .models import Action, Delivery, DeliveryAttempt, WebhookEvent
from .serialize import iso

DELIVERY_STATUSES = ("queued", "delivering", "succeeded", "failed", "dead")
REDELIVERABLE = ("failed", "dead")
_WAITING = ("queued", "failed")  # a worker may claim these once next_attempt_at has come


def _tenant(principal: Principal) -> str:
    if principal.tenant_id is None:
        raise not_found("action")  # no tenant, no actions: nothing to see
    return principal.tenant_id


# -- actions --------------------------------------------------------------------------
def tenant_actions(session: Session, principal: Principal) -> list[Action]:
    """The caller's tenant's actions by name."""
    if principal.tenant_id is None:
        return []
    query = select(Action).where(Action.tenant_id == principal.tenant_id).order_by(Action.name)
    return list(session.scalars(query))


def find_action(session: Session, principal: Principal, name: str, *, for_update: bool = False) -> Action:
    """The caller's tenant's action `name`; 404 when unknown or another tenant's."""
    query = select(Action).where(Action.tenant_id == _tenant(principal), Action.name == name)
    action = session.scalar(query.with_for_update() if for_update else query)
    if action is None:
        raise not_found("action")
    return action


def action_dict(action: Action) -> dict[str, Any]:
    """What an action looks like to its tenant: never its secret."""
    return {
        "name": action.name,
        "url": action.url,
        "description": action.description,
        "created_at": iso(action.created_at),
        "secret_rotated_at": iso(action.rotated_at),
        "previous_secret_expires_at": iso(action.previous_expires_at),
    }


def all_actions(session: Session, tenant_id: str | None = None) -> list[Action]:
    """Every action, or one tenant's: for the operator's CLI only."""
    query = select(Action)
    if tenant_id is not None:
        query = query.where(Action.tenant_id == tenant_id)
    return list(session.scalars(query.order_by(Action.tenant_id, Action.name)))


# -- deliveries ------------------------------------------------------------------------
def find_delivery(session: Session, principal: Principal, delivery_id: str, *, attempts: bool = False) -> Delivery:
    """A delivery of the caller's tenant; 404 when unknown or another tenant's."""
    query = select(Delivery).where(Delivery.id == delivery_id, Delivery.tenant_id == _tenant(principal))
    if attempts:
        query = query.options(selectinload(Delivery.attempts))
    delivery = session.scalar(query)
    if delivery is None:
        raise not_found("delivery")
    return delivery


def by_idempotency_key(session: Session, tenant_id: str, key: str) -> Delivery | None:
    query = select(Delivery).where(Delivery.tenant_id == tenant_id, Delivery.idempotency_key == key)
    return session.scalar(query)


@dataclass(frozen=True)
class DeliveryFilter:
    status: str | None = None
    action: str | None = None
    before: tuple[datetime, str] | None = None  # the cursor: (created_at, id) of the last row seen
    limit: int = 50


def list_deliveries(session: Session, principal: Principal, query: DeliveryFilter) -> list[Delivery]:
    """The tenant's deliveries, newest first; one row more than `limit` tells there is a next page."""
    if principal.tenant_id is None:
        return []
    statement = select(Delivery).where(Delivery.tenant_id == principal.tenant_id)
    if query.status:
        statement = statement.where(Delivery.status == query.status)
    if query.action:
        statement = statement.where(Delivery.action_name == query.action)
    if query.before:
        at, last_id = query.before
        statement = statement.where(
            or_(Delivery.created_at < at, and_(Delivery.created_at == at, Delivery.id < last_id))
        )
    statement = statement.order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(query.limit + 1)
    return list(session.scalars(statement))


def all_deliveries(session: Session, tenant_id: str | None = None, status: str | None = None, limit: int = 100):
    """Recent deliveries of every tenant (or one): for the operator's CLI only."""
    statement = select(Delivery)
    if tenant_id is not None:
        statement = statement.where(Delivery.tenant_id == tenant_id)
    if status is not None:
        statement = statement.where(Delivery.status == status)
    return list(session.scalars(statement.order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(limit)))


def claim(session: Session, delivery: Delivery, now: datetime, lease_until: datetime, token: str) -> bool:
    """Take the delivery for one attempt if it is due, or its last claimer's lease ran out.

    One conditional UPDATE on the state just read (attempt_count is the version): of any number of
    workers woken for the same delivery, exactly one wins; the others see a rowcount of 0.
    """
    due = delivery.status in _WAITING and (delivery.next_attempt_at is None or aware(delivery.next_attempt_at) <= now)
    abandoned = delivery.status == "delivering" and (delivery.lease_until is None or aware(delivery.lease_until) < now)
    if not (due or abandoned):
        return False
    statement = (
        update(Delivery)
        .where(
            Delivery.id == delivery.id,
            Delivery.status == delivery.status,
            Delivery.attempt_count == delivery.attempt_count,
        )
        .values(
            status="delivering",
            attempt_count=Delivery.attempt_count + 1,
            lease_until=lease_until,
            lease_token=token,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).rowcount == 1


def release(session: Session, delivery_id: str, token: str, **values: Any) -> bool:
    """Record the end of an attempt, only if this worker still holds the lease."""
    statement = (
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.lease_token == token)
        .values(lease_until=None, lease_token=None, **values)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).rowcount == 1


def overdue(session: Session, now: datetime, grace_until: datetime, limit: int = 200) -> list[str]:
    """Ids of deliveries whose wake-up was lost: due long ago and unclaimed, or claimed by a dead worker."""
    statement = (
        select(Delivery.id)
        .where(
            or_(
                and_(Delivery.status.in_(_WAITING), Delivery.next_attempt_at < grace_until),
                and_(Delivery.status == "delivering", Delivery.lease_until < now),
            )
        )
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
    )
    return list(session.scalars(statement))


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes that were stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def attempt_dict(attempt: DeliveryAttempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "at": iso(attempt.started_at),
        "status_code": attempt.status_code,
        "duration_ms": attempt.duration_ms,
        "error": attempt.error,
        "response_excerpt": attempt.response_excerpt,
    }


def delivery_dict(delivery: Delivery, *, attempts: bool = False) -> dict[str, Any]:
    """What a delivery looks like to its tenant (with its attempts when asked)."""
    body = {
        "delivery_id": delivery.id,
        "action": delivery.action_name,
        "status": delivery.status,
        "payload": delivery.payload,
        "idempotency_key": delivery.idempotency_key,
        "plan_id": delivery.plan_id,
        "attempt_count": delivery.attempt_count,
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.status in _WAITING else None,
        "last_error": delivery.last_error,
        "result": delivery.result,
        "result_at": iso(delivery.result_at),
        "created_at": iso(delivery.created_at),
        "updated_at": iso(delivery.updated_at),
        "completed_at": iso(delivery.completed_at),
    }
    if attempts:
        body["attempts"] = [attempt_dict(attempt) for attempt in delivery.attempts]
    return body


def add_event(session: Session, **fields: Any) -> WebhookEvent:
    event = WebhookEvent(**fields)
    session.add(event)
    session.flush()
    return event


def delivery_by_id(session: Session, delivery_id: str) -> Delivery | None:
    """A delivery by id alone: for the worker and for inbound results, which carry no principal."""
    return session.get(Delivery, delivery_id)
