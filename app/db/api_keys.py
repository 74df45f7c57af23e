"""API key rows: lookups by hash, and tenant-scoped listing and access."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import forbidden, not_found
from ..principal import Principal
from .models import ApiKey
from .serialize import iso


def by_hash(session: Session, key_hash: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))


def tenant_keys(session: Session, principal: Principal) -> list[ApiKey]:
    """The caller's tenant's keys, newest first (none for a principal without a tenant)."""
    if principal.tenant_id is None:
        return []
    query = select(ApiKey).where(ApiKey.tenant_id == principal.tenant_id)
    return list(session.scalars(query.order_by(ApiKey.created_at.desc(), ApiKey.id)))


def get_tenant_key(session: Session, principal: Principal, key_id: str) -> ApiKey:
    """A live key of the caller's tenant; 403 when another tenant's, 404 when unknown or
    revoked (a revoked key is deleted: it is listed for the record, never served again)."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise not_found("API key")
    if principal.tenant_id is None or key.tenant_id != principal.tenant_id:
        raise forbidden("API key")
    if key.revoked_at is not None:
        raise not_found("API key")
    return key


def all_keys(session: Session, tenant_id: str | None = None) -> list[ApiKey]:
    """Every key, or one tenant's: for the operator's CLI only."""
    query = select(ApiKey)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    return list(session.scalars(query.order_by(ApiKey.created_at.desc(), ApiKey.id)))


def key_dict(key: ApiKey) -> dict[str, Any]:
    """What a key looks like to its tenant: never the key or its hash."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": sorted(key.scopes.split()),
        "tenant_id": key.tenant_id,
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
        "revoked_at": iso(key.revoked_at),
    }
