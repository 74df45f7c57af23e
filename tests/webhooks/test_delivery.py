"""One delivery attempt, in this process: signed as Standard Webhooks, to checked addresses only, bounded in time.

The attempt is `app.webhooks.deliveries.attempt`, the body of the Celery task; here it runs in the
test's process against a receiver on 127.0.0.1 (tests/webhooks/test_worker.py runs the real worker).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from app.db.models import Action, Delivery, utcnow
from app.extensions import database
from app.webhooks import deliveries
from tests.webhooks.conftest import delivery, event_body, execute, register, registered

FAST = {"WEBHOOK_RETRY_SCHEDULE": "1,2", "WEBHOOK_RETRY_JITTER": "0", "WEBHOOK_TIMEOUT_SECONDS": "1",
        "WEBHOOK_LEASE_SECONDS": "6"}  # fmt: skip


@pytest.fixture
def local_app(make_app):
    """Private targets allowed: the receiver is on 127.0.0.1."""
    return make_app(ALLOW_PRIVATE_WEBHOOK_TARGETS="true", **FAST)


@pytest.fixture
def client(local_app):
    return local_app.test_client()


def attempt(app, delivery_id: str, due: bool = True) -> str | None:
    """Run the worker's attempt now (first making a scheduled retry due, as time would)."""
    with app.app_context():
        if due:
            with database.session() as session:
                session.execute(update(Delivery).where(Delivery.id == delivery_id).values(next_attempt_at=utcnow()))
        return deliveries.attempt(delivery_id, app.config)


def test_a_delivery_verifies_with_the_official_package(local_app, client, user_a_headers, receiver):
    secret = registered(client, user_a_headers, "notify", receiver.url)
    queued = execute(client, user_a_headers, "notify", {"to": "ops", "n": 2})
    assert queued.status_code == 202 and queued.get_json()["status"] == "queued"
    delivery_id = queued.get_json()["delivery_id"]
    assert attempt(local_app, delivery_id) == "succeeded"
    [request] = receiver.requests
    assert Webhook(secret).verify(request.body, request.headers) is not None
    body = event_body(request)
    assert body["type"] == "action.execute" and body["timestamp"].endswith("Z")
    assert body["data"] == {"action": "notify", "payload": {"to": "ops", "n": 2}, "delivery_id": delivery_id}
    assert request.headers["webhook-id"] == f"msg_{delivery_id}"
    shown = delivery(client, user_a_headers, delivery_id)
    assert shown["status"] == "succeeded" and shown["attempt_count"] == 1 and shown["completed_at"]
    [first] = shown["attempts"]
    assert first["number"] == 1 and first["status_code"] == 200 and first["error"] is None
    assert first["duration_ms"] >= 0 and first["at"] and first["response_excerpt"] == "ok"
    assert attempt(local_app, delivery_id) is None  # a second wake-up finds nothing to do
    assert len(receiver.requests) == 1


