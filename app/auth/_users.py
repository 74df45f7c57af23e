"""Users of verified JWTs: the allowlist, the database row, auto-provisioning.

Tenant and role always come from the database; a token's claims (role,
app_metadata, tenant ids) never grant anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ..db import Tenant, User
from ..errors import unavailable
from ..extensions import database
from ..principal import ROLE_SCOPES, Principal
from ._verdicts import not_allowed

PROVISIONED_ROLE = "admin"  # the only user of a personal tenant administers it
MAX_EMAIL_CHARS = 320


def _email(claims: Mapping[str, Any]) -> str | None:
    email = claims.get("email")
    if not isinstance(email, str) or not 0 < len(email) <= MAX_EMAIL_CHARS or not email.isprintable():
        return None
    return email


def email_verified(claims: Mapping[str, Any]) -> bool:
    """Whether the identity provider vouches for the token's email.

    `email_verified` must be the JSON boolean true, at the top level (OIDC) or
    in `user_metadata` (where Supabase puts it); a string "true" or a 1 is not. A false
    in either place wins over a true in the other: when the two disagree the
    token vouches for nothing.
    """
    metadata = claims.get("user_metadata")
    places = [claims.get("email_verified"), metadata.get("email_verified") if isinstance(metadata, dict) else None]
    # Identity, not equality: 1 == True, and a token's 1 or 0 is not a boolean.
    return any(value is True for value in places) and not any(value is False for value in places)


def is_allowed(claims: Mapping[str, Any], allowlist: tuple[str, ...]) -> bool:
    """Empty allowlist: everyone. Otherwise the subject, or a verified email (case-insensitive)."""
    if not allowlist:
        return True
    if claims["sub"] in allowlist:
        return True
    email = _email(claims)
    if email is None or not email_verified(claims):
        return False
    return email.lower() in {entry.lower() for entry in allowlist}


def principal_of(user: User) -> Principal:
    return Principal(
        id=f"user:{user.id}",
        kind="user",
        subject=user.subject,
        tenant_id=user.tenant_id,
        scopes=ROLE_SCOPES.get(user.role, frozenset()),  # an unknown role grants nothing
    )


def _provision(session: Session, subject: str, email: str | None) -> User:
    tenant = Tenant(name=f"Personal: {email or subject}"[:200])
    session.add(tenant)
    session.flush()
    user = User(tenant_id=tenant.id, subject=subject, email=email, role=PROVISIONED_ROLE)
    session.add(user)
    session.flush()
    return user


def resolve(claims: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[Principal, bool]:
    """The user's principal and whether it was just provisioned; 403 user_not_allowed."""
    if not is_allowed(claims, config["AUTHORIZED_USERS"]):
        raise not_allowed("not_in_allowlist")
    try:
        try:
            return _lookup_or_provision(claims, config)
        except IntegrityError:  # a concurrent first request provisioned the same subject: it exists now
            return _lookup_or_provision(claims, config)
    except OperationalError:
        raise unavailable("database") from None


def _lookup_or_provision(claims: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[Principal, bool]:
    subject, email = claims["sub"], _email(claims)
    with database.session() as session:
        user = session.scalar(select(User).where(User.subject == subject))
        created = False
        if user is None:
            if not config["AUTO_PROVISION_USERS"]:
                raise not_allowed("not_provisioned")
            user, created = _provision(session, subject, email), True
        elif email is not None and user.email != email:
            user.email = email
        return principal_of(user), created
