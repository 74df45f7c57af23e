"""Operator commands: `flask relay token|keys|secret|actions`.

Secrets are printed once, alone on stdout (so `KEY=$(flask relay keys create …)`
works); everything else goes to stderr.
"""

from __future__ import annotations

import time

import click
import jwt
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo

from .auth import api_keys
from .db import actions as action_queries
from .db import api_keys as key_queries
from .extensions import database
from .reports import audit as audit_command
from .reports import usage as usage_command
from .startup import refusing
from .validate import validate as validate_command
from .webhooks import new_secret

MAX_TEST_TOKEN_TTL = 30 * 86400


class RelayGroup(AppGroup):
    """A command that fails because the database or Redis does not answer says so in one line
    (`relay: refusing to start: DATABASE_URL: …`, status 2) instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        with refusing(ctx.ensure_object(ScriptInfo).load_app().config):
            return super().invoke(ctx)


relay = RelayGroup("relay", help="Relay's operator commands: test tokens, API keys, webhook secrets.")
keys = AppGroup("keys", help="Create, list and revoke API keys.")
relay.add_command(keys)
relay.add_command(validate_command)
relay.add_command(audit_command)
relay.add_command(usage_command)
actions = AppGroup("actions", help="List actions and recent deliveries (never a secret).")
relay.add_command(actions)


@relay.command("token")
@click.option("--sub", required=True, help="The user's subject (`sub` claim).")
@click.option("--email", default=None, help="The user's email (`email` claim).")
@click.option("--ttl", type=click.IntRange(60, MAX_TEST_TOKEN_TTL), default=3600, show_default=True, help="Seconds.")
def token(sub: str, email: str | None, ttl: int) -> None:
    """Mint an HS256 user JWT for local work and tests (refused in production)."""
    config = current_app.config
    if config["RELAY_ENV"] not in ("local", "test"):
        raise click.ClickException("RELAY_ENV: test tokens are minted only in local and test")
    if not config["JWT_SECRET"]:
        raise click.ClickException("JWT_SECRET: not set; user JWTs are verified with it, so set it first")
    now = int(time.time())
    claims = {"sub": sub, "role": "authenticated", "iat": now, "exp": now + ttl}
    if config["JWT_AUDIENCE"]:
        claims["aud"] = config["JWT_AUDIENCE"]
    if config["JWT_ISSUER"]:
        claims["iss"] = config["JWT_ISSUER"]
    if email:
        claims["email"] = email
    click.echo(jwt.encode(claims, config["JWT_SECRET"], algorithm="HS256"))


@keys.command("create")
@click.option("--name", required=True, help="What the key is for.")
@click.option("--scopes", required=True, help="Comma-separated: chat, actions:preview, actions:execute, admin.")
@click.option("--tenant", default=None, help="Tenant id; without it, a new tenant named after the key.")
def create(name: str, scopes: str, tenant: str | None) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    name = name.strip()
    if not 0 < len(name) <= 100:
        raise click.BadParameter("1 to 100 characters", param_hint="--name")
    try:
        listing, key = api_keys.create_key(tenant, name, scopes.split(","), current_app.config["SECRET_KEY"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scopes") from None
    except LookupError as exc:
        raise click.BadParameter(str(exc), param_hint="--tenant") from None
    click.echo(f"id={listing['id']} tenant={listing['tenant_id']} scopes={','.join(listing['scopes'])}", err=True)
    click.echo("The key below is shown once; store it now.", err=True)
    click.echo(key)


@keys.command("list")
@click.option("--tenant", default=None, help="Only this tenant's keys.")
def list_keys(tenant: str | None) -> None:
    """List keys (never the keys themselves)."""
    with database.session() as session:
        rows = [key_queries.key_dict(key) for key in key_queries.all_keys(session, tenant)]
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        click.echo(
            f"{row['id']}  {row['prefix']}…  {row['name']!r}  scopes={','.join(row['scopes'])}  "
            f"tenant={row['tenant_id']}  created={row['created_at']}  last_used={row['last_used_at']}  {state}"
        )
    click.echo(f"{len(rows)} key(s)", err=True)


@keys.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key: it stops working at once in every process."""
    if not api_keys.revoke_key(key_id):
        raise click.ClickException(f"no API key {key_id}")
    click.echo(f"revoked {key_id}", err=True)


@relay.command("secret")
def secret() -> None:
    """Print a new Standard Webhooks secret (whsec_…)."""
    click.echo(new_secret())


@actions.command("list")
@click.option("--tenant", default=None, help="Only this tenant's actions.")
def list_actions(tenant: str | None) -> None:
    """List actions: tenant, name, URL, rotation state."""
    with database.session() as session:
        rows = [(a.tenant_id, action_queries.action_dict(a)) for a in action_queries.all_actions(session, tenant)]
    for tenant_id, row in rows:
        rotation = (
            f"  previous secret until {row['previous_secret_expires_at']}" if row["previous_secret_expires_at"] else ""
        )
        click.echo(f"{tenant_id}  {row['name']}  {row['url']}  created={row['created_at']}{rotation}")
    click.echo(f"{len(rows)} action(s)", err=True)


@actions.command("deliveries")
@click.option("--tenant", default=None, help="Only this tenant's deliveries.")
@click.option("--status", type=click.Choice(action_queries.DELIVERY_STATUSES), default=None)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
def list_deliveries(tenant: str | None, status: str | None, limit: int) -> None:
    """Recent deliveries, newest first: id, tenant, action, status, attempts, last error."""
    with database.session() as session:
        rows = [
            (d.tenant_id, action_queries.delivery_dict(d))
            for d in action_queries.all_deliveries(session, tenant, status, limit)
        ]
    for tenant_id, row in rows:
        click.echo(
            f"{row['delivery_id']}  {tenant_id}  {row['action']}  {row['status']}  attempts={row['attempt_count']}  "
            f"created={row['created_at']}  next={row['next_attempt_at']}  error={row['last_error']}"
        )
    click.echo(f"{len(rows)} deliver(ies)", err=True)


def register_commands(app: Flask) -> None:
    app.cli.add_command(relay)
