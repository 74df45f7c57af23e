"""POST/GET/DELETE /api/v1/api_keys: the key is shown once, scopes never exceed the creator's."""

from __future__ import annotations

import secrets

import pytest

from tests.auth.helpers import assert_error
from tests.conftest import bearer


@pytest.fixture
def make_app(make_app, key_prefix):
    prefix = f"{key_prefix}{secrets.token_hex(4)}:"  # failure counters of this test's own
    return lambda **overrides: make_app(**{"REDIS_KEY_PREFIX": prefix, **overrides})


def create(client, headers, name="deploy bot", scopes=("chat",)):
    return client.post("/api/v1/api_keys", json={"name": name, "scopes": list(scopes)}, headers=headers)


def test_create_shows_the_key_once(client, user_a_headers):
    response = create(client, user_a_headers, scopes=("chat", "actions:preview"))
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {
        "id",
        "name",
        "prefix",
        "scopes",
        "tenant_id",
        "created_at",
        "last_used_at",
        "revoked_at",
        "key",
    }
    assert body["name"] == "deploy bot" and body["scopes"] == ["actions:preview", "chat"]
    assert body["key"].startswith(body["prefix"]) and body["revoked_at"] is None
    listed = client.get("/api/v1/api_keys", headers=user_a_headers).get_json()
    assert listed["count"] == 1
    assert "key" not in listed["api_keys"][0] and body["key"] not in str(listed)
    assert {k: v for k, v in body.items() if k not in ("key", "last_used_at")} == {
        k: v for k, v in listed["api_keys"][0].items() if k != "last_used_at"
    }


def test_scopes_never_exceed_the_creators(client, user_a_headers):
    admin_key = create(client, user_a_headers, scopes=("admin", "chat")).get_json()["key"]
    error = assert_error(create(client, bearer(admin_key), scopes=("actions:execute",)), 403, "insufficient_scope")
    assert error["details"]["required"] == ["actions:execute"]
    assert create(client, bearer(admin_key), scopes=("chat",)).status_code == 201
    assert create(client, bearer(admin_key), scopes=("admin",)).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "x"},
        {"scopes": ["chat"]},
        {"name": "", "scopes": ["chat"]},
        {"name": "x" * 101, "scopes": ["chat"]},
        {"name": "bad\nname", "scopes": ["chat"]},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "scopes": "chat"},
        {"name": "x", "scopes": ["chat"], "tenant_id": "someone-else"},
    ],
)
def test_invalid_bodies_are_422(client, user_a_headers, body):
    response = client.post("/api/v1/api_keys", json=body, headers=user_a_headers)
    assert_error(response, 422, "validation_error")


def test_non_json_is_415(client, user_a_headers):
    response = client.post("/api/v1/api_keys", data="name=x", headers=user_a_headers)
    assert_error(response, 415, "unsupported_media_type")


def test_revoke(client, user_a_headers):
    created = create(client, user_a_headers).get_json()
    path = f"/api/v1/api_keys/{created['id']}"
    assert client.delete(path, headers=user_a_headers).status_code == 204
    # Revoked is deleted: a second DELETE finds nothing (it was answered 204 again).
    assert_error(client.delete(path, headers=user_a_headers), 404, "not_found")
    listed = client.get("/api/v1/api_keys", headers=user_a_headers).get_json()["api_keys"]
    assert listed[0]["revoked_at"] is not None
    error = assert_error(client.get("/api/v1/conversations", headers=bearer(created["key"])), 401, "invalid_token")
    unknown = client.get("/api/v1/conversations", headers=bearer("relay_sk_" + "Q" * 43)).get_json()["error"]
    assert error["message"] == unknown["message"] == "The API key is invalid."
    assert_error(client.delete("/api/v1/api_keys/no-such-key", headers=user_a_headers), 404, "not_found")


def test_a_key_can_revoke_itself(client, user_a_headers):
    created = create(client, user_a_headers, scopes=("admin",)).get_json()
    assert client.delete(f"/api/v1/api_keys/{created['id']}", headers=bearer(created["key"])).status_code == 204
    assert_error(client.get("/api/v1/api_keys", headers=bearer(created["key"])), 401, "invalid_token")


def test_key_changes_are_audited(client, user_a_headers):
    created = create(client, user_a_headers).get_json()
    client.delete(f"/api/v1/api_keys/{created['id']}", headers=user_a_headers)
    events = client.get("/admin/audit", headers=user_a_headers).get_json()["events"]
    kinds = [(event["type"], event["details"].get("key_id")) for event in events[:2]]
    assert kinds == [("api_key_revoked", created["id"]), ("api_key_created", created["id"])]
