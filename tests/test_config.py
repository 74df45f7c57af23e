"""Settings: start-up refuses unsafe production settings, naming the setting."""

from __future__ import annotations

import re
import secrets
import stat

import pytest

from app import create_app
from app.config import SETTINGS, ConfigError, load_settings, render_env_example, resolve_settings
from tests.support import ROOT

STRONG = secrets.token_urlsafe(48)


def production(**overrides: str) -> dict[str, str]:
    return {"RELAY_ENV": "production", "SECRET_KEY": STRONG, "ALLOWED_ORIGINS": "https://app.example.com", **overrides}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "dev-secret-key"}, "SECRET_KEY"),
        ({"SECRET_KEY": "short-but-random-7f3a"}, "SECRET_KEY"),
        ({"JWT_SECRET": "changeme"}, "JWT_SECRET"),
        ({"JWT_SECRET": "super-secret-jwt-token-with-at-least-32-characters-long"}, "JWT_SECRET"),
        ({"ALLOWED_ORIGINS": "*"}, "ALLOWED_ORIGINS"),
        ({"ALLOWED_ORIGINS": "https://app.example.com, *"}, "ALLOWED_ORIGINS"),
        ({"DEV_AUTH_MODE": "1"}, "DEV_AUTH_MODE"),
        ({"WEBHOOK_SIGNING_SECRET": "not-a-whsec-value"}, "WEBHOOK_SIGNING_SECRET"),
        ({"WEBHOOK_SIGNING_SECRET": "whsec_short"}, "WEBHOOK_SIGNING_SECRET"),
        ({"WEBHOOK_ACCEPT_LEGACY": "true"}, "WEBHOOK_ACCEPT_LEGACY"),
        ({"ALLOW_PRIVATE_WEBHOOK_TARGETS": "true"}, "ALLOW_PRIVATE_WEBHOOK_TARGETS"),
        ({"JWKS_URL": "http://auth.example.com/.well-known/jwks.json"}, "JWKS_URL"),
    ],
)
def test_production_refuses_unsafe_settings(tmp_path, overrides, named):
    with pytest.raises(ConfigError, match=rf"^{named}:"):
        create_app({**production(**overrides), "RELAY_INSTANCE_PATH": str(tmp_path)})


def test_production_accepts_a_safe_configuration(tmp_path):
    app = create_app({**production(JWT_SECRET=secrets.token_urlsafe(40)), "RELAY_INSTANCE_PATH": str(tmp_path)})
    assert app.config["RELAY_ENV"] == "production"


def test_production_never_generates_a_secret(tmp_path):
    with pytest.raises(ConfigError, match="^SECRET_KEY:"):
        resolve_settings(str(tmp_path), production(SECRET_KEY=""))
    assert not (tmp_path / "secret_key").exists()


def test_local_generates_a_private_secret_once(tmp_path):
    first = resolve_settings(str(tmp_path), {"RELAY_ENV": "local"})["SECRET_KEY"]
    second = resolve_settings(str(tmp_path), {"RELAY_ENV": "local"})["SECRET_KEY"]
    assert first == second and len(first) >= 48
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600


def test_file_secrets_and_aliases(tmp_path):
    secret_file = tmp_path / "jwt"
    secret_file.write_text("from-a-file-" + STRONG + "\n")
    values = load_settings({"SUPABASE_JWT_SECRET_FILE": str(secret_file)})
    assert values["JWT_SECRET"] == "from-a-file-" + STRONG


def test_malformed_values_name_the_setting():
    with pytest.raises(ConfigError, match="^PORT:"):
        load_settings({"PORT": "eighty"})
    with pytest.raises(ConfigError, match="^AUTO_PROVISION_USERS:"):
        load_settings({"AUTO_PROVISION_USERS": "perhaps"})
    with pytest.raises(ConfigError, match="^RELAY_ENV:"):
        load_settings({"RELAY_ENV": "staging"})


def test_limits_parse_as_count_and_window():
    values = load_settings({"LIMIT_STREAM_USER": "5/10", "LIMIT_ANON_LIFETIME": "7"})
    assert values["LIMIT_STREAM_USER"] == (5, 10)
    assert values["LIMIT_ANON_LIFETIME"] == (7, 0)
    assert load_settings({})["LIMIT_GLOBAL_IP"] == (100, 60)


def test_env_example_documents_every_setting():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert {setting.name for setting in SETTINGS} <= documented
    # Regenerate with: python -c "from app.config import render_env_example as r; print(r(), end='')" > .env.example
    assert (ROOT / ".env.example").read_text() == render_env_example()
