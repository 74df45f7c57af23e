"""Per-endpoint limits for the routes other packages add (ai_plan, ai_execute, actions_execute per
tenant; webhooks_in per IP): `app.limits.limit(name, key)` on the view, counted by flask-limiter."""

from __future__ import annotations

from app.auth import require_scopes
from app.limits import client_ip, limit, tenant_key
from tests.limits.conftest import assert_429


@require_scopes("chat")
@limit("ai_plan", tenant_key)
def _plan():
    return {"planned": True}


@limit("webhooks_in", client_ip)
def _webhook():
    return {"status": "accepted"}


def test_a_tenant_limit_counts_the_tenant_not_the_address(limits_app, user_a_headers, user_b_headers):
    app = limits_app(LIMIT_AI_PLAN="2/60")
    app.add_url_rule("/test/plan", "test_plan", _plan, methods=["POST"])
    client = app.test_client()
    for n in range(2):
        response = client.post("/test/plan", headers=user_a_headers, environ_base={"REMOTE_ADDR": f"10.50.0.{n}"})
        assert response.status_code == 200, response.get_json()
        assert response.headers["X-RateLimit-Limit"] == "2"
    assert_429(client.post("/test/plan", headers=user_a_headers), "rate_limited", "ai_plan")
    assert client.post("/test/plan", headers=user_b_headers).status_code == 200  # another tenant


def test_an_ip_limit_on_an_unauthenticated_endpoint(limits_app):
    app = limits_app(LIMIT_WEBHOOKS_IN="1/60")
    app.add_url_rule("/test/webhook", "test_webhook", _webhook, methods=["POST"])
    client = app.test_client()
    assert client.post("/test/webhook").status_code == 200
    assert_429(client.post("/test/webhook"), "rate_limited", "webhooks_in")
    assert client.post("/test/webhook", environ_base={"REMOTE_ADDR": "10.50.1.1"}).status_code == 200
