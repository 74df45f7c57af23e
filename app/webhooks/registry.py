"""A tenant's actions (admin): register with a URL the SSRF guard accepts, list, delete, rotate the secret."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from .. import audit
from ..db import actions as queries
from ..db.models import Action, new_id, utcnow
from ..errors import APIError
from ..extensions import database
from ..principal import Principal
from . import _crypto, ssrf

ACTION_CREATED = "action_created"
ACTION_DELETED = "action_deleted"
ACTION_SECRET_ROTATED = "action_secret_rotated"  # noqa: S105 - an event name, not a secret


def guard_settings(config: Mapping[str, Any]) -> dict[str, bool]:
    """The SSRF guard's two switches from the settings."""
    return {
        "allow_private": bool(config["ALLOW_PRIVATE_WEBHOOK_TARGETS"]),
        "https_only": config["RELAY_ENV"] == "production",
    }


def check_url(url: str, config: Mapping[str, Any]) -> None:
    """422 when the URL is not one Relay may deliver to (scheme, credentials, non-public address)."""
    try:
        ssrf.resolve_target(url, **guard_settings(config))
    except ssrf.BlockedTarget as exc:
        raise APIError(
            422, "validation_error", "The action URL is not allowed.", {"fields": {"url": [str(exc)]}}
        ) from None


def create_action(
    principal: Principal, name: str, url: str, description: str, config: Mapping[str, Any]
) -> tuple[dict[str, Any], str]:
    """A new action of the caller's tenant: its listing and its secret (shown this once)."""
    if principal.tenant_id is None:
        raise APIError(403, "forbidden", "You do not have access to this action")
    check_url(url, config)
    secret = _crypto.new_secret()
    action_id = new_id()
    try:
        with database.session() as session:
            action = Action(
                id=action_id,
                tenant_id=principal.tenant_id,
                name=name,
                url=url,
                description=description,
                secret_enc=_crypto.encrypt(config["SECRET_KEY"], secret, action_id),
                created_by=principal.id,
            )
            session.add(action)
            session.flush()
            listing = queries.action_dict(action)
    except IntegrityError:
        raise APIError(409, "action_exists", f"An action named {name!r} already exists.") from None
    audit.record_event(ACTION_CREATED, principal, {"name": name})
    return listing, secret


def list_actions(principal: Principal) -> list[dict[str, Any]]:
    with database.session() as session:
        return [queries.action_dict(action) for action in queries.tenant_actions(session, principal)]


def delete_action(principal: Principal, name: str) -> None:
    """Delete the action; its deliveries stay listed, and those not yet sent end `dead`."""
    with database.session() as session:
        session.delete(queries.find_action(session, principal, name))
    audit.record_event(ACTION_DELETED, principal, {"name": name})


def rotate_secret(principal: Principal, name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A new secret; the old one keeps signing for SECRET_ROTATION_SECONDS (an older one stops now)."""
    secret = _crypto.new_secret()
    now = utcnow()
    with database.session() as session:
        action = queries.find_action(session, principal, name, for_update=True)
        action.previous_secret_enc = action.secret_enc
        action.previous_expires_at = now + timedelta(seconds=config["SECRET_ROTATION_SECONDS"])
        action.secret_enc = _crypto.encrypt(config["SECRET_KEY"], secret, action.id)
        action.rotated_at = now
        listing = queries.action_dict(action)
    audit.record_event(ACTION_SECRET_ROTATED, principal, {"name": name})
    return {**listing, "secret": secret}


def signing_keys(action: Action, secret_key: str, now: datetime) -> list[bytes]:
    """The HMAC keys a delivery is signed with: the current secret, and the previous one while it is valid."""
    secrets = [_crypto.decrypt(secret_key, action.secret_enc, action.id)]
    expires = action.previous_expires_at
    if action.previous_secret_enc and expires is not None and queries.aware(expires) > now:
        secrets.append(_crypto.decrypt(secret_key, action.previous_secret_enc, action.id))
    return [_crypto.secret_bytes(secret) for secret in secrets]
