"""Exactness across processes: 4 gunicorn workers, hundreds of simultaneous requests, real Redis.

Each test fires its requests from threads released together by a barrier, so
they race in four processes; a limit of N admits exactly N, and a budget
admits only what it covers. Client addresses come from X-Forwarded-For behind
TRUSTED_PROXY_COUNT=1, so each test chooses which addresses share a key.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
import redis
import requests
from sqlalchemy import bindparam, create_engine, text

from app.auth import anonymous
from tests.conftest import Stack, stack_env
from tests.support import collect, wait_until

pytestmark = pytest.mark.slow

BURST = 200


@pytest.fixture(scope="module")
def relay4(tmp_path_factory, base_env, fake_openai, redis_url):
    log_dir = tmp_path_factory.mktemp("limits-exact")
    prefix = f"relayexact-{secrets.token_hex(3)}:"
    env = stack_env(
        base_env, fake_openai, log_dir,
        REDIS_KEY_PREFIX=prefix, TRUSTED_PROXY_COUNT="1", WEB_CONCURRENCY="4", LOG_LEVEL="WARNING",
        LIMIT_GLOBAL_IP="1000000/60", LIMIT_STREAM_USER="30/30", LIMIT_STREAM_IP="40/30", LIMIT_ANON_LIFETIME="25",
        LIMIT_ANON_HOURLY="1000/3600", LIMIT_ANON_IP_HOURLY="1000/3600", ANON_DAILY_BUDGET_USD="0.25",
    )  # fmt: skip
    running = Stack(env, log_dir)
    try:
        running.start_web(port=int(env["PORT"]))
        running.start_worker("remote-worker", "gevent", "generate", 200)
        yield running
    finally:
        running.stop()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)


def burst(stack: Stack, requests_: list[tuple[str, str, dict]], keep_open: bool = False) -> list:
    """POST every (token, client ip, body) at once; the responses (closed unless keep_open)."""
    barrier = threading.Barrier(len(requests_))

    def send(item):
        token, ip, body = item
        barrier.wait()
        response = stack.post_stream(token, body, headers={"X-Forwarded-For": ip}, timeout=60)
        if response.status_code != 200:
            _ = response.content  # read the error body before closing
        if not keep_open or response.status_code != 200:
            response.close()
        return response

    with ThreadPoolExecutor(len(requests_)) as pool:
        return list(pool.map(send, requests_))


def refusals(responses) -> set[tuple[str, str]]:
    return {
        (r.json()["error"]["code"], r.json()["error"]["details"]["limit"]) for r in responses if r.status_code != 200
    }


def anon(stack: Stack) -> str:
    return anonymous.mint(stack.env["SECRET_KEY"], 3600)[0]


def test_200_streams_of_one_user_admit_exactly_30(relay4):
    now = int(time.time())
    claims = {"sub": f"exact-{secrets.token_hex(4)}", "aud": "authenticated", "iat": now, "exp": now + 600}
    token = jwt.encode(claims, relay4.env["JWT_SECRET"], algorithm="HS256")
    provisioned = requests.get(f"{relay4.base_url}/api/v1/conversations", headers={"Authorization": f"Bearer {token}"})
    assert provisioned.status_code == 200
    body = {"message": "hello", "model": "local-smollm2"}
    responses = burst(relay4, [(token, f"10.10.{n // 250}.{n % 250}", body) for n in range(BURST)])
    assert sum(r.status_code == 200 for r in responses) == 30
    assert refusals(responses) == {("rate_limited", "stream_user")}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status_code == 429)


def test_200_streams_from_one_address_admit_exactly_the_per_ip_limit(relay4):
    body = {"message": "hello", "model": "local-smollm2"}
    responses = burst(relay4, [(anon(relay4), "10.20.0.1", body) for _ in range(BURST)])
    assert sum(r.status_code == 200 for r in responses) == 40
    assert refusals(responses) == {("rate_limited", "stream_ip")}


def test_200_streams_of_one_anonymous_session_admit_exactly_its_lifetime_quota(relay4):
    token = anon(relay4)
    body = {"message": "hello", "model": "local-smollm2"}
    responses = burst(relay4, [(token, f"10.30.{n // 250}.{n % 250}", body) for n in range(BURST)])
    assert sum(r.status_code == 200 for r in responses) == 25
    assert refusals(responses) == {("quota_exceeded", "anon_lifetime")}


def test_100_streams_against_a_small_budget_never_overspend_it(relay4, redis_url):
    # Each reserves its $0.01 cost cap (its worst case is $0.02). The provider holds every reply until
    # 25 are in flight, then 5 s more, so none settles during the burst: $0.25 covers exactly 25.
    body = {"message": "#hold=25 #ttft=5000 tell me", "model": "gpt-4o", "cost_cap_usd": 0.01}
    responses = burst(relay4, [(anon(relay4), f"10.40.0.{n}", body) for n in range(100)], keep_open=True)
    admitted = [r for r in responses if r.status_code == 200]
    assert len(admitted) == 25
    assert refusals(responses) == {("budget_exceeded", "anon_daily_budget")}
    with ThreadPoolExecutor(len(admitted)) as pool:
        endings = list(pool.map(lambda r: collect(r)[-1], admitted))
    assert all(e.event == "done" for e in endings), [e.data for e in endings if e.event != "done"]

    engine = create_engine(relay4.env["DATABASE_URL"])
    ids = [r.headers["X-Stream-Id"] for r in admitted]
    done = text("SELECT count(*) FROM streams WHERE status = 'finished' AND id IN :ids")
    done = done.bindparams(bindparam("ids", expanding=True))

    def finished() -> bool:
        with engine.connect() as connection:
            return connection.execute(done, {"ids": ids}).scalar() == len(ids)

    wait_until(finished, 30, "every admitted stream's row to be finished")
    with engine.connect() as connection:
        streams_spend = connection.execute(text("SELECT coalesce(sum(cost_usd), 0) FROM streams")).scalar()
        messages_spend = connection.execute(text("SELECT coalesce(sum(cost_usd), 0) FROM messages")).scalar()
    engine.dispose()
    assert 0 < streams_spend <= 0.25
    assert messages_spend == pytest.approx(streams_spend)
    # Every reservation was settled to the real cost: Redis holds what the database says was spent.
    day = int(time.time() // 86400)
    held = int(redis.Redis.from_url(redis_url).get(f"{relay4.env['REDIS_KEY_PREFIX']}budget:anon:{day}") or 0)
    assert held / 1e6 == pytest.approx(streams_spend, abs=len(ids) * 1e-6)
