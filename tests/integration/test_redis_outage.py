"""Redis goes away: requests get 503 with Retry-After, open streams end with a terminal
event, and everything works again when Redis returns, without a restart.

A Relay of this module's own on a private redis-server (never the machine's
shared one), which the tests stop and start.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import Stack, stack_env
from tests.support import RedisServer, collect, fake_server, iter_sse, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow_provider(tmp_path_factory):
    with fake_server("openai", tmp_path_factory.mktemp("outage-openai"), token_ms=40) as base:
        yield base


@pytest.fixture(scope="module")
def relay(tmp_path_factory, base_env, private_redis, slow_provider):
    log_dir = tmp_path_factory.mktemp("outage")
    env = stack_env(
        base_env,
        slow_provider + "/v1",
        log_dir,
        REDIS_URL=private_redis.url,
        STREAM_STALL_SECONDS="4",
        QUEUE_TIMEOUT_SECONDS="4",
        HEARTBEAT_SECONDS="1",
    )
    running = Stack(env, log_dir)
    try:
        running.start_web(port=int(env["PORT"]))
        running.start_worker("worker", "gevent", "generate", 50)
        yield running
    finally:
        running.stop()


def _outage_events(relay) -> list[tuple[str, str]]:
    """Audit rows of dependency outages, read from the Relay's own database."""
    engine = create_engine(relay.env["DATABASE_URL"])
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT type, details FROM audit_events WHERE type = 'dependency_unavailable'")
        ).all()
    engine.dispose()
    return [(row[0], row[1] if isinstance(row[1], str) else json.dumps(row[1])) for row in rows]


def stream_works(relay) -> bool:
    token = relay.anon_token()
    events = collect(relay.post_stream(token, {"message": "echo:ok", "model": "gpt-4o-mini"}, timeout=20))
    return events[-1].event == "done"


def test_requests_get_503_while_redis_is_down_and_recover_by_themselves(relay, private_redis):
    token = relay.anon_token()
    private_redis.stop()
    try:
        response = relay.post_stream(token, {"message": "echo:hello", "model": "gpt-4o-mini"})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "dependency_unavailable"
        assert int(response.headers["Retry-After"]) >= 1
        audited = _outage_events(relay)
        assert audited and audited[0] == ("dependency_unavailable", '{"dependency": "redis"}')
        ready = requests.get(f"{relay.base_url}/health/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "failed"
        assert requests.get(f"{relay.base_url}/health", timeout=5).status_code == 200
    finally:
        private_redis.start()
    wait_until(lambda: stream_works(relay), 30, "streams to work again after Redis returned")
    assert requests.get(f"{relay.base_url}/health/ready", timeout=10).status_code == 200


def test_open_streams_end_with_a_terminal_event_when_redis_restarts(relay, private_redis):
    token = relay.anon_token()
    responses = [
        relay.post_stream(token, {"message": "echo:" + "x" * 300, "model": "gpt-4o-mini"}, timeout=60) for _ in range(3)
    ]
    readers = [iter_sse(response) for response in responses]
    for reader in readers:
        assert next(reader).event == "stream"
    private_redis.stop()
    time.sleep(0.5)
    private_redis.start()
    started = time.monotonic()
    for reader in readers:
        last = None
        for event in reader:
            if event.event in ("done", "error"):
                last = event
                break
        assert last is not None, "the stream ended without a terminal event"
    assert time.monotonic() - started < 20
    wait_until(lambda: stream_works(relay), 30, "new streams after the restart")
