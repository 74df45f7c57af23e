"""GET /api/v1/usage (the caller's own) and GET /admin/usage (the tenant's), on both databases."""

from __future__ import annotations

import secrets

import pytest

from app.auth import authenticate
from app.db import queries
from app.extensions import database


@pytest.fixture
def app(make_app, db_url):
    return make_app(DATABASE_URL=db_url, LIMIT_ANON_HOURLY="20/3600", LIMIT_ANON_LIFETIME="100")


def principal_of(app, headers):
    with app.test_request_context(headers=headers):
        return authenticate()


def finished_stream(principal, model: str = "gpt-4o-mini", cost: float = 0.001, tokens: tuple = (10, 5)) -> str:
    stream_id = secrets.token_urlsafe(12)
    conversation_id = secrets.token_hex(16)
    with database.session() as session:
        queries.record_user_turn(
            session,
            principal,
            conversation_id=conversation_id,
            new_conversation=True,
            message="hello",
            stream_id=stream_id,
            model=model,
        )
    with database.session() as session:
        queries.finish_stream(
            session,
            stream_id,
            content="hi",
            model=model,
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
            cost_usd=cost,
            finish_reason="stop",
        )
    return stream_id


def test_anonymous_usage_counts_only_its_own_streams(app, client, anon_headers):
    me = principal_of(app, anon_headers)
    other = principal_of(app, {"Authorization": "Bearer " + client.post("/api/v1/anon_session").get_json()["token"]})
    for _ in range(3):
        finished_stream(me, cost=0.002)
    finished_stream(other, cost=1.0)
    body = client.get("/api/v1/usage", headers=anon_headers).get_json()
    assert body == {
        "requests_this_hour": 3,
        "hourly_quota": 20,
        "lifetime_requests": 3,
        "lifetime_quota": 100,
        "spend_today_usd": pytest.approx(0.006),
        "daily_budget_usd": None,
    }


def test_user_usage_has_no_anonymous_quotas_and_the_tenant_budget(app, client, user_a_headers):
    finished_stream(principal_of(app, user_a_headers), cost=0.5)
    body = client.get("/api/v1/usage", headers=user_a_headers).get_json()
    assert body["hourly_quota"] is None and body["lifetime_quota"] is None
    assert body["requests_this_hour"] == 1 and body["spend_today_usd"] == pytest.approx(0.5)
    assert body["daily_budget_usd"] == app.config["TENANT_DAILY_BUDGET_USD"]


def test_usage_takes_no_query_parameters(client, anon_headers):
    response = client.get("/api/v1/usage?user_id=someone-else", headers=anon_headers)
    assert response.status_code == 422


def test_admin_usage_by_day_and_model_only_for_the_callers_tenant(app, client, user_a_headers, user_b_headers):
    a = principal_of(app, user_a_headers)
    finished_stream(a, "gpt-4o-mini", 0.001, (10, 5))
    finished_stream(a, "gpt-4o-mini", 0.002, (20, 7))
    finished_stream(a, "gpt-4o", 0.01, (30, 9))
    finished_stream(principal_of(app, user_b_headers), "gpt-4o-mini", 3.0, (99, 99))
    body = client.get("/admin/usage", headers=user_a_headers).get_json()
    rows = {row["model"]: row for row in body["usage"]}
    assert body["tenant_id"] == a.tenant_id and set(rows) == {"gpt-4o-mini", "gpt-4o"}
    assert rows["gpt-4o-mini"]["requests"] == 2
    assert rows["gpt-4o-mini"]["prompt_tokens"] == 30 and rows["gpt-4o-mini"]["completion_tokens"] == 12
    assert rows["gpt-4o-mini"]["spend_usd"] == pytest.approx(0.003)
    assert rows["gpt-4o"]["requests"] == 1


def test_admin_usage_needs_the_admin_scope(client, anon_headers, member_headers):
    assert client.get("/admin/usage", headers=anon_headers).status_code == 403
    assert client.get("/admin/usage", headers=member_headers).status_code == 403
    assert client.get("/admin/usage?days=0", headers=member_headers).status_code in (403, 422)
