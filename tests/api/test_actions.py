"""The action registry and deliveries through the API: scopes, tenants, idempotency, listing, limits."""

from __future__ import annotations

import pytest

from tests.auth.helpers import assert_error
from tests.support import at_once
from tests.webhooks.conftest import execute, register, registered

URL = "http://127.0.0.1:9/hook"  # never contacted here: no worker runs in these tests


@pytest.fixture
def app(make_app):
    return make_app(ALLOW_PRIVATE_WEBHOOK_TARGETS="true")


def test_register_list_rotate_delete(client, user_a_headers):
    created = register(client, user_a_headers, "send-invoice", URL, "Sends an invoice")
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    body = created.get_json()
    assert body["secret"].startswith("whsec_") and body["name"] == "send-invoice" and body["url"] == URL
    listing = client.get("/api/v1/actions", headers=user_a_headers).get_json()
    assert listing["count"] == 1 and "secret" not in listing["actions"][0]
    assert listing["actions"][0]["description"] == "Sends an invoice"
    assert body["secret"] not in client.get("/api/v1/actions", headers=user_a_headers).get_data(as_text=True)
    duplicate = register(client, user_a_headers, "send-invoice", URL)
    assert_error(duplicate, 409, "action_exists")
    rotated = client.post("/api/v1/actions/send-invoice/rotate_secret", headers=user_a_headers).get_json()
    assert rotated["secret"] != body["secret"] and rotated["previous_secret_expires_at"]
    assert client.delete("/api/v1/actions/send-invoice", headers=user_a_headers).status_code == 204
    assert client.get("/api/v1/actions", headers=user_a_headers).get_json()["count"] == 0
    assert_error(client.delete("/api/v1/actions/send-invoice", headers=user_a_headers), 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Has Caps", "url": URL},
        {"name": "-leading", "url": URL},
        {"name": "x" * 65, "url": URL},
        {"name": "ok", "url": URL, "extra": 1},
        {"name": "ok"},
        {"name": "ok", "url": URL, "description": "bad\x00byte"},
        {"name": "ok\n", "url": URL},
    ],
)
def test_bad_registrations_are_422(client, user_a_headers, body):
    response = client.post("/api/v1/actions", json=body, headers=user_a_headers)
    assert_error(response, 422, "validation_error")


def test_another_tenants_actions_and_deliveries_are_404(client, user_a_headers, user_b_headers):
    registered(client, user_a_headers, "notify", URL)
    delivery_id = execute(client, user_a_headers, "notify").get_json()["delivery_id"]
    assert client.get("/api/v1/actions", headers=user_b_headers).get_json()["count"] == 0
    assert_error(client.delete("/api/v1/actions/notify", headers=user_b_headers), 404, "not_found")
    assert_error(client.post("/api/v1/actions/notify/rotate_secret", headers=user_b_headers), 404, "not_found")
    assert_error(execute(client, user_b_headers, "notify"), 404, "not_found")
    assert_error(client.get(f"/actions/deliveries/{delivery_id}", headers=user_b_headers), 404, "not_found")
    assert_error(client.post(f"/actions/deliveries/{delivery_id}/redeliver", headers=user_b_headers), 404, "not_found")
    assert client.get("/actions/deliveries", headers=user_b_headers).get_json()["count"] == 0
    # B may use the same name in its own tenant.
    assert register(client, user_b_headers, "notify", URL).status_code == 201


def test_members_execute_but_do_not_administer(client, user_a_headers, member_headers):
    registered(client, user_a_headers, "notify", URL)
    assert execute(client, member_headers, "notify").status_code == 202
    assert_error(register(client, member_headers, "mine", URL), 403, "insufficient_scope")
    assert_error(client.get("/api/v1/actions", headers=member_headers), 403, "insufficient_scope")


def test_anonymous_and_chat_keys_cannot_execute(client, user_a_headers, anon_headers, api_key_headers):
    registered(client, user_a_headers, "notify", URL)
    for headers in (anon_headers, api_key_headers):
        assert_error(execute(client, headers, "notify"), 403, "insufficient_scope")
        assert_error(client.get("/actions/deliveries", headers=headers), 403, "insufficient_scope")


