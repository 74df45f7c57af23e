"""Two users in two tenants and an anonymous principal: B never reads, changes, resumes, cancels
or lists A's data, on every endpoint that takes an id. On SQLite and on PostgreSQL."""

from __future__ import annotations

import secrets

import jwt
import pytest

from tests.auth.helpers import assert_error
from tests.support import wait_until


@pytest.fixture
def app(make_app, db_url):
    return make_app(DATABASE_URL=db_url)


def subject_of(headers: dict[str, str]) -> str:
    return jwt.decode(headers["Authorization"].split()[1], options={"verify_signature": False})["sub"]


@pytest.fixture
def a_data(client, user_a_headers) -> dict[str, str]:
    """User A's conversation, stream and API key, made through the API."""
    stream_id = f"a-stream-{secrets.token_hex(6)}"
    response = client.post(
        "/api/v1/stream", json={"message": "A's plans", "stream_id": stream_id}, headers=user_a_headers
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["X-Stream-Id"] == stream_id
    response.close()
    wait_until(
        lambda: client.get("/api/v1/conversations", headers=user_a_headers).get_json()["count"] == 1,
        10,
        "A's conversation row",
    )
    conversation_id = client.get("/api/v1/conversations", headers=user_a_headers).get_json()["conversations"][0]["id"]
    key = client.post("/api/v1/api_keys", json={"name": "A's key", "scopes": ["chat"]}, headers=user_a_headers)
    assert key.status_code == 201
    return {
        "stream_id": stream_id,
        "conversation_id": conversation_id,
        "key_id": key.get_json()["id"],
        "key": key.get_json()["key"],
        "subject": subject_of(user_a_headers),
    }


@pytest.fixture(params=["user_b", "anonymous", "a_chat_key"])
def intruder(request, user_b_headers, anon_headers, a_data) -> dict[str, str]:
    """Another principal: B in another tenant, an anonymous one, and even A's own API key (its own principal)."""
    return {
        "user_b": user_b_headers,
        "anonymous": anon_headers,
        "a_chat_key": {"Authorization": f"Bearer {a_data['key']}"},
    }[request.param]


def test_conversations(client, user_a_headers, a_data, intruder):
    path = f"/api/v1/conversations/{a_data['conversation_id']}"
    error = assert_error(client.get(path, headers=intruder), 403, "forbidden")
    assert error["message"] == "You do not have access to this conversation"
    assert_error(client.delete(path, headers=intruder), 403, "forbidden")
    listed = client.get("/api/v1/conversations", headers=intruder).get_json()
    assert listed == {"conversations": [], "count": 0}
    for user_id in (a_data["subject"], "user:" + a_data["subject"]):
        response = client.get("/api/v1/conversations", query_string={"user_id": user_id}, headers=intruder)
        assert_error(response, 403, "forbidden")
    body = {"message": "let me in", "conversation_id": a_data["conversation_id"]}
    assert_error(client.post("/api/v1/stream", json=body, headers=intruder), 403, "forbidden")
    mine = client.get(path, headers=user_a_headers)
    assert mine.status_code == 200 and mine.get_json()["messages"][0]["content"] == "A's plans"


def test_streams(client, user_a_headers, a_data, intruder):
    path = f"/api/v1/stream/{a_data['stream_id']}"
    assert_error(client.get(path, headers=intruder), 403, "forbidden")
    assert_error(client.get(path, headers={**intruder, "Last-Event-ID": "0"}), 403, "forbidden")
    assert_error(client.delete(path, headers=intruder), 403, "forbidden")
    body = {"message": "attach me", "stream_id": a_data["stream_id"]}
    assert_error(client.post("/api/v1/stream", json=body, headers=intruder), 409, "stream_id_in_use")
    own = client.get(path, headers=user_a_headers)
    assert own.status_code == 200
    own.close()
    assert client.delete(path, headers=user_a_headers).status_code == 202


def test_unknown_ids_are_404_for_everyone(client, user_a_headers, intruder):
    for headers in (user_a_headers, intruder):
        assert_error(client.get("/api/v1/conversations/nope", headers=headers), 404, "not_found")
        assert_error(client.get("/api/v1/stream/no-such-stream", headers=headers), 404, "not_found")


def test_api_keys(client, user_a_headers, user_b_headers, a_data):
    path = f"/api/v1/api_keys/{a_data['key_id']}"
    error = assert_error(client.delete(path, headers=user_b_headers), 403, "forbidden")
    assert error["message"] == "You do not have access to this API key"
    assert client.get("/api/v1/api_keys", headers=user_b_headers).get_json() == {"api_keys": [], "count": 0}
    assert client.get("/api/v1/conversations", headers={"Authorization": f"Bearer {a_data['key']}"}).status_code == 200
    listed = client.get("/api/v1/api_keys", headers=user_a_headers).get_json()["api_keys"]
    assert [key["id"] for key in listed] == [a_data["key_id"]] and listed[0]["revoked_at"] is None


def test_audit(client, user_a_headers, user_b_headers, a_data):
    events_b = client.get("/admin/audit", headers=user_b_headers).get_json()["events"]
    assert all(event["principal_id"] != f"key:{a_data['key_id']}" for event in events_b)
    assert not any(event["details"].get("key_id") == a_data["key_id"] for event in events_b)
    for user_id in (a_data["subject"], f"key:{a_data['key_id']}"):
        response = client.get("/admin/audit", query_string={"user_id": user_id}, headers=user_b_headers)
        assert_error(response, 403, "forbidden")
    events_a = client.get("/admin/audit", query_string={"user_id": a_data["subject"]}, headers=user_a_headers)
    assert events_a.status_code == 200 and events_a.get_json()["events"]
