"""API keys as credentials: stored only as an HMAC, unknown and revoked alike, revocation reaches every process."""

from __future__ import annotations

import base64
import time

import pytest
from sqlalchemy import text

from app.auth.api_keys import key_hash
from app.extensions import database
from tests.auth.helpers import assert_error
from tests.conftest import bearer

PROTECTED = "/api/v1/conversations"


@pytest.fixture
def app(make_app, db_url):
    return make_app(DATABASE_URL=db_url)


def new_key(client, headers, scopes=("chat",)) -> dict:
    response = client.post("/api/v1/api_keys", json={"name": "ci", "scopes": list(scopes)}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_format_and_storage(app, client, user_a_headers):
    created = new_key(client, user_a_headers)
    key = created["key"]
    assert key.startswith("relay_sk_") and len(base64.urlsafe_b64decode(key[9:] + "=")) >= 32
    assert created["prefix"] == key[:15]
    with database.session() as session:
        row = session.execute(text("SELECT * FROM api_keys WHERE id = :id"), {"id": created["id"]}).mappings().one()
        dumped = " ".join(str(value) for value in row.values())
        events = " ".join(str(r) for r in session.execute(text("SELECT * FROM audit_events")).all())
    assert key not in dumped and key[15:] not in dumped and key[15:] not in events
    assert row["key_hash"] == key_hash(app.config["SECRET_KEY"], key)


def test_unknown_revoked_and_malformed_keys_look_the_same(client, user_a_headers):
    created = new_key(client, user_a_headers)
    assert client.get(PROTECTED, headers=bearer(created["key"])).status_code == 200
    assert client.delete(f"/api/v1/api_keys/{created['id']}", headers=user_a_headers).status_code == 204
    answers = []
    for key in (created["key"], "relay_sk_" + "A" * 43, "relay_sk_short", created["key"][:-1] + "!"):
        response = client.get(PROTECTED, headers=bearer(key))
        error = assert_error(response, 401, "invalid_token")
        answers.append((error["message"], error["details"], response.headers["WWW-Authenticate"]))
    assert len(set(map(repr, answers))) == 1


@pytest.mark.parametrize("check_cache_s", [0, 1.0])
def test_revocation_reaches_every_process(make_app, db_url, user_a_headers, check_cache_s):
    """Two app instances (two processes' worth of caches) on one database and Redis: the other
    process refuses the key at once, or within AUTH_CHECK_CACHE_SECONDS when it reuses its checks."""
    first = make_app(DATABASE_URL=db_url, AUTH_CHECK_CACHE_SECONDS=check_cache_s)
    second = make_app(DATABASE_URL=db_url)
    one, two = first.test_client(), second.test_client()
    created = new_key(two, user_a_headers)
    for _ in range(3):  # cached in the first app now
        assert one.get(PROTECTED, headers=bearer(created["key"])).status_code == 200
    assert two.delete(f"/api/v1/api_keys/{created['id']}", headers=user_a_headers).status_code == 204
    revoked_at = time.monotonic()
    while one.get(PROTECTED, headers=bearer(created["key"])).status_code == 200:
        assert time.monotonic() - revoked_at < check_cache_s + 0.5
        time.sleep(0.05)
    assert_error(one.get(PROTECTED, headers=bearer(created["key"])), 401, "invalid_token")


def test_last_used_is_recorded(client, user_a_headers):
    created = new_key(client, user_a_headers)
    assert created["last_used_at"] is None
    client.get(PROTECTED, headers=bearer(created["key"]))
    listed = client.get("/api/v1/api_keys", headers=user_a_headers).get_json()["api_keys"]
    assert listed[0]["last_used_at"] is not None


def test_key_principal_has_exactly_its_scopes(client, user_a_headers):
    chat_only = new_key(client, user_a_headers, ("chat",))
    admin = new_key(client, user_a_headers, ("admin",))
    assert_error(client.get("/api/v1/api_keys", headers=bearer(chat_only["key"])), 403, "insufficient_scope")
    assert_error(client.get(PROTECTED, headers=bearer(admin["key"])), 403, "insufficient_scope")
    assert client.get("/api/v1/api_keys", headers=bearer(admin["key"])).status_code == 200
