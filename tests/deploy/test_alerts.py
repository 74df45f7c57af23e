"""deploy/prometheus/alerts.yml: valid for promtool, every rule unit-tested, only metrics Relay exports."""

from __future__ import annotations

import subprocess

import yaml

from tests.deploy.promql import check_syntax, exported_metrics, metric_names, promtool
from tests.support import ROOT

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
UNIT_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
# Metrics the rules need that Relay does not export yet (named in the rules' comments), and Prometheus' own `up`.
PROPOSED = {"relay_dependency_up", "relay_budget_spent_usd", "relay_budget_ceiling_usd"}
PROMETHEUS_OWN = {"up"}


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_check_rules_accepts_them():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_the_issue_s_alerts_are_there():
    names = {rule["alert"] for rule in rules()}
    assert {
        "RelayAuthFailures", "RelayRateLimitAbuse", "RelaySecurityViolation", "RelaySecurityViolationHigh",
        "RelayStreamErrors", "RelaySlowFirstChunk", "RelayNoWorker", "RelayDependencyDown", "RelayBudgetNearlySpent",
    } <= names  # fmt: skip


def test_every_rule_is_unit_tested_firing_and_quiet():
    cases = [
        case
        for path in UNIT_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']}: no unit test where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']}: no unit test where it stays quiet"


def test_promtool_unit_tests_pass():
    assert UNIT_TESTS
    result = subprocess.run(
        [promtool(), "test", "rules", *map(str, UNIT_TESTS)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_read_only_metrics_relay_exports(tmp_path):
    exported = exported_metrics()
    expressions = [rule["expr"] for rule in rules()]
    assert check_syntax(expressions, tmp_path).returncode == 0
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        unknown = names - exported - PROPOSED - PROMETHEUS_OWN
        assert not unknown, f"{rule['alert']} reads {unknown}, which Relay does not export"


def test_metric_name_extraction():
    expr = (
        'sum by (type) (increase(security_violations_total{severity!="high", x=~"a|b"}[5m]) > 0 '
        "or (security_violations_total unless security_violations_total offset 5m)) "
        "and on (le) histogram_quantile(0.95, sum by (le) (rate(relay_stream_ttft_seconds_bucket[$__rate_interval])))"
    )
    assert metric_names(expr) == {"security_violations_total", "relay_stream_ttft_seconds_bucket"}
    assert {"auth_failures_total", "relay_stream_ttft_seconds_bucket", "relay_streams_active"} <= exported_metrics()
    assert "auth_failures" not in exported_metrics()
