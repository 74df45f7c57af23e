"""GET /metrics: METRICS_TOKEN, and labels no client can multiply."""

from __future__ import annotations

import hmac
import secrets

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.observability import SERVED_METHODS
from tests.auth.helpers import assert_error

HTTP_FAMILIES = ("http_requests", "http_request_duration_seconds")


def series(client, headers=None) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Family name -> the label sets of its samples, from a real scrape."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200
    found: dict[str, set] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}  # buckets are fixed, not per request
            found.setdefault(family.name, set()).add(tuple(sorted(labels.items())))
    return found


def test_made_up_methods_and_paths_never_mint_series(app):
    client = app.test_client()

    made_up: set[str] = set()

    def flood(start: int, count: int) -> None:
        for n in range(start, start + count):
            paths = (f"/api/v1/models/{n}", f"/no/such/{secrets.token_hex(4)}", f"/x{n}")
            made_up.update(paths)
            assert client.open("/api/v1/models", method=f"ZZFOO{n}").status_code == 405
            assert client.get(paths[0]).status_code == 404
            assert client.get(paths[1]).status_code == 404
            assert client.open(paths[2], method=f"Q{n}").status_code in (404, 405)
            assert client.delete("/api/v1/models").status_code == 405

    series(client)  # the scrape itself is a request: its own series exists before the comparison
    flood(0, 10)
    before = series(client)
    flood(10, 40)
    after = series(client)
    for family in HTTP_FAMILIES:
        assert after[family] == before[family], family  # 200 more odd requests: not one new series
        for labels in after[family]:
            named = dict(labels)
            assert named["method"] in SERVED_METHODS | {"other"}, named
            assert named["endpoint"] not in made_up, named  # route templates, never a raw path
    counted = {(dict(labels)["method"], dict(labels)["endpoint"]) for labels in after["http_requests"]}
    assert {("other", "unmatched"), ("GET", "unmatched"), ("DELETE", "unmatched")} <= counted


@pytest.fixture
def guarded(make_app):
    token = secrets.token_urlsafe(32)
    return make_app(METRICS_TOKEN=token).test_client(), token


def test_the_metrics_token_is_required_when_set(guarded):
    client, token = guarded
    response = client.get("/metrics")
    assert_error(response, 401, "missing_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="relay"'
    for header in (f"Bearer {token[:-1]}", f"Bearer {token}x", f"Basic {token}", token, "Bearer "):
        assert_error(client.get("/metrics", headers={"Authorization": header}), 401, "invalid_token")
    for header in (f"Bearer {token}", f"bearer {token}"):
        response = client.get("/metrics", headers={"Authorization": header})
        assert response.status_code == 200
        assert "http_requests_total" in response.get_data(as_text=True)


def test_the_metrics_token_is_not_asked_for_when_unset(client):
    assert client.get("/metrics").status_code == 200


def test_the_metrics_token_is_compared_in_constant_time(guarded, monkeypatch):
    """hmac.compare_digest on equal-length digests: neither the token's content nor its length leaks."""
    client, token = guarded
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("app.api.metrics.hmac.compare_digest", spy)
    for supplied in ("x", token, "y" * 500):
        client.get("/metrics", headers={"Authorization": f"Bearer {supplied}"})
    assert len(compared) == 3
    assert {len(a) for a, _ in compared} == {len(b) for _, b in compared} == {32}


def test_scrapes_carry_dependency_and_budget_gauges(make_app, key_prefix):
    """The alert rules' inputs (deploy/prometheus/alerts.yml): dependencies up, spend against the budgets."""
    app = make_app(REDIS_KEY_PREFIX=f"{key_prefix}gauges-{secrets.token_hex(3)}:", DAILY_SPEND_CEILING_USD="2.5")
    day = int(app.extensions["relay.streams"].journal.client.time()[0] // 86400)
    prefix = app.config["REDIS_KEY_PREFIX"]
    app.extensions["relay.streams"].journal.client.set(f"{prefix}budget:global:{day}", 1_250_000)  # $1.25
    families = {f.name: f for f in text_string_to_metric_families(app.test_client().get("/metrics").get_data(True))}
    up = {s.labels["dependency"]: s.value for s in families["relay_dependency_up"].samples}
    assert up["redis"] == 1 and up["database"] == 1 and up["workers"] == 0  # no worker runs in this test
    spent = {s.labels["budget"]: s.value for s in families["relay_budget_spent_usd"].samples}
    ceiling = {s.labels["budget"]: s.value for s in families["relay_budget_ceiling_usd"].samples}
    assert spent == {"daily": 1.25, "anonymous": 0.0}
    assert ceiling == {"daily": 2.5, "anonymous": 5.0}
