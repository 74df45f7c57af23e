"""Every endpoint demands scopes (or is public on purpose); privileged ones refuse lesser principals."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from app.api import BLUEPRINTS
from tests.auth.helpers import assert_error

# Public on purpose: liveness, metrics (own token), minting anonymous tokens, the model list, the widget,
# the OpenAPI document, and inbound webhooks (their Standard Webhooks signature is the credential).
PUBLIC = {
    "health.health",
    "health.ready",
    "metrics.metrics",
    "openapi.document",
    "sessions.anon_session",
    "sessions.models",
    "widget.index",
    "webhooks.relay",
}


def _routes() -> list[tuple[str, str, str, frozenset[str] | None]]:
    """(endpoint, method, sample path, required scopes) of every route the blueprints define."""
    app = Flask("routes-only")
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?[^<>]+>", "sample_id_0001", rule.rule)
        scopes = getattr(app.view_functions[rule.endpoint], "required_scopes", None)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, path, scopes))
    return found


ROUTES = _routes()
PRIVILEGED = [(e, m, p, s) for e, m, p, s in ROUTES if s and s - {"chat"}]
ADMIN = [(e, m, p, s) for e, m, p, s in ROUTES if s and "admin" in s]


def _id(route) -> str:
    return f"{route[1]} {route[2]}"


def test_every_endpoint_requires_scopes_or_is_public_on_purpose():
    unguarded = sorted({endpoint for endpoint, _, _, scopes in ROUTES if scopes is None} - PUBLIC)
    assert unguarded == [], f"endpoints without require_scopes: {unguarded}"
    assert ADMIN, "the admin endpoints were not found"


@pytest.mark.parametrize("route", [route for route in ROUTES if route[3] is not None], ids=_id)
def test_no_token_is_401_everywhere_but_public(client, route):
    _, method, path, _ = route
    response = client.open(path, method=method)
    if path.startswith("/v1/"):  # the OpenAI-compatible endpoints answer in OpenAI's error shape
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "invalid_api_key"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="relay"'
        return
    assert_error(response, 401, "missing_token")


@pytest.mark.parametrize("route", PRIVILEGED, ids=_id)
def test_anonymous_principals_have_chat_only(client, anon_headers, route):
    _, method, path, scopes = route
    response = client.open(path, method=method, headers=anon_headers)
    assert not path.startswith("/v1/"), "the OpenAI-compatible endpoints need scope chat only"
    error = assert_error(response, 403, "insufficient_scope")
    assert set(error["details"]["required"]) == set(scopes)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="relay", error="insufficient_scope", scope="')


@pytest.mark.parametrize("route", ADMIN, ids=_id)
def test_admin_endpoints_refuse_members_and_chat_keys(client, member_headers, api_key_headers, route):
    _, method, path, _ = route
    for headers in (member_headers, api_key_headers):
        assert_error(client.open(path, method=method, headers=headers, json={}), 403, "insufficient_scope")


@pytest.mark.parametrize("route", ADMIN, ids=_id)
def test_admin_endpoints_admit_the_tenant_admin(client, user_a_headers, route):
    _, method, path, _ = route
    response = client.open(path, method=method, headers=user_a_headers, json={})
    assert response.status_code not in (401, 403, 500), response.get_json()


def test_insufficient_scope_is_audited_for_the_tenant(client, member_headers, user_a_headers):
    assert_error(client.get("/admin/audit", headers=member_headers), 403, "insufficient_scope")
    events = client.get("/admin/audit?type=insufficient_scope", headers=user_a_headers).get_json()["events"]
    assert len(events) == 1 and events[0]["endpoint"] == "GET /admin/audit"
