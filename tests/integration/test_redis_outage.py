"""Redis goes away: requests get 503 with Retry-After, open streams end with a terminal
event, and everything works again when Redis returns, without a restart.

A Relay of this module's own on a private redis-server (never the machine's
shared one), which the tests stop and start.
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest
import redis
import requests
from sqlalchemy import create_engine, text

from tests.conftest import Stack, stack_env
from tests.support import RedisServer, collect, fake_server, iter_sse, wait_until

pytestmark = pytest.mark.slow
OUTAGE_SECONDS = 4.0  # past the hub's 2 s reconnect backoff and the readers' silence checks


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


def restart_redis(server, outage_s: float) -> None:
    """Redis goes away for `outage_s`, then comes back with its data (saved at shutdown, as a
    persistent deployment's would be)."""
    with contextlib.suppress(redis.ConnectionError):  # the server closes the connection as it exits
        redis.Redis.from_url(server.url).shutdown(save=True)
    server.process.wait(10)
    time.sleep(outage_s)
    server.start()


def follow(relay, token: str, stream_id: str, response, reader, deadline: float) -> list:
    """Every event of a stream as a client sees it from `reader` (the events of `response`) on:
    on an id-less `dependency_unavailable` it resumes with its last id (retrying while Redis is
    away), until the terminal event."""
    events: list = []
    while time.monotonic() < deadline:
        if reader is not None:
            for event in reader:
                if event.event == "heartbeat":
                    continue
                if event.id is None:
                    assert event.event == "error" and event.data["error_code"] == "dependency_unavailable"
                    break
                events.append(event)
                if event.event in ("done", "error"):
                    response.close()
                    return events
            response.close()
        time.sleep(0.3)
        headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": str(events[-1].id if events else 1)}
        url = f"{relay.base_url}/api/v1/stream/{stream_id}"
        try:
            response = requests.get(url, headers=headers, stream=True, timeout=30)
        except requests.ConnectionError:
            response, reader = None, None
            continue
        reader = iter_sse(response) if response.status_code == 200 else None
    raise AssertionError(f"no terminal event; ids so far {[e.id for e in events]}")


def test_open_streams_end_with_a_terminal_event_when_redis_restarts(relay, private_redis):
    """Redis is away for several seconds, longer than the hub's reconnect backoff, a reader's
    silence check and the worker's first retries: every stream still ends, and each client
    sees every event id once, in order, across its resumptions."""
    token = relay.anon_token()
    responses = [
        relay.post_stream(token, {"message": "echo:" + "x" * 300, "model": "gpt-4o-mini"}, timeout=60) for _ in range(3)
    ]
    stream_ids = [response.headers["X-Stream-Id"] for response in responses]
    readers = [iter_sse(response) for response in responses]
    for reader in readers:
        first = next(reader)
        assert first.event == "stream" and first.id == 1
    restart_redis(private_redis, OUTAGE_SECONDS)
    deadline = time.monotonic() + 40
    for stream_id, response, reader in zip(stream_ids, responses, readers, strict=True):
        events = follow(relay, token, stream_id, response, reader, deadline)
        ids = [1, *(event.id for event in events)]
        assert ids == list(range(1, len(ids) + 1)), f"ids lost or repeated: {ids}"
        assert events[-1].event in ("done", "error")
    wait_until(lambda: stream_works(relay), 30, "new streams after the restart")
