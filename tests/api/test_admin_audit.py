"""GET /admin/audit: the tenant's events, newest first, with filters and a cursor. SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from app.audit import record_event
from tests.auth.helpers import assert_error
from tests.conftest import bearer


@pytest.fixture
def make_app(make_app, key_prefix):
    prefix = f"{key_prefix}{secrets.token_hex(4)}:"
    return lambda **overrides: make_app(**{"REDIS_KEY_PREFIX": prefix, **overrides})


@pytest.fixture
def app(make_app, db_url):
    return make_app(DATABASE_URL=db_url)


@pytest.fixture
def tenant(client, user_a_headers) -> str:
    response = client.post("/api/v1/api_keys", json={"name": "probe", "scopes": ["chat"]}, headers=user_a_headers)
    return response.get_json()["tenant_id"]


def audit(client, headers, **params):
    response = client.get("/admin/audit", query_string=params, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_newest_first_and_paged_by_cursor(app, client, user_a_headers, tenant):
    with app.test_request_context():
        for n in range(7):
            record_event("webhook_rejected", None, {"n": n}, tenant_id=tenant)
    seen, cursor = [], None
    while True:
        page = audit(client, user_a_headers, type="webhook_rejected", limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [event["details"]["n"] for event in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [6, 5, 4, 3, 2, 1, 0]


def test_filters(app, client, user_a_headers, tenant):
    page = audit(client, user_a_headers)
    assert {event["type"] for event in page["events"]} >= {"user_provisioned", "api_key_created"}
    assert audit(client, user_a_headers, type="api_key_created")["count"] == 1
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert audit(client, user_a_headers, since=future)["count"] == 0
    assert audit(client, user_a_headers, until=past)["count"] == 0
    assert audit(client, user_a_headers, since=past, until=future)["count"] == page["count"]
    naive_past = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert audit(client, user_a_headers, since=naive_past)["count"] == page["count"]


def test_user_id_filter_stays_inside_the_tenant(client, user_a_headers, user_b_headers, tenant):
    key = client.post("/api/v1/api_keys", json={"name": "k", "scopes": ["admin"]}, headers=user_a_headers).get_json()
    client.get("/api/v1/api_keys", headers=bearer(key["key"]))
    client.delete(f"/api/v1/api_keys/{key['id']}", headers=bearer(key["key"]))
    by_key = audit(client, user_a_headers, user_id=f"key:{key['id']}")
    assert [event["type"] for event in by_key["events"]] == ["api_key_revoked"]
    client.get("/api/v1/conversations", headers=user_b_headers)
    assert_error(client.get("/admin/audit?user_id=key:nope", headers=user_a_headers), 403, "forbidden")


def test_other_tenants_events_never_show(app, client, user_a_headers, user_b_headers, tenant):
    with app.test_request_context():
        record_event("forbidden", None, {"marker": "tenant-a-only"}, tenant_id=tenant)
        record_event("forbidden", None, {"marker": "no-tenant"})
    events_b = audit(client, user_b_headers)["events"]
    assert not [event for event in events_b if event["details"].get("marker")]
    assert [e["details"]["marker"] for e in audit(client, user_a_headers, type="forbidden")["events"]] == [
        "tenant-a-only"
    ]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=201", "limit=x", "cursor=abc", "since=yesterday", "type=Bad Type", "surprise=1", "user_id="],
)
def test_invalid_queries_are_422(client, user_a_headers, query):
    assert_error(client.get(f"/admin/audit?{query}", headers=user_a_headers), 422, "validation_error")


def test_event_shape(client, user_a_headers, tenant):
    event = audit(client, user_a_headers, limit=1)["events"][0]
    assert set(event) == {"id", "type", "created_at", "principal_id", "ip", "request_id", "endpoint", "details"}
    assert event["created_at"].endswith("Z") and event["ip"] == "127.0.0.1"
