"""flask relay validate against a running Relay: every check passes on a safe one; on one with a
wildcard CORS origin and /metrics open, exactly those two checks fail."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from app.validate import FAIL, PASS, SKIP, Target
from app.validate._surface import _leaks, check_plain_http
from tests.conftest import Stack, stack_env

pytestmark = pytest.mark.slow

CHECK_NAMES = {
    "auth_required", "anon_token", "stream_done", "resume", "invalid_token", "expired_token", "message_too_long",
    "unknown_model", "cors", "security_headers", "health_leaks", "metrics_closed", "plain_http",
    "rate_limit_headers", "retry_after",
}  # fmt: skip
# The contract's global_ip (100/60 s) would refuse a validator run right after another; 120/60 leaves
# room for one run's own requests and a 429 well within --max-requests.
GLOBAL_IP = "120/60"


def start_relay(tmp_path, base_env, provider: str, key_prefix: str, name: str, **settings: str) -> Stack:
    log_dir = tmp_path / name
    log_dir.mkdir()
    env = stack_env(
        base_env,
        provider,
        log_dir,
        RELAY_ENV="local",
        DEFAULT_MODEL="gpt-4o-mini",
        LIMIT_GLOBAL_IP=GLOBAL_IP,
        REDIS_KEY_PREFIX=f"{key_prefix}{name}-{secrets.token_hex(3)}:",  # limits of its own
        LOG_LEVEL="WARNING",
        **settings,
    )
    running = Stack(env, log_dir)
    try:
        running.start_web(port=int(env["PORT"]))
        running.start_worker("remote-worker", "gevent", "generate,webhooks", 20)
    except BaseException:
        running.stop()
        raise
    return running


@pytest.fixture(scope="module")
def safe_relay(tmp_path_factory, base_env, fake_openai, key_prefix) -> Iterator[tuple[Stack, str]]:
    metrics_token = secrets.token_urlsafe(24)
    tmp = tmp_path_factory.mktemp("validate-safe")
    running = start_relay(tmp, base_env, fake_openai, key_prefix, "safe",
                          METRICS_TOKEN=metrics_token, ALLOWED_ORIGINS="https://app.example.com")  # fmt: skip
    yield running, metrics_token
    running.stop()


@pytest.fixture(scope="module")
def unsafe_relay(tmp_path_factory, base_env, fake_openai, key_prefix) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("validate-unsafe")
    running = start_relay(tmp, base_env, fake_openai, key_prefix, "unsafe", METRICS_TOKEN="", ALLOWED_ORIGINS="*")
    yield running
    running.stop()


def validate(app, *args: str):
    return app.test_cli_runner().invoke(args=["relay", "validate", *args])


def outcome(result) -> dict:
    data = json.loads(result.stdout)
    assert {check["name"] for check in data["checks"]} == CHECK_NAMES
    return data


def test_a_safe_relay_passes_every_check(app, safe_relay, user_token):
    relay, metrics_token = safe_relay
    # Without --token: the 429 check is skipped (and not counted), the rest pass, one line each.
    result = validate(app, "--host", relay.base_url, "--metrics-token", metrics_token)
    lines = result.stdout.splitlines()
    assert result.exit_code == 0, result.stdout
    assert lines[-1] == f"Passed: {len(CHECK_NAMES) - 1}/{len(CHECK_NAMES) - 1}"
    assert len(lines) == len(CHECK_NAMES) + 1
    assert [line.split()[1] for line in lines if line.startswith("SKIP")] == ["retry_after"]
    assert metrics_token not in result.stdout

    # With --token of a test principal: every check, the 429 one included, passes.
    token = user_token(f"validate-{secrets.token_hex(4)}")
    result = validate(app, "--host", relay.base_url, "--metrics-token", metrics_token, "--token", token, "--json")
    data = outcome(result)
    assert result.exit_code == 0, json.dumps(data, indent=2)
    assert data["ok"] and data["passed"] == data["total"] == len(CHECK_NAMES)
    assert {check["status"] for check in data["checks"]} == {PASS}
    retry = next(check for check in data["checks"] if check["name"] == "retry_after")
    assert "429 rate_limited" in retry["detail"] and "limit global_ip" in retry["detail"]
    assert token not in result.stdout


def test_an_unsafe_relay_fails_exactly_the_matching_checks(app, unsafe_relay, user_token):
    token = user_token(f"validate-{secrets.token_hex(4)}")
    result = validate(app, "--host", unsafe_relay.base_url, "--token", token, "--json")
    data = outcome(result)
    assert result.exit_code == 1
    failed = {check["name"]: check["detail"] for check in data["checks"] if check["status"] == FAIL}
    assert set(failed) == {"cors", "metrics_closed"}, json.dumps(data, indent=2)
    assert "Access-Control-Allow-Origin: https://evil.example" in failed["cors"]
    assert "200" in failed["metrics_closed"]
    assert data["passed"] == len(CHECK_NAMES) - 2 and data["total"] == len(CHECK_NAMES) and not data["ok"]


def test_an_unreachable_host_fails_every_check_without_a_traceback(app):
    result = validate(app, "--host", "http://127.0.0.1:9", "--timeout", "1", "--json")
    data = json.loads(result.stdout)
    statuses = {check["name"]: check["status"] for check in data["checks"]}
    assert result.exit_code == 1 and data["passed"] == 1 and statuses.pop("plain_http") == PASS  # a loopback host
    assert statuses.pop("retry_after") == SKIP
    assert set(statuses.values()) == {FAIL}
    assert all("ConnectionError" in check["detail"] for check in data["checks"] if check["name"] == "cors")


def test_a_bad_host_is_a_usage_error(app):
    result = validate(app, "--host", "relay.example.com")
    assert result.exit_code == 2 and "--host" in result.output


@pytest.mark.parametrize(
    ("body", "leak"),
    [
        ({"status": "ok", "redis_url": "redis://:pw@cache.internal:6379/0"}, "redis_url"),
        ({"status": "ok", "checks": {"database": "failed: could not connect to 10.0.0.5"}}, "an IP address"),
        ({"status": "ok", "checks": {"redis": "ok (redis 7.2.4)"}}, "a dependency"),
        ({"status": "ok", "build": "relay 1.2.3 on python 3.11.2"}, "a version number"),
        ({"status": "ok", "note": "relay_sk_" + "a" * 40}, "a credential"),
    ],
)
def test_health_leaks_are_found(body, leak):
    assert any(leak in found for found in _leaks(body, "/health"))


def test_the_contract_s_health_bodies_leak_nothing():
    assert _leaks({"status": "ok", "version": "0.1.0", "uptime_s": 12.5, "secured": True, "jwt_enabled": True},
                  "/health") == []  # fmt: skip
    ready = {"status": "ready", "checks": {"redis": "ok", "database": "ok", "workers": "none", "local_model": "ok"}}
    assert _leaks(ready, "/health/ready") == []


@pytest.mark.parametrize(
    ("host", "status"),
    [("http://127.0.0.1:5000", PASS), ("http://localhost:5000", PASS), ("http://relay.example.com", FAIL)],
)
def test_plain_http_hosts(host, status):
    result = check_plain_http(Target(host))
    assert (result.name, result.status) == ("plain_http", status)
