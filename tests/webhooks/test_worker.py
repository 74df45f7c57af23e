"""The real webhooks worker (Celery, gevent pool), killed with SIGKILL mid-delivery and restarted:
no delivery is lost, none is sent twice at the same time, retries follow the (shortened) schedule."""

from __future__ import annotations

import secrets
import signal
import time

import pytest
import redis
from sqlalchemy import select

from app.db.models import Delivery, DeliveryAttempt
from app.extensions import database
from tests.conftest import Stack, stack_env
from tests.support import wait_until
from tests.webhooks.conftest import execute, registered

SETTINGS = {
    "ALLOW_PRIVATE_WEBHOOK_TARGETS": "true",  # the receiver is on 127.0.0.1
    "WEBHOOK_RETRY_SCHEDULE": "1,1,1",
    "WEBHOOK_RETRY_JITTER": "0.2",
    "WEBHOOK_TIMEOUT_SECONDS": "2",
    "WEBHOOK_LEASE_SECONDS": "7",
    "WEBHOOK_SWEEP_SECONDS": "1",
}
FLAKY, NEVER = 6, 2


@pytest.fixture
def webhook_stack(tmp_path, base_env, redis_url):
    prefix = f"relaywh-{secrets.token_hex(4)}:"
    env = stack_env(base_env, "http://127.0.0.1:9/v1", tmp_path, REDIS_KEY_PREFIX=prefix, **SETTINGS)
    stack = Stack(env, tmp_path)
    yield stack
    stack.stop()
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)


def _script(request, n):
    if request.path == "/never":
        return 500, {}, b"no", 0.1
    if n == 1:
        return 500, {}, b"slow failure", 1.5  # in flight when the worker is killed
    return (500, {}, b"not yet", 0.1) if n < 3 else (200, {}, b"done", 0.1)


def _states(ids: list[str]) -> dict[str, str]:
    with database.session() as session:
        return dict(session.execute(select(Delivery.id, Delivery.status).where(Delivery.id.in_(ids))).all())


def test_killed_worker_loses_nothing_and_never_overlaps(make_app, webhook_stack, user_a_headers, receiver):
    env = webhook_stack.env
    app = make_app(DATABASE_URL=env["DATABASE_URL"], REDIS_KEY_PREFIX=env["REDIS_KEY_PREFIX"], **SETTINGS)
    client = app.test_client()
    receiver.script = _script
    registered(client, user_a_headers, "flaky", receiver.url.replace("/hook", "/flaky"))
    registered(client, user_a_headers, "never", receiver.url.replace("/hook", "/never"))
    flaky = [execute(client, user_a_headers, "flaky", {"n": n}).get_json()["delivery_id"] for n in range(FLAKY)]
    never = [execute(client, user_a_headers, "never", {"n": n}).get_json()["delivery_id"] for n in range(NEVER)]

    worker = webhook_stack.start_worker("webhooks-1", "gevent", "webhooks", 50)
    wait_until(lambda: receiver.in_flight >= FLAKY, 30, "first attempts in flight", worker)
    worker.signal(signal.SIGKILL)
    worker.popen.wait(10)
    killed_at = time.monotonic()
    webhook_stack.start_worker("webhooks-2", "gevent", "webhooks", 50)

    def finished() -> bool:
        states = _states(flaky + never)
        return all(states[i] == "succeeded" for i in flaky) and all(states[i] == "dead" for i in never)

    wait_until(finished, 90, "every delivery to end", webhook_stack.processes["webhooks-2"])

    # None sent twice at the same time: per webhook-id, each request began after the previous one ended.
    groups = receiver.by_id()
    assert set(groups) == {f"msg_{i}" for i in flaky + never}
    for webhook_id, requests in groups.items():
        spans = sorted((r.started, r.ended) for r in requests)
        assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False)), webhook_id
    # The attempts the kill cut short were taken over after their lease, and recorded as lost.
    with database.session() as session:
        attempts = list(session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)))
    lost = [a for a in attempts if a.error == "worker_lost"]
    assert len(lost) >= FLAKY
    retaken = [r.started for i in flaky for r in groups[f"msg_{i}"] if r.started > killed_at]
    assert min(retaken) - killed_at >= 7 - 1.5 - 0.5  # not before the lease ran out
    # The never-succeeding deliveries made 1 + 3 attempts that reached the receiver (plus any lost), then dead.
    for delivery_id in never:
        mine = [a for a in attempts if a.delivery_id == delivery_id and a.error != "worker_lost"]
        assert [a.status_code for a in mine] == [500, 500, 500, 500]
    for delivery_id in flaky:
        mine = [a.status_code for a in attempts if a.delivery_id == delivery_id and a.error != "worker_lost"]
        assert mine[-1] == 200 and len(groups[f"msg_{delivery_id}"]) >= 3
