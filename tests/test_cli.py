"""flask relay token|keys|secret: what an operator runs."""

from __future__ import annotations

import base64
import secrets

import jwt
import pytest

from app import create_app
from tests.auth.helpers import assert_error
from tests.conftest import bearer


@pytest.fixture
def make_app(make_app, key_prefix):
    prefix = f"{key_prefix}{secrets.token_hex(4)}:"
    return lambda **overrides: make_app(**{"REDIS_KEY_PREFIX": prefix, **overrides})


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=["relay", *args])


def test_token_mints_a_working_user_token(app, client):
    result = run(app, "token", "--sub", "cli-user", "--email", "cli@example.com", "--ttl", "120")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    claims = jwt.decode(token, app.config["JWT_SECRET"], algorithms=["HS256"], audience="authenticated")
    assert claims["sub"] == "cli-user" and claims["email"] == "cli@example.com"
    assert claims["exp"] - claims["iat"] == 120
    assert client.get("/api/v1/api_keys", headers=bearer(token)).status_code == 200


def test_token_is_refused_in_production(tmp_path, base_env):
    app = create_app(
        {
            **base_env,
            "RELAY_ENV": "production",
            "RELAY_INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": secrets.token_urlsafe(48),
            "JWT_SECRET": secrets.token_urlsafe(48),
            "ALLOWED_ORIGINS": "https://app.example.com",
        }
    )
    result = run(app, "token", "--sub", "someone")
    assert result.exit_code != 0 and "RELAY_ENV" in result.output
    assert result.stdout.count(".") < 2  # no token printed


def test_token_needs_jwt_secret(make_app):
    result = run(make_app(JWT_SECRET=""), "token", "--sub", "someone")
    assert result.exit_code != 0 and "JWT_SECRET" in result.output


def test_keys_create_list_revoke(app, client):
    created = run(app, "keys", "create", "--name", "nightly job", "--scopes", "chat,actions:preview")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("relay_sk_") and "\n" not in key
    assert client.get("/api/v1/conversations", headers=bearer(key)).status_code == 200

    listed = run(app, "keys", "list")
    assert listed.exit_code == 0 and key[:15] in listed.stdout and key not in listed.stdout
    key_id = listed.stdout.split()[0]

    revoked = run(app, "keys", "revoke", key_id)
    assert revoked.exit_code == 0, revoked.output
    assert_error(client.get("/api/v1/conversations", headers=bearer(key)), 401, "invalid_token")
    assert run(app, "keys", "revoke", "no-such-key").exit_code != 0


def test_keys_create_in_an_existing_tenant(app, client, user_a_headers):
    tenant = client.post("/api/v1/api_keys", json={"name": "a", "scopes": ["chat"]}, headers=user_a_headers)
    tenant_id = tenant.get_json()["tenant_id"]
    result = run(app, "keys", "create", "--name", "ops", "--scopes", "admin", "--tenant", tenant_id)
    assert result.exit_code == 0, result.output
    listed = client.get("/api/v1/api_keys", headers=bearer(result.stdout.strip())).get_json()
    assert {entry["name"] for entry in listed["api_keys"]} == {"a", "ops"}
    assert run(app, "keys", "create", "--name", "x", "--scopes", "chat", "--tenant", "nope").exit_code != 0


@pytest.mark.parametrize("scopes", ["", "root", "chat,root"])
def test_keys_create_refuses_unknown_scopes(app, scopes):
    result = run(app, "keys", "create", "--name", "x", "--scopes", scopes)
    assert result.exit_code != 0 and "relay_sk_" not in result.stdout


def test_secret_is_a_standard_webhooks_secret(app):
    result = run(app, "secret")
    value = result.stdout.strip()
    assert result.exit_code == 0 and value.startswith("whsec_")
    assert len(base64.b64decode(value.removeprefix("whsec_"))) == 32
