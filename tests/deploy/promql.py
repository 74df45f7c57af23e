"""PromQL for the deploy tests: the metric names an expression reads, the names Relay exports,
and a syntax check by Prometheus' own parser (promtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from app import observability

# Grafana's interval variables, replaced by a duration so promtool can parse the expression.
GRAFANA_VARIABLES = re.compile(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}")
KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
    }
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
    "summary": ("_sum", "_count", ""),
}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install -y prometheus (.ci/run does it)"
    return path


def concrete(expr: str) -> str:
    """The expression with Grafana's interval variables replaced by 5m."""
    return GRAFANA_VARIABLES.sub("5m", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords, labels or durations)."""
    text = _STRINGS.sub('""', concrete(expr))
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGES.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def exported_metrics() -> set[str]:
    """Every sample name Relay's metrics (app/observability.py) expose: counters' `_total`,
    histograms' `_bucket`/`_sum`/`_count`, gauges' own name."""
    names = set()
    for value in vars(observability).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def check_syntax(expressions: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Parse every expression with promtool (as recording rules); its answer, for the caller to assert on."""
    rules = [{"record": f"relay:check_{index}", "expr": concrete(expr)} for index, expr in enumerate(expressions)]
    path = tmp_path / "expressions.yml"
    path.write_text(json.dumps({"groups": [{"name": "expressions", "rules": rules}]}))  # JSON is YAML
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
