"""Audit events: append, and the listing, tenant-scoped or platform-wide (newest first, cursor = last id seen)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..errors import forbidden
from ..principal import Principal
from .models import ApiKey, AuditEvent, User
from .serialize import iso


@dataclass(frozen=True)
class AuditFilter:
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    principal_ids: tuple[str, ...] = ()
    before_id: int | None = None
    limit: int = 50

    @classmethod
    def from_query(cls, args: Mapping[str, Any], principal_ids: tuple[str, ...] = ()) -> AuditFilter:
        """From the loaded audit query (the schema of /admin/audit and `flask relay audit`)."""
        return cls(
            type=args.get("type"),
            since=args["since"].astimezone(UTC) if "since" in args else None,
            until=args["until"].astimezone(UTC) if "until" in args else None,
            principal_ids=principal_ids,
            before_id=int(args["cursor"]) if "cursor" in args else None,
            limit=args["limit"],
        )


def add_event(session: Session, **fields: Any) -> None:
    session.add(AuditEvent(**fields))


def principal_ids(session: Session, user_id: str, tenant_id: str | None) -> tuple[str, ...]:
    """The principal ids `user_id` names, inside `tenant_id` (None: anywhere, for the CLI); () for no one."""
    kind, _, bare = user_id.partition(":") if ":" in user_id else ("user", "", user_id)
    if kind == "key":
        key = session.get(ApiKey, bare)
        if key is not None and tenant_id in (None, key.tenant_id):
            return (f"key:{key.id}",)
    elif kind == "user":
        user = session.scalar(select(User).where(or_(User.id == bare, User.subject == bare)).limit(1))
        if user is not None and tenant_id in (None, user.tenant_id):
            return (f"user:{user.id}",)
    elif kind == "anon" and tenant_id is None:
        return (user_id,)  # anonymous principals have no tenant and no row: the id is all there is
    return ()


def tenant_principal_ids(session: Session, principal: Principal, user_id: str) -> tuple[str, ...]:
    """The principal ids `user_id` names inside the caller's tenant; 403 for anyone else's."""
    found = principal_ids(session, user_id, principal.tenant_id) if principal.tenant_id else ()
    if not found:
        raise forbidden("user")
    return found


def list_events(session: Session, principal: Principal, query: AuditFilter) -> list[AuditEvent]:
    """The caller's tenant's events matching `query`, newest first; `limit + 1` rows tell if more exist."""
    if principal.tenant_id is None:
        raise forbidden("audit log")
    return find_events(session, query, tenant_id=principal.tenant_id)


def find_events(session: Session, query: AuditFilter, *, tenant_id: str | None) -> list[AuditEvent]:
    """Events matching `query` of one tenant, or of the whole platform when `tenant_id` is None (the CLI)."""
    statement = select(AuditEvent)
    if tenant_id is not None:
        statement = statement.where(AuditEvent.tenant_id == tenant_id)
    if query.type:
        statement = statement.where(AuditEvent.type == query.type)
    if query.since:
        statement = statement.where(AuditEvent.created_at >= query.since)
    if query.until:
        statement = statement.where(AuditEvent.created_at < query.until)
    if query.principal_ids:
        statement = statement.where(AuditEvent.principal_id.in_(query.principal_ids))
    if query.before_id is not None:
        statement = statement.where(AuditEvent.id < query.before_id)
    return list(session.scalars(statement.order_by(AuditEvent.id.desc()).limit(query.limit + 1)))


def event_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "type": event.type,
        "created_at": iso(event.created_at),
        "principal_id": event.principal_id,
        "ip": event.ip,
        "request_id": event.request_id,
        "endpoint": event.endpoint,
        "details": event.details or {},
    }
