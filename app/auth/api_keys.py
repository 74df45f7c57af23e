"""API keys: `relay_sk_` + 32 random bytes, stored only as an HMAC keyed from SECRET_KEY.

A key is shown once, when it is made. The database holds its HMAC and a short
visible prefix (enough to tell keys apart in a list, useless for guessing).
Unknown and revoked keys get the same 401.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import OperationalError

from .. import audit
from ..db import ApiKey, Tenant
from ..db import api_keys as queries
from ..db.models import utcnow
from ..errors import unavailable
from ..extensions import database
from ..principal import SCOPES, Principal
from . import _failures
from ._state import auth_state
from ._verdicts import INVALID_KEY_MESSAGE, insufficient_scope, invalid

log = logging.getLogger("relay.auth.keys")

PREFIX = "relay_sk_"
KEY_BYTES = 32
VISIBLE_CHARS = 6  # after relay_sk_: shown in lists, 36 bits of 256, no help to a guesser
LAST_USED_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most this often per key
_FORMAT = re.compile(r"^relay_sk_[A-Za-z0-9_-]{43,128}$")


def generate() -> str:
    return PREFIX + secrets.token_urlsafe(KEY_BYTES)


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)


def key_hash(secret_key: str, key: str) -> str:
    """HMAC-SHA256 of the key under a key derived from SECRET_KEY (never SECRET_KEY itself)."""
    derived = hmac.new(secret_key.encode(), b"relay.api-key-hash.v1", hashlib.sha256).digest()
    return hmac.new(derived, key.encode(), hashlib.sha256).hexdigest()


def parse_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Known scope names, at least one; ValueError otherwise."""
    wanted = frozenset(scope.strip() for scope in scopes if scope.strip())
    unknown = wanted - SCOPES
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    if not wanted:
        raise ValueError("at least one scope is required")
    return wanted


def principal_of(key: ApiKey) -> Principal:
    return Principal(
        id=f"key:{key.id}",
        kind="api_key",
        subject=key.id,
        tenant_id=key.tenant_id,
        scopes=frozenset(key.scopes.split()) & SCOPES,
    )


def verify(token: str, config: Mapping[str, Any]) -> Principal:
    """The key's principal, or one 401 for malformed, unknown and revoked keys alike."""
    if not _FORMAT.match(token):
        raise invalid("malformed_key", message=INVALID_KEY_MESSAGE)
    digest = key_hash(config["SECRET_KEY"], token)
    try:
        with database.session() as session:
            key = queries.by_hash(session, digest)
            if key is None:
                raise invalid("unknown_key", message=INVALID_KEY_MESSAGE)
            if key.revoked_at is not None:
                raise invalid("revoked_key", message=INVALID_KEY_MESSAGE, tenant_id=key.tenant_id, key_id=key.id)
            now = utcnow()
            last = key.last_used_at
            if last is None or now - (last if last.tzinfo else last.replace(tzinfo=now.tzinfo)) > LAST_USED_RESOLUTION:
                key.last_used_at = now
            return principal_of(key)
    except OperationalError:
        raise unavailable("database") from None


def create_key(
    tenant_id: str | None, name: str, scopes: Iterable[str], secret_key: str, actor: Principal | None = None
) -> tuple[dict[str, Any], str]:
    """A new key (in a new tenant named after it when `tenant_id` is None): its listing and the key, once."""
    plaintext = generate()
    with database.session() as session:
        if tenant_id is None:
            tenant = Tenant(name=name)
            session.add(tenant)
            session.flush()
            tenant_id = tenant.id
        elif session.get(Tenant, tenant_id) is None:
            raise LookupError(f"no tenant {tenant_id}")
        key = ApiKey(
            tenant_id=tenant_id,
            name=name,
            prefix=plaintext[: len(PREFIX) + VISIBLE_CHARS],
            key_hash=key_hash(secret_key, plaintext),
            scopes=" ".join(sorted(parse_scopes(scopes))),
            created_by=actor.id if actor else "cli",
        )
        session.add(key)
        session.flush()
        listing = queries.key_dict(key)
    details = {"key_id": key.id, "name": name, "scopes": key.scopes, "via": "api" if actor else "cli"}
    audit.record_event(audit.KEY_CREATED, actor, details, tenant_id=tenant_id)
    return listing, plaintext


def create_for(principal: Principal, name: str, scopes: Iterable[str], secret_key: str) -> tuple[dict[str, Any], str]:
    """A key in the caller's tenant, with scopes the caller holds itself (else 403)."""
    wanted = parse_scopes(scopes)
    beyond = wanted - principal.scopes
    if beyond or principal.tenant_id is None:
        raise insufficient_scope(beyond or wanted, "A key cannot have scopes its creator lacks.")
    return create_key(principal.tenant_id, name, wanted, secret_key, actor=principal)


def list_for(principal: Principal) -> list[dict[str, Any]]:
    with database.session() as session:
        return [queries.key_dict(key) for key in queries.tenant_keys(session, principal)]


def revoke_for(principal: Principal, key_id: str) -> None:
    """Revoke a key of the caller's tenant (403 another's, 404 unknown); idempotent."""
    with database.session() as session:
        key = queries.get_tenant_key(session, principal, key_id)
        newly = _revoke(key)
        tenant_id = key.tenant_id
    _forget_everywhere()
    if newly:
        audit.record_event(audit.KEY_REVOKED, principal, {"key_id": key_id}, tenant_id=tenant_id)


def revoke_key(key_id: str) -> bool:
    """The operator's revocation (CLI); False when there is no such key."""
    with database.session() as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            return False
        newly = _revoke(key)
        tenant_id = key.tenant_id
    _forget_everywhere()
    if newly:
        audit.record_event(audit.KEY_REVOKED, None, {"key_id": key_id, "via": "cli"}, tenant_id=tenant_id)
    return True


def _revoke(key: ApiKey) -> bool:
    if key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    return True


def _forget_everywhere() -> None:
    """Every process drops its cached principals: the revoked key stops working at once."""
    auth_state().cache.clear()
    try:
        _failures.bump_epoch()
    except _failures.REDIS_ERRORS as exc:
        log.error("could not publish a revocation (%s); other processes forget the key within AUTH_CACHE_SECONDS", exc)
