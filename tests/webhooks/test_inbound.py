"""POST /webhooks/relay: Standard Webhooks verification, replay protection, audit, and action results."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from app.db.models import AuditEvent, Delivery, WebhookEvent
from app.extensions import database
from app.webhooks import _crypto
from tests.webhooks.conftest import execute, registered

SECRET = _crypto.new_secret()
OTHER = _crypto.new_secret()


@pytest.fixture
def inbound_app(make_app):
    return make_app(WEBHOOK_SIGNING_SECRET=f"{OTHER},{SECRET}", ALLOW_PRIVATE_WEBHOOK_TARGETS="true")


@pytest.fixture
def client(inbound_app):
    return inbound_app.test_client()


def signed(body: dict, secret: str = SECRET, msg_id: str | None = None, at: int | None = None) -> tuple[bytes, dict]:
    """A body and the headers the official package signs it with."""
    raw = json.dumps(body).encode()
    at = int(time.time()) if at is None else at
    msg_id = msg_id or f"msg_{time.time_ns()}"
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, UTC), raw.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}
    return raw, {**headers, "Content-Type": "application/json"}


def post(client, raw: bytes, headers: dict):
    return client.post("/webhooks/relay", data=raw, headers=headers)


def rejections() -> list[AuditEvent]:
    with database.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.type == "webhook_rejected")))


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_requests_the_official_package_signs_are_accepted_once(client):
    raw, headers = signed({"type": "ping", "data": {"n": 1}})
    response = post(client, raw, headers)
    assert response.status_code == 200
    assert response.get_json() == {"status": "accepted", "id": headers["webhook-id"]}
    replay = post(client, raw, headers)
    assert replay.status_code == 200 and replay.get_json() == {"status": "duplicate"}
    with database.session() as session:
        stored = list(session.scalars(select(WebhookEvent).where(WebhookEvent.webhook_id == headers["webhook-id"])))
    assert len(stored) == 1 and stored[0].type == "ping" and stored[0].body == {"type": "ping", "data": {"n": 1}}


def _tampered():
    raw, headers = signed({"type": "ping", "amount": 1})
    return raw.replace(b"1", b"9"), headers


def _missing(name):
    def make():
        raw, headers = signed({"type": "ping"})
        headers.pop(name)
        return raw, headers

    return make


ATTACKS = {
    "no headers at all": (lambda: (b'{"type":"ping"}', {"Content-Type": "application/json"}), "missing_signature"),
    "no webhook-signature": (_missing("webhook-signature"), "missing_signature"),
    "no webhook-id": (_missing("webhook-id"), "missing_signature"),
    "no webhook-timestamp": (_missing("webhook-timestamp"), "missing_signature"),
    "tampered body": (_tampered, "invalid_signature"),
    "another secret": (lambda: signed({"type": "ping"}, secret=_crypto.new_secret()), "invalid_signature"),
    "6 minutes old": (lambda: signed({"type": "ping"}, at=int(time.time()) - 360), "stale_timestamp"),
    "6 minutes ahead": (lambda: signed({"type": "ping"}, at=int(time.time()) + 360), "stale_timestamp"),
    "legacy signature while legacy is off": (
        lambda: (
            b'{"type":"ping"}',
            {
                "X-Webhook-Signature": hmac.new(
                    _crypto.secret_bytes(SECRET), b'{"type":"ping"}', hashlib.sha256
                ).hexdigest()
            },
        ),
        "missing_signature",
    ),  # fmt: skip
}


@pytest.mark.parametrize("attack", list(ATTACKS), ids=list(ATTACKS))
def test_attacks_are_refused_audited_and_counted(client, attack):
    make, code = ATTACKS[attack]
    raw, headers = make()
    severity = {"missing_signature": "low", "invalid_signature": "high", "stale_timestamp": "medium"}[code]
    before = counter("relay_webhook_deliveries_total", outcome="inbound_rejected")
    violations = counter("security_violations_total", type="webhook_rejected", severity=severity)
    response = post(client, raw, headers)
    assert response.status_code == 401, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code and "WWW-Authenticate" in response.headers
    assert counter("relay_webhook_deliveries_total", outcome="inbound_rejected") == before + 1
    assert counter("security_violations_total", type="webhook_rejected", severity=severity) == violations + 1
    [event] = rejections()
    assert event.ip == "127.0.0.1" and event.details["code"] == code and event.details["reason"]
    text = json.dumps(event.details)
    assert "ping" not in text and "v1," not in text and "whsec_" not in text  # never the body or a signature
    with database.session() as session:
        assert session.scalar(select(WebhookEvent.id)) is None  # nothing stored


def test_a_replayed_id_with_a_fresh_signature_is_still_a_duplicate(client):
    raw, headers = signed({"type": "ping"}, msg_id="msg_replayed")
    assert post(client, raw, headers).get_json()["status"] == "accepted"
    raw2, headers2 = signed({"type": "ping", "again": True}, msg_id="msg_replayed", at=int(time.time()) - 5)
    assert post(client, raw2, headers2).get_json() == {"status": "duplicate"}


def test_the_dedup_key_outlives_the_tolerance_window(client, inbound_app, redis_client):
    raw, headers = signed({"type": "ping"})
    post(client, raw, headers)
    key = (
        inbound_app.config["REDIS_KEY_PREFIX"]
        + "webhooks:seen:"
        + hashlib.sha256(headers["webhook-id"].encode()).hexdigest()
    )
    assert redis_client.ttl(key) >= 2 * inbound_app.config["WEBHOOK_TOLERANCE_SECONDS"]


def test_without_a_configured_secret_nothing_is_accepted(make_app):
    client = make_app(WEBHOOK_SIGNING_SECRET="").test_client()
    raw, headers = signed({"type": "ping"})
    response = post(client, raw, headers)
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "webhook_not_configured"
    assert int(response.headers["Retry-After"]) >= 1


def test_legacy_signatures_when_enabled(make_app):
    client = make_app(WEBHOOK_SIGNING_SECRET=SECRET, WEBHOOK_ACCEPT_LEGACY="true").test_client()
    raw = b'{"type":"legacy.ping"}'
    digest = hmac.new(_crypto.secret_bytes(SECRET), raw, hashlib.sha256).hexdigest()
    response = post(client, raw, {"X-Webhook-Signature": digest})
    assert response.status_code == 200 and response.get_json()["status"] == "accepted"
    assert post(client, raw, {"X-Webhook-Signature": "0" * 64}).status_code == 401


def test_a_signed_body_that_is_not_a_json_object_is_refused_and_not_remembered(client):
    raw, headers = b"[1, 2]", signed({})[1]
    headers["webhook-signature"] = Webhook(SECRET).sign(
        headers["webhook-id"], datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC), "[1, 2]"
    )
    assert post(client, raw, headers).status_code == 422


def test_an_action_result_attaches_to_the_named_delivery_of_its_tenant(client, user_a_headers, receiver):
    registered(client, user_a_headers, "notify", receiver.url)
    delivery_id = execute(client, user_a_headers, "notify").get_json()["delivery_id"]
    raw, headers = signed({"type": "action.result", "data": {"delivery_id": delivery_id, "result": {"sent": 3}}})
    assert post(client, raw, headers).get_json()["status"] == "accepted"
    body = client.get(f"/actions/deliveries/{delivery_id}", headers=user_a_headers).get_json()
    assert body["result"] == {"sent": 3} and body["result_at"]
    # Naming another tenant does not attach; an unknown delivery is stored only.
    raw, headers = signed(
        {"type": "action.result", "data": {"delivery_id": delivery_id, "tenant_id": "other", "result": {"x": 1}}}
    )
    assert post(client, raw, headers).status_code == 200
    assert client.get(f"/actions/deliveries/{delivery_id}", headers=user_a_headers).get_json()["result"] == {"sent": 3}
    with database.session() as session:
        events = list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))
        tenant = session.get(Delivery, delivery_id).tenant_id
    assert [(e.tenant_id, e.delivery_id) for e in events] == [(tenant, delivery_id), (None, None)]
