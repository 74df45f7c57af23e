"""A Relay for the OpenAI-compatible API tests: gunicorn (gevent), a gevent Celery worker, the fake
OpenAI and fake Anthropic providers, a short orphan grace and a small per-principal stream limit.

Each test gets a Relay API key of its own (a principal of its own), so the per-principal limit
(3 new streams per 2 s) is the test's own; the official `openai` package is the client.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import jwt
import openai
import pytest
import requests

from tests.conftest import Stack, bearer, stack_env
from tests.support import fake_server

STREAM_USER = (3, 2)  # LIMIT_STREAM_USER: 3 new streams per 2 seconds, per principal
ANON_LIFETIME = 3
ORPHAN_GRACE_SECONDS = 2


@pytest.fixture(scope="session")
def openai_fakes(tmp_path_factory) -> Iterator[dict[str, str]]:
    """Fakes of this package's own (their /stats count only our calls): 5 ms per chunk."""
    log_dir = tmp_path_factory.mktemp("openai-fakes")
    with (
        fake_server("openai", log_dir, first_token_ms=5, token_ms=5) as fake_openai,
        fake_server("anthropic", log_dir, first_token_ms=5, token_ms=5) as fake_anthropic,
    ):
        yield {"openai": fake_openai, "anthropic": fake_anthropic}


@pytest.fixture(scope="session")
def relay(tmp_path_factory, base_env, openai_fakes) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("openai-relay")
    env = stack_env(
        base_env,
        openai_fakes["openai"] + "/v1",
        log_dir,
        REDIS_KEY_PREFIX=f"{base_env['REDIS_KEY_PREFIX']}openai-{secrets.token_hex(3)}:",
        ANTHROPIC_API_KEY="sk-ant-test-not-a-real-key",
        ANTHROPIC_BASE_URL=openai_fakes["anthropic"],
        DEFAULT_MODEL="gpt-4o-mini",
        LIMIT_STREAM_USER=f"{STREAM_USER[0]}/{STREAM_USER[1]}",
        LIMIT_ANON_LIFETIME=str(ANON_LIFETIME),
        STREAM_ORPHAN_GRACE_SECONDS=str(ORPHAN_GRACE_SECONDS),
        LOG_LEVEL="WARNING",
    )
    running = Stack(env, log_dir)
    try:
        running.start_web(name="openai-web", port=int(env["PORT"]))
        running.start_worker("openai-worker", "gevent", "generate", 50)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def admin_token(relay, base_env) -> str:
    """A user JWT (the first user of a tenant of its own: its admin)."""
    now = int(time.time())
    claims = {"sub": f"openai-admin-{secrets.token_hex(4)}", "aud": "authenticated", "iat": now, "exp": now + 7200}
    return jwt.encode(claims, base_env["JWT_SECRET"], algorithm="HS256")


def new_key(relay: Stack, admin_token: str, scopes: tuple[str, ...] = ("chat",)) -> str:
    response = requests.post(f"{relay.base_url}/api/v1/api_keys", json={"name": "openai sdk", "scopes": list(scopes)},
                             headers=bearer(admin_token), timeout=10)  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()["key"]


@pytest.fixture
def relay_key(relay, admin_token) -> str:
    """A Relay API key with scope chat: a principal of this test's own."""
    return new_key(relay, admin_token)


@pytest.fixture
def client(relay, relay_key) -> openai.OpenAI:
    """The official SDK pointed at Relay, without retries (tests that want them make their own)."""
    return openai.OpenAI(base_url=f"{relay.base_url}/v1", api_key=relay_key, max_retries=0, timeout=30)


def wait_for_window() -> None:
    """Let this principal's stream_user window empty (tests that count their own requests)."""
    time.sleep(STREAM_USER[1] + 0.1)
