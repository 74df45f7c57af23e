"""Streams that survive: resume, cancel, orphans, lost workers, no workers, idempotent ids.

A Relay of this module's own: two gunicorn instances and one gevent Celery
worker on a key prefix of their own, short timeouts, and a fake provider that
streams slowly (30 ms a chunk) so clients can drop out mid-stream.
"""

from __future__ import annotations

import secrets
import signal
import time

import pytest
import redis
import requests
from sqlalchemy import create_engine, text

from tests.conftest import Stack, stack_env
from tests.support import collect, fake_server, iter_sse, reply_text, wait_until

pytestmark = pytest.mark.slow

REPLY = "The quick brown fox jumps over the lazy dog, again and again, until the reply is long enough."
TIMEOUTS = {
    "QUEUE_TIMEOUT_SECONDS": "2",
    "STREAM_STALL_SECONDS": "30",
    "WORKER_LOST_SECONDS": "2",
    "STREAM_ORPHAN_GRACE_SECONDS": "2",
    "HEARTBEAT_SECONDS": "1",
}


@pytest.fixture(scope="module")
def slow_provider(tmp_path_factory):
    with fake_server("openai", tmp_path_factory.mktemp("slow-openai"), token_ms=30) as base:
        yield base


@pytest.fixture(scope="module")
def relay(tmp_path_factory, base_env, slow_provider):
    log_dir = tmp_path_factory.mktemp("resilience")
    prefix = f"{base_env['REDIS_KEY_PREFIX']}res-{secrets.token_hex(2)}:"
    running = Stack(stack_env(base_env, slow_provider + "/v1", log_dir, REDIS_KEY_PREFIX=prefix, **TIMEOUTS), log_dir)
    try:
        running.start_web("web-a", port=int(running.env["PORT"]))
        running.other_url = running.start_web("web-b")
        running.start_worker("worker", "gevent", "generate", 100)
        yield running
    finally:
        running.stop()


@pytest.fixture
def token(relay) -> str:
    return relay.anon_token()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def resume(base_url: str, token: str, stream_id: str, last_id: int, **kwargs) -> requests.Response:
    headers = {**auth(token), "Last-Event-ID": str(last_id)} if last_id is not None else auth(token)
    return requests.get(f"{base_url}/api/v1/stream/{stream_id}", headers=headers, stream=True, timeout=30, **kwargs)


def meta(relay, stream_id: str) -> dict:
    client = redis.Redis.from_url(relay.env["REDIS_URL"], decode_responses=True)
    return client.hgetall(f"{relay.env['REDIS_KEY_PREFIX']}stream:{{{stream_id}}}:meta")


def assert_complete(events_before, events_after, expected: str) -> None:
    events = events_before + events_after
    ids = [e.id for e in events]
    assert ids == list(range(1, len(ids) + 1)), f"lost or repeated ids: {ids}"
    assert reply_text(events) == expected
    assert events[-1].event == "done" and events[-1].data["finish_reason"] == "stop"


@pytest.mark.parametrize("cut_after", [1, 4, 20])
def test_resume_on_the_other_instance_loses_and_repeats_nothing(relay, token, cut_after):
    """Cut after the `stream` event (before any chunk), early, and deep into the reply."""
    response = relay.post_stream(token, {"message": f"echo:{REPLY}", "model": "gpt-4o-mini"})
    stream_id = response.headers["X-Stream-Id"]
    before = collect(response, stop_after=cut_after)  # closes the connection
    assert before[-1].id == cut_after
    after = collect(resume(relay.other_url, token, stream_id, before[-1].id))
    assert_complete(before, after, REPLY)


