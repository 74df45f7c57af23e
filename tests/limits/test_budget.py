"""Budgets: reserve the worst case atomically, settle to the real cost, expire what never settles."""

from __future__ import annotations

import time

import pytest
from flask import g

from app.catalog import BUILT_IN
from app.errors import APIError
from app.limits import admit_stream, budget, settle
from app.principal import ANONYMOUS_SCOPES, Principal
from app.tokens import count_prompt_tokens
from tests.limits.conftest import anon_token, assert_429, post_stream

GPT_4O = next(spec for spec in BUILT_IN if spec.id == "gpt-4o")
OPENAI = {"OPENAI_API_KEY": "sk-test-not-a-real-key", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}


def spent(app, *scope: str) -> float:
    with app.app_context():
        return budget.spent_today_usd(*scope)


def test_reservation_is_the_smaller_of_cap_and_worst_case_and_at_least_the_prompt():
    messages = [{"role": "user", "content": "héllo"}]
    prompt_tokens = count_prompt_tokens(GPT_4O, messages)
    worst = prompt_tokens * 2.50 / 1e6 + 100 * 10.00 / 1e6
    assert budget.reservation_usd(GPT_4O, messages, 100, 0.50) == pytest.approx(worst)
    assert budget.reservation_usd(GPT_4O, messages, 2000, 0.01) == 0.01
    assert budget.reservation_usd(GPT_4O, messages, 2000, 1e-13) == pytest.approx(prompt_tokens * 2.50 / 1e6)
    assert budget.to_micro(0.00013) == 130 and budget.to_micro(0.0000001) == 1


def test_a_stream_reserves_its_worst_case_in_every_budget_it_draws_on(limits_app):
    app = limits_app(**OPENAI)
    client = app.test_client()
    response = post_stream(client, anon_token(app), model="gpt-4o", max_tokens=100, message="hello")
    assert response.status_code == 200
    expected = (
        budget.to_micro(GPT_4O.cost(count_prompt_tokens(GPT_4O, [{"role": "user", "content": "hello"}]), 100)) / 1e6
    )
    assert spent(app, "global") == pytest.approx(expected)
    assert spent(app, "anon") == pytest.approx(expected)


def test_budget_exceeded_is_a_429_until_midnight_utc(limits_app):
    app = limits_app(ANON_DAILY_BUDGET_USD="0.05", **OPENAI)
    client = app.test_client()
    for n in range(2):
        assert post_stream(client, anon_token(app), f"10.7.0.{n}", model="gpt-4o", cost_cap_usd=0.02).status_code == 200
    response = post_stream(client, anon_token(app), "10.7.0.9", model="gpt-4o", cost_cap_usd=0.02)
    assert_429(response, "budget_exceeded", "anon_daily_budget")
    to_midnight = 86400 - time.time() % 86400
    assert abs(int(response.headers["Retry-After"]) - to_midnight) <= 2
    assert spent(app, "anon") == pytest.approx(0.04)
    # A cheaper request still fits; a free model always does.
    assert post_stream(client, anon_token(app), "10.7.0.8", model="gpt-4o", cost_cap_usd=0.01).status_code == 200
    assert post_stream(client, anon_token(app), "10.7.0.7", model="local-smollm2").status_code == 200


def test_the_global_ceiling_holds_for_everyone(limits_app):
    app = limits_app(DAILY_SPEND_CEILING_USD="0.03", **OPENAI)
    client = app.test_client()
    assert post_stream(client, anon_token(app), "10.8.0.1", model="gpt-4o", cost_cap_usd=0.02).status_code == 200
    response = post_stream(client, anon_token(app), "10.8.0.2", model="gpt-4o", cost_cap_usd=0.02)
    assert_429(response, "budget_exceeded", "daily_spend_ceiling")


def test_a_tenant_budget_is_the_tenants_own(limits_app):
    app = limits_app(TENANT_DAILY_BUDGET_USD="0.03", **OPENAI)
    spec = app.extensions["relay.streams"].catalog.get("gpt-4o")
    messages = [{"role": "user", "content": "hi"}]

    def admit(tenant: str, stream_id: str):
        principal = Principal(f"user:{stream_id}", "user", stream_id, tenant, ANONYMOUS_SCOPES)
        with app.test_request_context("/api/v1/stream", method="POST"):
            g.relay_app_limits = []
            return admit_stream(principal, spec, stream_id, messages, 2000, 0.02)

    assert admit("tenant-a", "stream-a-0001").reserved
    with pytest.raises(APIError) as refused:
        admit("tenant-a", "stream-a-0002")
    assert refused.value.error_code == "budget_exceeded"
    assert refused.value.details["limit"] == "tenant_daily_budget"
    assert admit("tenant-b", "stream-b-0001").reserved
    assert spent(app, "tenant", "tenant-a") == pytest.approx(0.02)


def test_settling_charges_the_real_cost_once(limits_app):
    app = limits_app(**OPENAI)
    client = app.test_client()
    response = post_stream(client, anon_token(app), model="gpt-4o", cost_cap_usd=0.02, stream_id="settle-me-0001")
    assert response.status_code == 200 and spent(app, "global") == pytest.approx(0.02)
    with app.app_context():
        settle("settle-me-0001", 0.000131)
        assert spent(app, "global") == pytest.approx(0.000131)
        settle("settle-me-0001", 0.5)  # a redelivered job: already settled, nothing changes
        assert spent(app, "global") == pytest.approx(0.000131)


def test_attaching_to_ones_own_stream_is_not_charged_again(limits_app):
    app = limits_app(**OPENAI)
    client = app.test_client()
    token = anon_token(app)
    for _ in range(3):
        response = post_stream(client, token, model="gpt-4o", cost_cap_usd=0.02, stream_id="attach-me-0001")
        assert response.status_code == 200
    assert spent(app, "anon") == pytest.approx(0.02)
    other = post_stream(client, anon_token(app), model="gpt-4o", cost_cap_usd=0.02, stream_id="attach-me-0001")
    assert other.status_code == 409
    assert spent(app, "anon") == pytest.approx(0.02)


def test_a_reservation_that_never_settles_expires(limits_app):
    app = limits_app(BUDGET_RESERVATION_SECONDS="1", **OPENAI)
    client = app.test_client()
    assert (
        post_stream(client, anon_token(app), model="gpt-4o", cost_cap_usd=0.02, stream_id="crashed-0001").status_code
        == 200
    )
    time.sleep(1.2)
    assert post_stream(client, anon_token(app), model="gpt-4o", cost_cap_usd=0.01).status_code == 200
    assert spent(app, "global") == pytest.approx(0.01)  # the crashed work's hold was released
    with app.app_context():
        settle("crashed-0001", 0.003)  # it finished after all: its real cost is still recorded
    assert spent(app, "global") == pytest.approx(0.013)
