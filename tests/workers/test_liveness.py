"""Real Celery worker processes: each serving process keeps its liveness key while it lives
(and loses it within WORKER_LOST_SECONDS of a SIGKILL), and a local-model worker proves its
model at start-up, which /health/ready reports as `local_model`."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import Stack, stack_env
from tests.support import wait_until

pytestmark = pytest.mark.slow

WORKER_LOST_SECONDS = 3.0


@pytest.fixture(scope="module")
def workers_env(tmp_path_factory, base_env, fake_openai) -> tuple[dict[str, str], Path]:
    log_dir = tmp_path_factory.mktemp("liveness")
    env = stack_env(base_env, fake_openai, log_dir, WORKER_LOST_SECONDS=str(WORKER_LOST_SECONDS))
    return env, log_dir


@pytest.fixture
def workers(workers_env) -> Iterator[Stack]:
    env, log_dir = workers_env
    running = Stack(env, log_dir)
    try:
        yield running
    finally:
        running.stop()


def prefix_of(base_env: dict[str, str], name: str) -> str:
    return f"{base_env['REDIS_KEY_PREFIX']}{name}-{secrets.token_hex(3)}:"


def alive_keys(store: redis.Redis, prefix: str) -> list[str]:
    return sorted(store.scan_iter(match=f"{prefix}worker:*:alive", count=1000))


def pid_of(key: str) -> int:
    return int(key.rsplit(":", 2)[-2])


def local_model_health(make_app, prefix: str) -> str:
    app = make_app(REDIS_KEY_PREFIX=prefix, HEALTH_WORKER_CACHE_SECONDS="0")
    response = app.test_client().get("/health/ready")
    assert response.status_code == 200  # the local model never fails readiness
    return response.get_json()["checks"]["local_model"]


def gone_within(store: redis.Redis, key: str, seconds: float) -> float:
    """Seconds until `key` disappears; fails after `seconds` (plus scheduling slack)."""
    started = time.monotonic()
    while store.exists(key):
        elapsed = time.monotonic() - started
        assert elapsed < seconds + 0.5, f"{key} still there {elapsed:.1f} s after the process died"
        time.sleep(0.05)
    return time.monotonic() - started


def stays_while_alive(store: redis.Redis, key: str, seconds: float) -> None:
    """`key` exists at every look for `seconds` (several TTLs: it is renewed, not just set once)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert store.pttl(key) > 0, f"{key} lapsed while its process was alive"
        time.sleep(0.1)


def test_prefork_child_keeps_its_own_key_and_loses_it_when_killed(workers, redis_client, base_env):
    prefix = prefix_of(base_env, "prefork")
    process = workers.start_worker("live-prefork", "prefork", "generate_local", 1, REDIS_KEY_PREFIX=prefix)
    wait_until(lambda: alive_keys(redis_client, prefix), 20, "the child's liveness key", process)
    [key] = alive_keys(redis_client, prefix)
    child = pid_of(key)
    assert child != process.popen.pid, "the key names the parent, which runs no job"
    stays_while_alive(redis_client, key, 2.5 * WORKER_LOST_SECONDS)

    os.kill(child, signal.SIGKILL)
    took = gone_within(redis_client, key, WORKER_LOST_SECONDS)
    print(f"prefork child's key gone {took:.2f} s after SIGKILL (WORKER_LOST_SECONDS={WORKER_LOST_SECONDS})")
    # The pool replaces the child; the new one has a key of its own.
    wait_until(lambda: any(pid_of(k) not in (child, process.popen.pid) for k in alive_keys(redis_client, prefix)),
               30, "the new child's key", process)  # fmt: skip


def test_gevent_worker_keeps_its_key_and_loses_it_when_killed(workers, redis_client, base_env):
    prefix = prefix_of(base_env, "gevent")
    process = workers.start_worker("live-gevent", "gevent", "generate", 10, REDIS_KEY_PREFIX=prefix)
    wait_until(lambda: alive_keys(redis_client, prefix), 20, "the worker's liveness key", process)
    [key] = alive_keys(redis_client, prefix)
    assert pid_of(key) == process.popen.pid  # a green pool runs its jobs in the worker process itself
    stays_while_alive(redis_client, key, 2.5 * WORKER_LOST_SECONDS)

    process.signal(signal.SIGKILL)
    took = gone_within(redis_client, key, WORKER_LOST_SECONDS)
    print(f"gevent worker's key gone {took:.2f} s after SIGKILL")


def test_local_model_ok_with_the_real_model(workers, redis_client, base_env, make_app):
    prefix = prefix_of(base_env, "local-ok")
    assert local_model_health(make_app, prefix) == "none"  # no local worker has reported
    process = workers.start_worker(
        "local-ok", "prefork", "generate_local", 1, REDIS_KEY_PREFIX=prefix, RELAY_PRELOAD_LOCAL_MODEL="1"
    )
    wait_until(lambda: local_model_health(make_app, prefix) == "ok", 60, "local_model ok", process)
    assert "local model ready" in process.log_path.read_text(errors="replace")


def test_local_model_failed_with_a_file_that_is_not_a_model(workers, redis_client, base_env, make_app, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a GGUF model\n" * 64)
    prefix = prefix_of(base_env, "local-failed")
    process = workers.start_worker(
        "local-failed", "prefork", "generate_local", 1,
        REDIS_KEY_PREFIX=prefix, RELAY_PRELOAD_LOCAL_MODEL="1", LOCAL_MODEL_PATH=str(broken),
    )  # fmt: skip
    wait_until(lambda: local_model_health(make_app, prefix) == "failed", 60, "local_model failed", process)
    assert process.alive()  # the worker stays up; its jobs end provider_error
    workers.stop()
    # A dead worker's record expires with it.
    wait_until(lambda: local_model_health(make_app, prefix) == "none", 2 * WORKER_LOST_SECONDS, "record to expire")
