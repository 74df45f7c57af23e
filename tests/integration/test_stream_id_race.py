"""Concurrent starts with the same new stream_id, against real processes: two gunicorn
processes, a gevent Celery worker and a priced (fake OpenAI) model. Exactly one stream
runs; its reservation is not released by a loser and is settled to the real cost; the
others attach (same principal) or get 409 (other principals); the budget ends exact."""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from app.limits.budget import to_micro
from tests.conftest import Stack, stack_env
from tests.support import collect, fake_server, reply_text, wait_until

pytestmark = pytest.mark.slow
RACERS = 8
REPLY = "one stream, however many ask for it"


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    with fake_server("openai", tmp_path_factory.mktemp("race-openai"), token_ms=20) as base:
        yield base


@pytest.fixture(scope="module")
def relay(tmp_path_factory, base_env, provider):
    log_dir = tmp_path_factory.mktemp("race")
    prefix = f"{base_env['REDIS_KEY_PREFIX']}race-{secrets.token_hex(2)}:"
    env = stack_env(base_env, provider + "/v1", log_dir, REDIS_KEY_PREFIX=prefix, WEB_CONCURRENCY="2")
    running = Stack(env, log_dir)
    try:
        running.start_web(port=int(env["PORT"]))
        running.start_worker("worker", "gevent", "generate", 50)
        yield running
    finally:
        running.stop()


def budget_micro(relay) -> int:
    client = redis.Redis.from_url(relay.env["REDIS_URL"], decode_responses=True)
    day = int(client.time()[0] // 86400)
    return int(client.get(f"{relay.env['REDIS_KEY_PREFIX']}budget:global:{day}") or 0)


def reservation_exists(relay, stream_id: str) -> bool:
    client = redis.Redis.from_url(relay.env["REDIS_URL"], decode_responses=True)
    return bool(client.exists(f"{relay.env['REDIS_KEY_PREFIX']}budget:res:{stream_id}"))


def race(relay, tokens: list[str], stream_id: str) -> list[tuple[int, list]]:
    """Every token POSTs the same stream_id at once; (status, events) for each."""
    gate = threading.Barrier(len(tokens))
    body = {"message": f"echo:{REPLY}", "model": "gpt-4o-mini", "stream_id": stream_id}

    def one(token: str) -> tuple[int, list]:
        gate.wait()
        response = relay.post_stream(token, body)
        if response.status_code != 200:
            return response.status_code, [response.json()["error"]["code"]]
        return 200, collect(response)

    with ThreadPoolExecutor(len(tokens)) as pool:
        return list(pool.map(one, tokens))


def provider_requests(provider) -> int:
    return requests.get(f"{provider}/stats", timeout=5).json()["requests"]


def settled(relay, stream_id: str, before: int, cost: float) -> None:
    """Wait for the settlement, then check the budget moved by exactly the stream's cost."""
    wait_until(lambda: not reservation_exists(relay, stream_id), 15, "the reservation to be settled")
    assert abs(budget_micro(relay) - before - to_micro(cost)) <= 1, (budget_micro(relay) - before, to_micro(cost))


def test_one_principal_racing_itself_gets_one_stream_and_one_charge(relay, provider):
    token = relay.anon_token()
    stream_id = "race-same-" + secrets.token_hex(6)
    budget_before, requests_before = budget_micro(relay), provider_requests(provider)
    results = race(relay, [token] * RACERS, stream_id)
    assert [status for status, _ in results] == [200] * RACERS, results
    streams = [events for _, events in results]
    assert all(reply_text(events) == REPLY for events in streams)
    assert all([e.id for e in events] == [e.id for e in streams[0]] for events in streams)
    done = streams[0][-1]
    assert done.event == "done" and done.data["cost_usd"] > 0
    assert provider_requests(provider) == requests_before + 1
    settled(relay, stream_id, budget_before, done.data["cost_usd"])


def test_principals_racing_for_one_id_one_wins_the_others_get_409(relay, provider):
    tokens = [relay.anon_token() for _ in range(RACERS)]
    stream_id = "race-many-" + secrets.token_hex(6)
    budget_before, requests_before = budget_micro(relay), provider_requests(provider)
    results = race(relay, tokens, stream_id)
    winners = [events for status, events in results if status == 200]
    assert len(winners) == 1, [status for status, _ in results]
    assert sorted(events[0] for status, events in results if status != 200) == ["stream_id_in_use"] * (RACERS - 1)
    assert {status for status, _ in results} == {200, 409}
    done = winners[0][-1]
    assert done.event == "done" and reply_text(winners[0]) == REPLY
    assert provider_requests(provider) == requests_before + 1
    settled(relay, stream_id, budget_before, done.data["cost_usd"])
    time.sleep(0.5)  # nothing released or charged late
    assert abs(budget_micro(relay) - budget_before - to_micro(done.data["cost_usd"])) <= 1
