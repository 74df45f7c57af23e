"""Direct dispatch, end to end: a listening gevent worker starts a remote reply without Celery's
hop, and Celery still carries every job no worker claimed (nobody listens, or an offer was taken
and dropped). The web here waits 2 s before it falls back to Celery, so which path ran shows in
the time to the first chunk as well as in the web's dispatch counter."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
import requests

from app.streams.direct import DirectLane
from tests.conftest import Stack, stack_env
from tests.support import collect, iter_sse, reply_text, wait_until

pytestmark = pytest.mark.slow

GRACE_S = 2.0


@pytest.fixture(scope="module")
def direct_stack(tmp_path_factory, base_env, fake_openai, key_prefix) -> Iterator[Stack]:
    """A web process of its own (key prefix, database), with a long grace; each test starts its worker."""
    log_dir = tmp_path_factory.mktemp("direct-stack")
    env = stack_env(
        {**base_env, "REDIS_KEY_PREFIX": f"{key_prefix}direct-stack:"},
        fake_openai,
        log_dir,
        DIRECT_DISPATCH_GRACE_MS=str(GRACE_S * 1000),
    )
    running = Stack(env, log_dir)
    try:
        running.start_web(port=int(env["PORT"]))
        yield running
    finally:
        running.stop()


@pytest.fixture
def lane(direct_stack, redis_url) -> DirectLane:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return DirectLane(client, direct_stack.env["REDIS_KEY_PREFIX"], "generate")


def dispatch_counts(stack: Stack) -> dict[str, float]:
    counts = {"direct": 0.0, "celery": 0.0, "celery_after_offer": 0.0}
    for line in requests.get(f"{stack.base_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("relay_stream_dispatch_total{"):
            name, _, value = line.rpartition(" ")
            counts[name.split('path="', 1)[1].split('"', 1)[0]] = float(value)
    return counts


def counts_after(stack: Stack, before: dict[str, float]) -> dict[str, float]:
    """The counts once the reply's dispatch was counted (at the grace's end, after the offer)."""
    wait_until(lambda: sum(dispatch_counts(stack).values()) > sum(before.values()), GRACE_S + 5, "the count")
    return dispatch_counts(stack)


def timed_reply(stack: Stack, message: str) -> tuple[float, str]:
    started = time.monotonic()
    response = stack.post_stream(stack.anon_token(), {"message": message, "model": "gpt-4o-mini"})
    assert response.status_code == 200, response.text
    events = collect(response)
    assert events[-1].event == "done", events[-1]
    first_chunk = next(event for event in events if event.event == "message_chunk")
    assert first_chunk.id is not None
    return time.monotonic() - started, reply_text(events)


def counted_reply(stack: Stack, message: str) -> tuple[float, str, dict[str, float]]:
    """A reply's time and text, and how the web's dispatch counts moved for it."""
    before = dispatch_counts(stack)
    took, text = timed_reply(stack, message)
    after = counts_after(stack, before)
    return took, text, {path: after[path] - before[path] for path in after}


def worker(stack: Stack, name: str, concurrency: int = 20, **env: str):
    return stack.start_worker(name, "gevent", "generate", concurrency, **env)


def test_a_listening_worker_starts_the_reply_without_celery(direct_stack):
    process = worker(direct_stack, "listening-worker")
    try:
        took, text, moved = counted_reply(direct_stack, "echo:straight to the worker")
    finally:
        process.stop()
    assert text == "straight to the worker"
    assert took < GRACE_S, f"the reply waited for the fallback ({took:.2f}s)"
    assert moved == {"direct": 1, "celery": 0, "celery_after_offer": 0}


def test_an_offer_taken_and_dropped_still_runs_through_celery(direct_stack, lane):
    # The worker does not listen; this test does, takes the offer and drops it (a worker that died
    # before its claim). After the grace the web sends the job through Celery, which runs it once.
    process = worker(direct_stack, "celery-only-worker", DIRECT_DISPATCH="false")
    taken: list[dict] = []
    listener = threading.Thread(target=lambda: taken.append(lane.take("a-worker-that-dies", 5)), daemon=True)
    try:
        listener.start()
        time.sleep(0.2)  # listening before the offer
        took, text, moved = counted_reply(direct_stack, "echo:carried by celery")
        listener.join(5)
    finally:
        process.stop()
        lane.leave("a-worker-that-dies")
    assert taken and taken[0]["messages"][-1]["content"] == "echo:carried by celery"
    assert text == "carried by celery"
    assert took >= GRACE_S, "the reply ran before the grace: someone else claimed it"
    assert moved["celery_after_offer"] == 1
    assert moved["direct"] == 0


def test_no_listener_means_no_offer_and_no_grace(direct_stack, lane):
    process = worker(direct_stack, "not-listening-worker", DIRECT_DISPATCH="false")
    try:
        lane.leave("a-worker-that-dies")
        took, text, moved = counted_reply(direct_stack, "echo:nobody listens")
    finally:
        process.stop()
    assert text == "nobody listens"
    assert took < GRACE_S, f"the reply waited for a grace though nobody listened ({took:.2f}s)"
    assert moved["celery"] == 1
    assert moved["celery_after_offer"] == 0
    assert lane.client.llen(lane.jobs_key) == 0


def test_a_worker_at_capacity_stops_listening(direct_stack):
    # One reply at a time: while the first runs, the worker takes no offer, so the web offers none
    # and sends the second job through Celery at once (no grace), where it waits for the pool.
    process = worker(direct_stack, "one-at-a-time-worker", concurrency=1)
    try:
        token = direct_stack.anon_token()
        before = dispatch_counts(direct_stack)
        long_reply = direct_stack.post_stream(token, {"message": "#chunks=60 #gap=50", "model": "gpt-4o-mini"})
        assert long_reply.status_code == 200, long_reply.text
        long_events = iter_sse(long_reply)
        assert next(e for e in long_events if e.event != "stream").event == "message_chunk"  # it runs
        _, text = timed_reply(direct_stack, "echo:after the long one")
        rest = [e for e in long_events if e.event != "heartbeat"]
        long_reply.close()
        wait_until(
            lambda: sum(dispatch_counts(direct_stack).values()) - sum(before.values()) >= 2, GRACE_S + 5, "counts"
        )
        after = dispatch_counts(direct_stack)
    finally:
        process.stop()
    assert rest[-1].event == "done" and text == "after the long one"
    assert after["direct"] - before["direct"] == 1
    assert after["celery"] - before["celery"] == 1
    assert after["celery_after_offer"] == before["celery_after_offer"]