@pytest.mark.parametrize(
    "body",
    [
        {"action": "notify", "payload": [1, 2]},
        {"action": "notify", "payload": "text"},
        {"action": "notify"},
        {"action": "notify", "payload": {}, "idempotency_key": ""},
        {"action": "notify", "payload": {}, "idempotency_key": "x" * 201},
        {"action": "notify", "payload": {}, "other": True},
        {"action": "notify\n", "payload": {}},
        {"action": "notify", "payload": {}, "idempotency_key": "k\n"},
    ],
)
def test_bad_executions_are_422(client, user_a_headers, body):
    registered(client, user_a_headers, "notify", URL)
    assert_error(client.post("/actions/execute", json=body, headers=user_a_headers), 422, "validation_error")


def test_an_unknown_action_is_404(client, user_a_headers):
    assert_error(execute(client, user_a_headers, "nothing-here"), 404, "not_found")


def test_a_repeated_idempotency_key_returns_the_same_delivery(client, user_a_headers):
    registered(client, user_a_headers, "notify", URL)
    first = execute(client, user_a_headers, "notify", {"a": 1}, idempotency_key="order-42")
    again = execute(client, user_a_headers, "notify", {"a": 1}, idempotency_key="order-42")
    assert first.status_code == again.status_code == 202
    assert first.get_json()["delivery_id"] == again.get_json()["delivery_id"]
    assert_error(execute(client, user_a_headers, "notify", {"a": 2}, idempotency_key="order-42"), 409,
                 "idempotency_conflict")  # fmt: skip
    assert client.get("/actions/deliveries", headers=user_a_headers).get_json()["count"] == 1


def test_racing_requests_with_one_idempotency_key_make_one_delivery(make_app, db_url, user_a_headers):
    app = make_app(ALLOW_PRIVATE_WEBHOOK_TARGETS="true", DATABASE_URL=db_url)
    client = app.test_client()
    registered(client, user_a_headers, "notify", URL)

    def send() -> str:
        response = execute(app.test_client(), user_a_headers, "notify", {"a": 1}, idempotency_key="race")
        assert response.status_code == 202, response.get_json()
        return response.get_json()["delivery_id"]

    ids = at_once(send, 8)
    assert len(ids) == 8 and len(set(ids)) == 1


def test_listing_is_newest_first_with_filters_and_a_cursor(client, user_a_headers):
    registered(client, user_a_headers, "one", URL)
    registered(client, user_a_headers, "two", URL)
    made = [execute(client, user_a_headers, "one" if n % 2 else "two", {"n": n}).get_json()["delivery_id"]
            for n in range(5)]  # fmt: skip
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/actions/deliveries", query_string=query, headers=user_a_headers).get_json()
        seen += [d["delivery_id"] for d in page["deliveries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made[::-1]
    only = client.get("/actions/deliveries?action=one&status=queued", headers=user_a_headers).get_json()
    assert [d["delivery_id"] for d in only["deliveries"]] == [made[3], made[1]]
    assert client.get("/actions/deliveries?status=dead", headers=user_a_headers).get_json()["count"] == 0


@pytest.mark.parametrize(
    "query",
    ["status=lost", "cursor=not-a-cursor", "limit=0", "limit=101", "unknown=1", "action=abc%0A", "limit=%D9%A3"],
)
def test_bad_listing_queries_are_422(client, user_a_headers, query):
    assert_error(client.get(f"/actions/deliveries?{query}", headers=user_a_headers), 422, "validation_error")


def test_unknown_query_parameters_elsewhere_are_422(client, user_a_headers):
    assert_error(client.get("/api/v1/actions?x=1", headers=user_a_headers), 422, "validation_error")


def test_redeliver_only_failed_or_dead(client, user_a_headers):
    registered(client, user_a_headers, "notify", URL)
    delivery_id = execute(client, user_a_headers, "notify").get_json()["delivery_id"]
    assert_error(client.post(f"/actions/deliveries/{delivery_id}/redeliver", headers=user_a_headers), 409,
                 "not_redeliverable")  # fmt: skip
    assert_error(client.get("/actions/deliveries/not-an-id", headers=user_a_headers), 404, "not_found")


def test_actions_execute_is_limited_per_tenant(make_app, user_a_headers, user_b_headers):
    client = make_app(ALLOW_PRIVATE_WEBHOOK_TARGETS="true", LIMIT_ACTIONS_EXECUTE="2/60").test_client()
    registered(client, user_a_headers, "notify", URL)
    registered(client, user_b_headers, "notify", URL)
    for _ in range(2):
        assert execute(client, user_a_headers, "notify").status_code == 202
    limited = execute(client, user_a_headers, "notify")
    error = assert_error(limited, 429, "rate_limited")
    assert error["details"]["limit"] == "actions_execute" and int(limited.headers["Retry-After"]) >= 1
    assert execute(client, user_b_headers, "notify").status_code == 202
