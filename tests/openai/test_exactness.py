"""The budget exactness test of tests/limits/test_exactness.py, over /v1/chat/completions: 100
simultaneous streaming completions against a $0.25 anonymous budget, in four gunicorn workers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from sqlalchemy import bindparam, create_engine, text

from tests.limits.test_exactness import anon, relay4  # noqa: F401 - the module's Relay, started for this module too
from tests.support import wait_until

pytestmark = pytest.mark.slow


def _completion(stack, token: str, ip: str, barrier: threading.Barrier) -> requests.Response:
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "#hold=25 #ttft=5000 tell me"}]}
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": ip, "X-Relay-Cost-Cap": "0.01"}
    barrier.wait()
    response = requests.post(f"{stack.base_url}/v1/chat/completions", json=body, headers=headers, stream=True,
                             timeout=60)  # fmt: skip
    if response.status_code != 200:
        _ = response.content
        response.close()
    return response


def _finish(response: requests.Response) -> str:
    """The finish chunk's Relay reason, after reading the stream to [DONE]."""
    body = response.text
    assert body.endswith("data: [DONE]\n\n"), body[-300:]
    return body.split('"x_relay":{"finish_reason":"', 1)[1].split('"', 1)[0]


def test_100_completions_against_a_small_budget_never_overspend_it(relay4, redis_url):  # noqa: F811
    # As over /api/v1/stream: each reserves its $0.01 cap; the provider holds every reply until 25 are
    # in flight, then 5 s more, so none settles during the burst: $0.25 covers exactly 25.
    barrier = threading.Barrier(100)
    with ThreadPoolExecutor(100) as pool:
        responses = list(pool.map(lambda n: _completion(relay4, anon(relay4), f"10.50.0.{n}", barrier), range(100)))
    admitted = [r for r in responses if r.status_code == 200]
    assert len(admitted) == 25
    refusals = {(r.json()["error"]["code"], r.json()["error"]["message"].rsplit("(limit: ", 1)[-1])
                for r in responses if r.status_code != 200}  # fmt: skip
    assert refusals == {("insufficient_quota", "anon_daily_budget)")}
    with ThreadPoolExecutor(len(admitted)) as pool:
        reasons = list(pool.map(_finish, admitted))
    assert set(reasons) <= {"stop", "cost_cap"}, reasons

    engine = create_engine(relay4.env["DATABASE_URL"])
    ids = [r.headers["X-Stream-Id"] for r in admitted]
    done = text("SELECT count(*) FROM streams WHERE status = 'finished' AND id IN :ids")
    done = done.bindparams(bindparam("ids", expanding=True))

    def finished() -> bool:
        with engine.connect() as connection:
            return connection.execute(done, {"ids": ids}).scalar() == len(ids)

    wait_until(finished, 30, "every admitted stream's row to be finished")
    mine = text("SELECT coalesce(sum(cost_usd), 0) FROM streams WHERE id IN :ids").bindparams(
        bindparam("ids", expanding=True))  # fmt: skip
    with engine.connect() as connection:
        spend = connection.execute(mine, {"ids": ids}).scalar()
        all_spend = connection.execute(text("SELECT coalesce(sum(cost_usd), 0) FROM streams")).scalar()
    engine.dispose()
    assert 0 < spend <= all_spend <= 0.25
    day = int(time.time() // 86400)
    held = int(redis.Redis.from_url(redis_url).get(f"{relay4.env['REDIS_KEY_PREFIX']}budget:anon:{day}") or 0)
    assert held / 1e6 == pytest.approx(all_spend, abs=len(ids) * 1e-6)