def test_resume_with_query_parameter_and_from_the_start(relay, token):
    response = relay.post_stream(token, {"message": "echo:short reply", "model": "gpt-4o-mini"})
    stream_id = response.headers["X-Stream-Id"]
    first = collect(response)
    again = collect(
        requests.get(
            f"{relay.base_url}/api/v1/stream/{stream_id}",
            params={"last_event_id": "2"},
            headers=auth(token),
            stream=True,
            timeout=30,
        )
    )
    assert [e.id for e in again] == [e.id for e in first][2:]
    replay = collect(resume(relay.other_url, token, stream_id, None))
    assert [(e.id, e.event, e.data) for e in replay] == [(e.id, e.event, e.data) for e in first]


def test_resume_at_or_past_the_end_is_204(relay, token):
    response = relay.post_stream(token, {"message": "echo:done soon", "model": "gpt-4o-mini"})
    stream_id = response.headers["X-Stream-Id"]
    last = collect(response)[-1].id
    assert resume(relay.base_url, token, stream_id, last).status_code == 204
    assert resume(relay.base_url, token, stream_id, last + 5).status_code == 204


def test_resume_errors(relay, token):
    response = relay.post_stream(token, {"message": "echo:mine", "model": "gpt-4o-mini"})
    stream_id = response.headers["X-Stream-Id"]
    collect(response)
    stranger = relay.anon_token()
    forbidden = resume(relay.base_url, stranger, stream_id, 0)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    cancel = requests.delete(f"{relay.base_url}/api/v1/stream/{stream_id}", headers=auth(stranger), timeout=10)
    assert cancel.status_code == 403
    unknown = resume(relay.base_url, token, "no-such-stream-id", 0)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    bad = resume(relay.base_url, token, stream_id, None, params={"last_event_id": "-1"})
    assert bad.status_code == 422


def test_delete_cancels_a_stream_waiting_for_its_first_token(relay, token):
    response = relay.post_stream(token, {"message": "echo:never sent #ttft=10000", "model": "gpt-4o-mini"})
    stream_id = response.headers["X-Stream-Id"]
    events = iter_sse(response)
    assert next(events).event == "stream"
    started = time.monotonic()
    cancel = requests.delete(f"{relay.base_url}/api/v1/stream/{stream_id}", headers=auth(token), timeout=10)
    assert cancel.status_code == 202
    rest = [e for e in events if e.event != "heartbeat"]
    elapsed = time.monotonic() - started
    assert rest[-1].event == "done" and rest[-1].data["finish_reason"] == "cancelled"
    assert elapsed < 3, f"cancel took {elapsed:.1f}s; the provider's first token was 10 s away"


def test_delete_mid_stream_keeps_what_was_generated(relay, token):
    long_reply = REPLY * 4
    response = relay.post_stream(token, {"message": f"echo:{long_reply}", "model": "gpt-4o-mini"})
    stream_id = response.headers["X-Stream-Id"]
    events = iter_sse(response)
    seen = [next(events) for _ in range(4)]
    requests.delete(f"{relay.base_url}/api/v1/stream/{stream_id}", headers=auth(token), timeout=10)
    seen += [e for e in events if e.event != "heartbeat"]
    done = seen[-1]
    assert done.event == "done" and done.data["finish_reason"] == "cancelled"
    received = reply_text(seen)
    assert 0 < len(received) < len(long_reply)
    conversation = requests.get(
        f"{relay.base_url}/api/v1/conversations/{seen[0].data['conversation_id']}", headers=auth(token), timeout=10
    ).json()
    assistant = conversation["messages"][-1]
    assert assistant["role"] == "assistant" and assistant["content"] == received
    assert assistant["usage"]["completion_tokens"] == done.data["usage"]["completion_tokens"]


def test_a_stream_nobody_reads_is_cancelled(relay, token):
    long_reply = REPLY * 6  # about 570 characters: 190 chunks, nearly 6 s
    response = relay.post_stream(token, {"message": f"echo:{long_reply}", "model": "gpt-4o-mini"})
    stream_id = response.headers["X-Stream-Id"]
    collect(response, stop_after=3)  # the client goes away
    wait_until(lambda: "ended" in meta(relay, stream_id), 10, "the orphaned stream to end")
    events = collect(resume(relay.base_url, token, stream_id, 0))
    assert events[-1].event == "done" and events[-1].data["finish_reason"] == "cancelled"
    assert len(reply_text(events)) < len(long_reply)


