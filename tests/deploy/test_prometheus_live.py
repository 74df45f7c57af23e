"""A real Prometheus (Debian's package) scrapes a running Relay every second with the shipped rules
(a copy with every `for:` shortened): bad tokens make RelayAuthFailures fire, seen through its HTTP API."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import Stack, stack_env
from tests.support import ROOT, Process, free_port, wait_until

pytestmark = pytest.mark.slow

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_DEADLINE_S = 120  # the rule looks at 5 minutes of a counter: 150 failures in a few scrapes suffice


@pytest.fixture
def relay(tmp_path, base_env, fake_openai, key_prefix) -> Iterator[tuple[str, str]]:
    """One gunicorn process with METRICS_TOKEN set, its auth-failure limit off (the test sends hundreds)."""
    metrics_token = secrets.token_urlsafe(24)
    log_dir = tmp_path / "relay"
    log_dir.mkdir()
    env = stack_env(
        base_env,
        fake_openai,
        log_dir,
        METRICS_TOKEN=metrics_token,
        LIMIT_AUTH_FAILURES="0",
        REDIS_KEY_PREFIX=f"{key_prefix}prom-{secrets.token_hex(3)}:",
        LOG_LEVEL="WARNING",
    )
    running = Stack(env, log_dir)
    try:
        yield running.start_web(port=int(env["PORT"])), metrics_token
    finally:
        running.stop()


@pytest.fixture
def prometheus(tmp_path, relay) -> Iterator[str]:
    """Prometheus on a private port and storage directory, scraping the Relay above every second."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: apt-get install -y prometheus (.ci/run does it)"
    relay_url, metrics_token = relay
    rules = tmp_path / "alerts.yml"
    rules.write_text(re.sub(r"(?m)^(\s+)for: \S+$", r"\1for: 2s", RULES.read_text()))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "relay",
                "static_configs": [{"targets": [relay_url.removeprefix("http://")]}],
                "authorization": {"type": "Bearer", "credentials": metrics_token},
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    argv = [
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    process = Process("prometheus", argv, {"PATH": "/usr/bin:/bin"}, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{base}/-/ready", timeout=1).ok, 30, "prometheus ready", process)
        wait_until(lambda: _target_health(base) == "up", 30, "prometheus to scrape relay", process)
        yield base
    finally:
        process.stop()


def _target_health(base: str) -> str | None:
    targets = requests.get(f"{base}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
    return targets[0]["health"] if targets else None


def _alerts(base: str, name: str) -> list[dict]:
    alerts = requests.get(f"{base}/api/v1/alerts", timeout=2).json()["data"]["alerts"]
    return [alert for alert in alerts if alert["labels"]["alertname"] == name]


def _series_seen(base: str) -> bool:
    result = requests.get(f"{base}/api/v1/query", params={"query": "auth_failures_total"}, timeout=2).json()
    return bool(result["data"]["result"])


def test_bad_tokens_fire_the_auth_failure_alert(relay, prometheus):
    relay_url, _ = relay
    rule_names = {
        rule["name"]
        for group in requests.get(f"{prometheus}/api/v1/rules", timeout=2).json()["data"]["groups"]
        for rule in group["rules"]
    }
    assert "RelayAuthFailures" in rule_names
    assert _alerts(prometheus, "RelayAuthFailures") == []  # quiet before the attack

    def fail(count: int) -> None:
        for _ in range(count):
            response = requests.get(
                f"{relay_url}/api/v1/conversations", headers={"Authorization": "Bearer forged.token.x"}, timeout=5
            )
            assert response.status_code == 401

    fail(1)  # the counter's series must exist before the burst: rate() cannot see its first sample
    wait_until(lambda: _series_seen(prometheus), 30, "auth_failures_total in prometheus")
    deadline = time.monotonic() + ALERT_DEADLINE_S
    firing: list[dict] = []
    while time.monotonic() < deadline and not firing:
        fail(50)
        firing = [a for a in _alerts(prometheus, "RelayAuthFailures") if a["state"] == "firing"]
    assert firing, (
        f"RelayAuthFailures not firing after {ALERT_DEADLINE_S} s: {_alerts(prometheus, 'RelayAuthFailures')}"
    )
    assert firing[0]["labels"] == {"alertname": "RelayAuthFailures", "severity": "warning"}
    assert float(firing[0]["value"]) > 0.5
