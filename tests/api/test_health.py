"""GET /health/ready: cheap to call often (one worker ping per window per process), and what
it says about the local model."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
import redis

from workers.liveness import Heartbeat


class CountingPing:
    """Wraps the app's real Celery control ping (a broadcast on the real broker) and counts calls."""

    def __init__(self, app) -> None:
        control = app.extensions["celery"].control
        self.real = control.ping
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        control.ping = self

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return self.real(*args, **kwargs)
        finally:
            with self._lock:
                self.in_flight -= 1


@pytest.fixture
def prefix(key_prefix) -> str:
    """A key prefix of the test's own: no worker and no local-model record under it."""
    return f"{key_prefix}health-{secrets.token_hex(3)}:"


def ready_all(app, count: int) -> list[dict]:
    """`count` concurrent GET /health/ready, released together."""
    barrier = threading.Barrier(count)
    bodies: list[dict] = [{}] * count

    def call(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.get("/health/ready")
        assert response.status_code == 200
        bodies[i] = response.get_json()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return bodies


def test_concurrent_calls_share_one_ping_per_window(make_app, prefix):
    app = make_app(REDIS_KEY_PREFIX=prefix, HEALTH_WORKER_CACHE_SECONDS="3")
    ping = CountingPing(app)

    started = time.monotonic()
    bodies = ready_all(app, 40)
    answered = time.monotonic()  # the shared ping's answer is cached from before this
    assert ping.calls == 1 and ping.most_in_flight == 1
    assert all(body["checks"] == {"redis": "ok", "database": "ok", "workers": "none", "local_model": "none"}
               for body in bodies)  # fmt: skip
    # The same window: answered from the cache, no ping.
    ready_all(app, 10)
    assert ping.calls == 1
    assert time.monotonic() - started < 3, "the machine was too slow to stay inside one window"

    time.sleep(max(0.0, 3.1 - (time.monotonic() - answered)))
    ready_all(app, 20)
    assert ping.calls == 2  # a new window: one new ping, shared again


def test_local_model_reflects_live_workers_records(make_app, prefix, redis_url):
    app = make_app(REDIS_KEY_PREFIX=prefix, HEALTH_WORKER_CACHE_SECONDS="0")
    client = app.test_client()
    store = redis.Redis.from_url(redis_url, decode_responses=True)

    def local_model() -> str:
        return client.get("/health/ready").get_json()["checks"]["local_model"]

    assert local_model() == "none"  # no local worker ever reported
    good = Heartbeat(store, "host:1", f"{prefix}worker:host:1:alive", prefix, ttl_s=3.0)
    good.report_local_model("ok")
    assert local_model() == "ok"
    bad = Heartbeat(store, "host:2", f"{prefix}worker:host:2:alive", prefix, ttl_s=3.0)
    bad.report_local_model("failed")
    assert local_model() == "failed"  # one live worker that cannot run the model is reported
    good.beat()
    assert local_model() == "failed"  # and another one's renewal does not hide it
    # Neither renews any more (their processes died): their records expire with them.
    time.sleep(3.2)
    assert local_model() == "none"


def test_a_failed_local_model_does_not_fail_readiness(make_app, prefix, redis_url):
    app = make_app(REDIS_KEY_PREFIX=prefix, HEALTH_WORKER_CACHE_SECONDS="0")
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    Heartbeat(store, "host:3", f"{prefix}worker:host:3:alive", prefix, ttl_s=5.0).report_local_model("failed")
    response = app.test_client().get("/health/ready")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready" and response.get_json()["checks"]["local_model"] == "failed"
