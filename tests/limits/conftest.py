"""Fixtures of the limits tests: an app with the contract's limits on a key prefix of its own."""

from __future__ import annotations

import secrets

import pytest
import redis

from app.auth import anonymous
from app.config import LIMIT_DEFAULTS
from tests.support import RedisServer

CONTRACT_LIMITS = {f"LIMIT_{name}": value for name, value in LIMIT_DEFAULTS.items()}


@pytest.fixture
def limits_app(make_app, redis_url):
    """An app with the contract's limits (overridable) and a fresh Redis prefix, so counts start at zero."""
    prefixes: list[str] = []

    def factory(**overrides: object):
        prefix = f"relaylimits-{secrets.token_hex(4)}:"
        prefixes.append(prefix)
        return make_app(**{**CONTRACT_LIMITS, "REDIS_KEY_PREFIX": prefix, **overrides})

    yield factory
    client = redis.Redis.from_url(redis_url)
    for prefix in prefixes:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)


def anon_token(app) -> str:
    """A fresh anonymous token, minted as POST /api/v1/anon_session would (without spending anon_mint)."""
    return anonymous.mint(app.config["SECRET_KEY"], 3600)[0]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_stream(client, token: str, ip: str = "127.0.0.1", **body: object):
    """POST /api/v1/stream from `ip`; the response is closed (only the status and headers matter)."""
    response = client.post(
        "/api/v1/stream",
        json={"message": "hello", "model": "local-smollm2", **body},
        headers=auth(token),
        environ_base={"REMOTE_ADDR": ip},
        buffered=False,
    )
    response.close()
    return response


def assert_429(response, code: str, limit: str) -> dict:
    assert response.status_code == 429, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert error["details"]["limit"] == limit
    assert int(response.headers["Retry-After"]) >= 1
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