def test_during_rotation_both_secrets_verify_and_after_it_only_the_new(local_app, client, user_a_headers, receiver):
    old = registered(client, user_a_headers, "notify", receiver.url)
    rotated = client.post("/api/v1/actions/notify/rotate_secret", headers=user_a_headers)
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    new = rotated.get_json()["secret"]
    assert new != old and rotated.get_json()["previous_secret_expires_at"]
    assert attempt(local_app, execute(client, user_a_headers, "notify").get_json()["delivery_id"]) == "succeeded"
    request = receiver.requests[-1]
    assert len(request.headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(request.body, request.headers) is not None
    with database.session() as session:  # the rotation window has passed
        session.execute(update(Action).values(previous_expires_at=utcnow() - timedelta(seconds=1)))
    assert attempt(local_app, execute(client, user_a_headers, "notify").get_json()["delivery_id"]) == "succeeded"
    request = receiver.requests[-1]
    assert len(request.headers["webhook-signature"].split()) == 1
    assert Webhook(new).verify(request.body, request.headers) is not None
    with pytest.raises(Exception, match="signature"):
        Webhook(old).verify(request.body, request.headers)


def test_failures_retry_on_the_schedule_then_dead(local_app, client, user_a_headers, receiver):
    receiver.script = lambda request, n: (503, {}, b"down " * 1000, 0.0)
    registered(client, user_a_headers, "notify", receiver.url)
    delivery_id = execute(client, user_a_headers, "notify").get_json()["delivery_id"]
    assert attempt(local_app, delivery_id) == "failed"
    shown = delivery(client, user_a_headers, delivery_id)
    assert shown["status"] == "failed" and shown["last_error"] == "HTTP 503" and shown["next_attempt_at"]
    assert len(shown["attempts"][0]["response_excerpt"]) == local_app.config["WEBHOOK_RESPONSE_MAX_BYTES"]
    assert attempt(local_app, delivery_id, due=False) is None  # not due yet: the schedule says 1 s
    assert attempt(local_app, delivery_id) == "failed"
    assert attempt(local_app, delivery_id) == "dead"  # a schedule of 2 retries: 3 attempts
    shown = delivery(client, user_a_headers, delivery_id)
    assert shown["status"] == "dead" and shown["next_attempt_at"] is None
    assert [a["status_code"] for a in shown["attempts"]] == [503, 503, 503] and len(receiver.requests) == 3
    # Redelivery (admin) starts a fresh schedule; a succeeded delivery cannot be redelivered.
    receiver.script = lambda request, n: (204, {}, b"", 0.0)
    again = client.post(f"/actions/deliveries/{delivery_id}/redeliver", headers=user_a_headers)
    assert again.status_code == 202 and again.get_json() == {"delivery_id": delivery_id, "status": "queued"}
    assert attempt(local_app, delivery_id) == "succeeded"
    refused = client.post(f"/actions/deliveries/{delivery_id}/redeliver", headers=user_a_headers)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "not_redeliverable"


def test_a_redirect_is_a_failure_and_is_never_followed(local_app, client, user_a_headers, receiver):
    target = receiver.url.replace("/hook", "/internal")
    receiver.script = lambda request, n: (302, {"Location": target}, b"", 0.0)
    registered(client, user_a_headers, "notify", receiver.url)
    delivery_id = execute(client, user_a_headers, "notify").get_json()["delivery_id"]
    assert attempt(local_app, delivery_id) == "failed"
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert delivery(client, user_a_headers, delivery_id)["attempts"][0]["status_code"] == 302


def test_a_name_public_at_registration_and_private_at_delivery_is_never_connected(
    make_app, user_a_headers, receiver, names
):
    app = make_app(**FAST)  # production-like: private targets refused
    client = app.test_client()
    port = receiver.url.split(":")[2].split("/")[0]
    names["rebind.example.test"] = ["93.184.216.34"]  # public: only resolved, nothing is sent to it
    registered(client, user_a_headers, "notify", f"http://rebind.example.test:{port}/hook")
    names["rebind.example.test"] = ["127.0.0.1"]  # DNS now points at the receiver on loopback
    delivery_id = execute(client, user_a_headers, "notify").get_json()["delivery_id"]
    assert attempt(app, delivery_id) == "failed"
    assert receiver.requests == []
    error = delivery(client, user_a_headers, delivery_id)["attempts"][0]["error"]
    assert error.startswith("blocked") and "loopback" in error


def test_a_name_resolving_private_is_refused_at_registration(make_app, user_a_headers, names):
    client = make_app().test_client()
    names["intranet.example.test"] = ["192.168.0.10"]
    assert register(client, user_a_headers, "notify", "http://intranet.example.test/").status_code == 422


def test_a_slow_receiver_is_cut_at_the_deadline(local_app, client, user_a_headers, receiver):
    receiver.script = lambda request, n: (200, {}, b"late", 3.0)
    registered(client, user_a_headers, "notify", receiver.url)
    delivery_id = execute(client, user_a_headers, "notify").get_json()["delivery_id"]
    started = time.monotonic()
    assert attempt(local_app, delivery_id) == "failed"
    assert time.monotonic() - started < 2.5
    assert delivery(client, user_a_headers, delivery_id)["attempts"][0]["error"] == "timeout"


def test_concurrent_wake_ups_make_one_attempt(local_app, client, user_a_headers, receiver):
    receiver.script = lambda request, n: (200, {}, b"ok", 0.3)
    registered(client, user_a_headers, "notify", receiver.url)
    delivery_id = execute(client, user_a_headers, "notify").get_json()["delivery_id"]
    outcomes: list[str | None] = []
    threads = [threading.Thread(target=lambda: outcomes.append(attempt(local_app, delivery_id, due=False)))
               for _ in range(8)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("succeeded") == 1 and outcomes.count(None) == 7 and len(receiver.requests) == 1


def test_a_dead_workers_lease_is_taken_over_after_it_runs_out(local_app, client, user_a_headers, receiver):
    registered(client, user_a_headers, "notify", receiver.url)
    delivery_id = execute(client, user_a_headers, "notify").get_json()["delivery_id"]
    with database.session() as session:  # as a worker leaves it when killed mid-attempt
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(
                status="delivering", attempt_count=1, lease_token="dead", lease_until=utcnow() + timedelta(seconds=5)
            )
        )
    assert attempt(local_app, delivery_id, due=False) is None  # the lease still holds
    with local_app.app_context():
        assert deliveries.overdue_ids(local_app.config) == []
    with database.session() as session:
        session.execute(update(Delivery).values(lease_until=utcnow() - timedelta(seconds=1)))
    with local_app.app_context():
        assert deliveries.overdue_ids(local_app.config) == [delivery_id]  # the sweep wakes it
    assert attempt(local_app, delivery_id, due=False) == "succeeded"
    shown = delivery(client, user_a_headers, delivery_id)
    assert [(a["number"], a["error"]) for a in shown["attempts"]] == [(1, "worker_lost"), (2, None)]


def test_a_deleted_action_ends_its_pending_deliveries_dead(local_app, client, user_a_headers, receiver):
    registered(client, user_a_headers, "notify", receiver.url)
    delivery_id = execute(client, user_a_headers, "notify").get_json()["delivery_id"]
    assert client.delete("/api/v1/actions/notify", headers=user_a_headers).status_code == 204
    assert attempt(local_app, delivery_id) == "dead"
    shown = delivery(client, user_a_headers, delivery_id)
    assert shown["action"] == "notify" and shown["last_error"] == "action_deleted" and receiver.requests == []


def test_the_stored_secret_cannot_sign_without_secret_key(local_app, client, user_a_headers, receiver):
    secret = registered(client, user_a_headers, "notify", receiver.url)
    with database.session() as session:
        row = session.scalar(select(Action))
        dump = json.dumps({c.name: str(getattr(row, c.name)) for c in Action.__table__.columns})
    assert secret not in dump and secret.removeprefix("whsec_") not in dump
