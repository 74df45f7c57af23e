"""deploy/grafana/relay.json: a current Grafana dashboard whose every query parses and reads only Relay's metrics."""

from __future__ import annotations

import json

from tests.deploy.promql import check_syntax, exported_metrics, metric_names
from tests.support import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "relay.json"
MIN_SCHEMA_VERSION = 36  # Grafana 9+; 39 is Grafana 10.4/11's


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def targets() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def test_a_current_dashboard_with_a_prometheus_datasource_variable():
    board = dashboard()
    assert board["schemaVersion"] >= MIN_SCHEMA_VERSION and board["uid"] and board["title"] == "Relay"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])


def test_it_shows_what_operators_watch():
    read = {name for _, expr in targets() for name in metric_names(expr)}
    assert {
        "relay_streams_active", "relay_streams_total", "relay_stream_ttft_seconds_bucket", "http_requests_total",
        "rate_limit_hits_total", "relay_llm_cost_usd_total", "auth_failures_total", "security_violations_total",
    } <= read  # fmt: skip


def test_every_query_parses_and_reads_only_exported_metrics(tmp_path):
    queries = targets()
    assert queries
    result = check_syntax([expr for _, expr in queries], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    exported = exported_metrics()
    for title, expr in queries:
        names = metric_names(expr)
        assert names, f"{title}: {expr} reads no metric"
        assert names <= exported, f"{title}: {sorted(names - exported)} is not a metric Relay exports"
