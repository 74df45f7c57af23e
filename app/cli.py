"""Operator commands: `flask relay token|keys|secret`.

Secrets are printed once, alone on stdout (so `KEY=$(flask relay keys create …)`
works); everything else goes to stderr.
"""

from __future__ import annotations

import base64
import secrets
import time

import click
import jwt
from flask import Flask, current_app
from flask.cli import AppGroup

from .auth import api_keys
from .db import api_keys as key_queries
from .extensions import database

MAX_TEST_TOKEN_TTL = 30 * 86400
WEBHOOK_SECRET_BYTES = 32

relay = AppGroup("relay", help="Relay's operator commands: test tokens, API keys, webhook secrets.")
keys = AppGroup("keys", help="Create, list and revoke API keys.")
relay.add_command(keys)


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
    click.echo("whsec_" + base64.b64encode(secrets.token_bytes(WEBHOOK_SECRET_BYTES)).decode())


def register_commands(app: Flask) -> None:
    app.cli.add_command(relay)
