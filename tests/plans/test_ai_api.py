"""POST /ai/plan and POST /ai/execute in this process (no worker): scopes, tenants, limits, budgets,
the timeout, and executing a plan exactly once. tests/plans/test_plan_e2e.py runs the real workers."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from app.db.models import Delivery, Plan
from app.extensions import database
from app.limits import budget
from tests.auth.helpers import assert_error
from tests.limits.conftest import assert_429
from tests.plans.conftest import seed_plan, tenant_of
from tests.support import at_once
from tests.webhooks.conftest import event_body, registered

URL = "http://127.0.0.1:9/hook"  # never contacted: no worker runs here
PLAN = [{"action": "notify", "payload": {"to": "ops"}}, {"action": "invoice", "payload": {"amount": 300}}]


@pytest.fixture
def app(plan_app):
    return plan_app()


def plan(client, headers, prompt: str = "Invoice ACME and tell ops", **extra):
    return client.post("/ai/plan", json={"prompt": prompt, **extra}, headers=headers)


def run(client, headers, plan_id: str):
    return client.post("/ai/execute", json={"plan_id": plan_id}, headers=headers)


def test_anonymous_principals_and_chat_keys_get_403_on_both(client, user_a_headers, anon_headers, api_key_headers):
    registered(client, user_a_headers, "notify", URL)
    for headers in (anon_headers, api_key_headers):
        assert_error(plan(client, headers), 403, "insufficient_scope")
        assert_error(run(client, headers, "0" * 32), 403, "insufficient_scope")


def test_members_may_plan_and_execute(app, client, user_a_headers, member_headers):
    registered(client, user_a_headers, "notify", URL)
    registered(client, user_a_headers, "invoice", URL)
    plan_id = seed_plan(app, tenant_of(app, user_a_headers), PLAN)
    assert run(client, member_headers, plan_id).status_code == 202


def test_a_tenant_without_actions_gets_422_no_actions_and_is_not_charged(app, client, user_a_headers):
    assert_error(plan(client, user_a_headers), 422, "no_actions")
    with app.app_context():
        assert budget.spent_today_usd("tenant", tenant_of(app, user_a_headers)) == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"prompt": ""}, {"prompt": "   "}, {"prompt": "a\x00b"}, {"prompt": "x", "model": "no-such-model"},
     {"prompt": "x", "extra": 1}, {"prompt": "x" * 8193}],
)  # fmt: skip
def test_bad_plan_requests_are_422(client, user_a_headers, body):
    registered(client, user_a_headers, "notify", URL)
    assert_error(client.post("/ai/plan", json=body, headers=user_a_headers), 422, "validation_error")


def test_no_worker_within_plan_timeout_is_504_and_the_plan_never_runs_or_charges(plan_app, user_a_headers):
    app = plan_app(PLAN_TIMEOUT_SECONDS="1")
    client = app.test_client()
    registered(client, user_a_headers, "notify", URL)
    started = time.monotonic()
    response = plan(client, user_a_headers)
    assert 1.0 <= time.monotonic() - started < 5
    error = assert_error(response, 504, "plan_timeout")
    plan_id = error["details"]["plan_id"]
    with app.app_context(), database.session() as session:
        assert session.get(Plan, plan_id).status == "expired"  # a worker that takes the job late skips it
    with app.app_context():
        assert budget.spent_today_usd("tenant", tenant_of(app, user_a_headers)) == 0  # reservation released
    assert_error(run(client, user_a_headers, plan_id), 409, "plan_not_ready")


def test_a_plan_reserves_against_the_tenant_budget(plan_app, user_a_headers):
    app = plan_app(TENANT_DAILY_BUDGET_USD="0.000001", PLAN_TIMEOUT_SECONDS="1")
    client = app.test_client()
    registered(client, user_a_headers, "notify", URL)
    error = assert_429(plan(client, user_a_headers, model="gpt-4o-mini"), "budget_exceeded", "tenant_daily_budget")
    assert error["details"]["retry_after"] >= 1


def test_execute_queues_one_delivery_per_action_once(app, client, user_a_headers):
    registered(client, user_a_headers, "notify", URL)
    registered(client, user_a_headers, "invoice", URL)
    plan_id = seed_plan(app, tenant_of(app, user_a_headers), PLAN)
    response = run(client, user_a_headers, plan_id)
    assert response.status_code == 202
    body = response.get_json()
    assert body["plan_id"] == plan_id and body["count"] == 2
    assert [(d["action"], d["status"]) for d in body["deliveries"]] == [("notify", "queued"), ("invoice", "queued")]
    shown = client.get(f"/actions/deliveries/{body['deliveries'][1]['delivery_id']}", headers=user_a_headers)
    assert shown.get_json()["payload"] == {"amount": 300} and shown.get_json()["plan_id"] == plan_id
    assert_error(run(client, user_a_headers, plan_id), 409, "plan_already_executed")
    assert client.get("/actions/deliveries", headers=user_a_headers).get_json()["count"] == 2


def test_another_tenants_plan_and_an_unknown_plan_are_404(app, client, user_a_headers, user_b_headers):
    registered(client, user_a_headers, "notify", URL)
    plan_id = seed_plan(app, tenant_of(app, user_a_headers), PLAN[:1])
    assert_error(run(client, user_b_headers, plan_id), 404, "not_found")
    assert_error(run(client, user_a_headers, "f" * 32), 404, "not_found")
    assert_error(client.post("/ai/execute", json={"plan_id": "nope"}, headers=user_a_headers), 422, "validation_error")
    assert run(client, user_a_headers, plan_id).status_code == 202  # B's attempt changed nothing


def test_a_failed_plan_and_a_plan_whose_action_was_deleted_are_409(app, client, user_a_headers):
    registered(client, user_a_headers, "notify", URL)
    tenant = tenant_of(app, user_a_headers)
    assert_error(run(client, user_a_headers, seed_plan(app, tenant, [], status="failed")), 409, "plan_failed")
    outdated = seed_plan(app, tenant, PLAN)  # "invoice" is not registered
    error = assert_error(run(client, user_a_headers, outdated), 409, "plan_outdated")
    assert error["details"] == {"action": "invoice"}
    assert client.get("/actions/deliveries", headers=user_a_headers).get_json()["count"] == 0  # nothing half-sent
    registered(client, user_a_headers, "invoice", URL)
    assert run(client, user_a_headers, outdated).status_code == 202  # still ready: executable once it is valid


def test_the_plan_and_execute_limits_are_per_tenant_with_the_contract_headers(plan_app, user_a_headers, user_b_headers):
    app = plan_app(LIMIT_AI_PLAN="1/60", LIMIT_AI_EXECUTE="1/60")
    client = app.test_client()
    assert_error(plan(client, user_a_headers), 422, "no_actions")  # counted: the limit runs before the view
    assert_429(plan(client, user_a_headers), "rate_limited", "ai_plan")
    assert_error(run(client, user_a_headers, "f" * 32), 404, "not_found")
    refused = run(client, user_a_headers, "f" * 32)
    assert_429(refused, "rate_limited", "ai_execute")
    assert refused.headers["X-RateLimit-Limit"] == "1" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) > time.time()
    assert_error(plan(client, user_b_headers), 422, "no_actions")  # another tenant: its own count


def test_concurrent_executes_make_one_set_of_deliveries(plan_app, db_url, user_a_headers, receiver):
    app = plan_app(DATABASE_URL=db_url)
    client = app.test_client()
    secrets = {name: registered(client, user_a_headers, name, receiver.url) for name in ("notify", "invoice")}
    plan_id = seed_plan(app, tenant_of(app, user_a_headers), PLAN)
    statuses = at_once(lambda: run(app.test_client(), user_a_headers, plan_id).status_code, 6)
    assert sorted(statuses) == [202, 409, 409, 409, 409, 409]
    with app.app_context():
        with database.session() as session:
            ids = session.scalars(select(Delivery.id).where(Delivery.plan_id == plan_id)).all()
        assert len(ids) == 2
        from app.webhooks import deliveries

        assert sorted(deliveries.attempt(delivery_id, app.config) for delivery_id in ids) == ["succeeded"] * 2
    assert len(receiver.requests) == 2
    for request in receiver.requests:
        data = event_body(request)["data"]
        assert Webhook(secrets[data["action"]]).verify(request.body, request.headers) is not None
        assert data["payload"] == next(item["payload"] for item in PLAN if item["action"] == data["action"])