def test_same_stream_id_attaches_and_generates_once(relay, token, slow_provider):
    stream_id = "client-chosen-" + secrets.token_hex(6)
    before = requests.get(f"{slow_provider}/stats", timeout=5).json()["requests"]
    first = relay.post_stream(token, {"message": "echo:only once", "model": "gpt-4o-mini", "stream_id": stream_id})
    second = relay.post_stream(token, {"message": "echo:only once", "model": "gpt-4o-mini", "stream_id": stream_id})
    one, two = collect(first), collect(second)
    assert reply_text(one) == reply_text(two) == "only once"
    assert [e.id for e in one] == [e.id for e in two]
    assert requests.get(f"{slow_provider}/stats", timeout=5).json()["requests"] == before + 1
    other = relay.post_stream(relay.anon_token(), {"message": "echo:mine now", "stream_id": stream_id})
    assert other.status_code == 409 and other.json()["error"]["code"] == "stream_id_in_use"


def test_no_worker_for_the_queue_ends_with_no_worker(relay, token):
    # This Relay runs no worker for the local model's queue.
    started = time.monotonic()
    events = collect(relay.post_stream(token, {"message": "hello", "model": "local-smollm2"}))
    assert events[-1].event == "error" and events[-1].data["error_code"] == "no_worker"
    assert time.monotonic() - started < 10


def stream_row(relay, stream_id: str) -> dict:
    engine = create_engine(relay.env["DATABASE_URL"])
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT status, error_code, cost_usd FROM streams WHERE id = :id"), {"id": stream_id}
        ).one()
    engine.dispose()
    return dict(row._mapping)


def test_a_killed_worker_ends_the_stream_as_worker_lost_within_seconds(relay, token):
    """SIGKILL mid-stream: the worker's liveness key lapses and a reader ends the stream
    `worker_lost` well before STREAM_STALL_SECONDS, settling what the stream cost so far."""
    response = relay.post_stream(token, {"message": f"echo:{REPLY * 4}", "model": "gpt-4o-mini"})
    before = collect(response, stop_after=4)
    stream_id = response.headers["X-Stream-Id"]
    relay.processes["worker"].signal(signal.SIGKILL)
    try:
        started = time.monotonic()
        events = collect(resume(relay.base_url, token, stream_id, before[-1].id))
        elapsed = time.monotonic() - started
        print(f"worker_lost {elapsed:.1f} s after SIGKILL (WORKER_LOST_SECONDS {TIMEOUTS['WORKER_LOST_SECONDS']})")
        assert events[-1].event == "error" and events[-1].data["error_code"] == "worker_lost", events[-1]
        assert elapsed < float(TIMEOUTS["WORKER_LOST_SECONDS"]) + 4 < float(TIMEOUTS["STREAM_STALL_SECONDS"])
        seen = before + events
        assert [e.id for e in seen] == list(range(1, len(seen) + 1))
        cost = [e for e in seen if e.event == "message_chunk"][-1].data["cost_usd"]
        client = redis.Redis.from_url(relay.env["REDIS_URL"])
        # The reader that recorded worker_lost settles and marks the row just after the event is out.
        reservation = f"{relay.env['REDIS_KEY_PREFIX']}budget:res:{stream_id}"
        wait_until(lambda: not client.exists(reservation), 10, "the reservation settled")
        wait_until(lambda: stream_row(relay, stream_id)["status"] == "failed", 10, "the row marked failed")
        row = stream_row(relay, stream_id)
        assert row["error_code"] == "worker_lost"
        assert row["cost_usd"] == pytest.approx(cost, abs=1e-6)
    finally:
        relay.processes["worker"].stop()
        relay.start_worker("worker", "gevent", "generate", 100)
