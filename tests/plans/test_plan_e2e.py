"""POST /ai/plan and /ai/execute against a running Relay: gunicorn, a gevent worker (generate, webhooks)
with the fake OpenAI server (structured outputs), and a prefork worker with the local model (grammar)."""

from __future__ import annotations

import json
import secrets
import threading
import time

import pytest
import redis
import requests
from sqlalchemy import create_engine, text
from standardwebhooks.webhooks import Webhook

from app.limits.budget import to_micro
from tests.conftest import Stack, stack_env
from tests.fakes.strict_schema import strict_schema_problem
from tests.support import wait_until
from tests.webhooks.conftest import event_body

PRICE_IN, PRICE_OUT = 0.15, 0.60  # gpt-4o-mini, per million tokens


@pytest.fixture(scope="module")
def plan_stack(tmp_path_factory, base_env, fake_openai, redis_url):
    log_dir = tmp_path_factory.mktemp("plans")
    prefix = f"{base_env['REDIS_KEY_PREFIX']}plans-{secrets.token_hex(3)}:"
    env = stack_env(base_env, fake_openai, log_dir, REDIS_KEY_PREFIX=prefix, ALLOW_PRIVATE_WEBHOOK_TARGETS="true",
                    DEFAULT_MODEL="gpt-4o-mini", PLAN_TIMEOUT_SECONDS="240")  # fmt: skip
    stack = Stack(env, log_dir)
    try:
        stack.start_web(port=int(env["PORT"]))
        stack.start_worker("remote-worker", "gevent", "generate,webhooks", 50)
        stack.start_worker("local-worker", "prefork", "generate_local", 1)
        yield stack
    finally:
        stack.stop()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)


def post(stack: Stack, path: str, headers: dict, body: dict, timeout: float = 60) -> requests.Response:
    return requests.post(f"{stack.base_url}{path}", json=body, headers=headers, timeout=timeout)


def register(stack: Stack, headers: dict, name: str, url: str, description: str) -> str:
    response = post(stack, "/api/v1/actions", headers, {"name": name, "url": url, "description": description})
    assert response.status_code == 201, response.text
    return response.json()["secret"]


def tenant_budget_micro(stack: Stack, plan_id: str) -> int:
    """Today's spend of the plan's tenant in Redis, micro-dollars."""
    engine = create_engine(stack.env["DATABASE_URL"])
    with engine.connect() as connection:
        tenant = connection.execute(text("SELECT tenant_id FROM plans WHERE id = :id"), {"id": plan_id}).scalar_one()
    engine.dispose()
    key = f"{stack.env['REDIS_KEY_PREFIX']}budget:tenant:{tenant}:{int(time.time() // 86400)}"
    return int(redis.Redis.from_url(stack.env["REDIS_URL"]).get(key) or 0)


def structured_request(fake_openai: str, marker: str) -> dict:
    bodies = requests.get(f"{fake_openai.removesuffix('/v1')}/structured", timeout=5).json()
    return next(body for body in bodies if marker in body["messages"][-1]["content"])


def test_a_plan_through_openai_structured_outputs_then_executed_once(plan_stack, fake_openai, user_a_headers, receiver):
    secret = register(plan_stack, user_a_headers, "send-invoice", receiver.url, "Sends an invoice to a customer")
    register(plan_stack, user_a_headers, "notify-ops", receiver.url, "Pages the operations team")
    marker = secrets.token_hex(6)
    scripted = {"actions": [
        {"action": "send-invoice", "payload": json.dumps({"customer": "ACME", "amount": 300})},
        {"action": "wire-money", "payload": "{}"},
        {"action": "notify-ops", "payload": "[1, 2]"},
    ]}  # fmt: skip
    prompt = f"Invoice ACME {marker} plan:{json.dumps(scripted)}"
    response = post(plan_stack, "/ai/plan", user_a_headers, {"prompt": prompt, "model": "gpt-4o-mini"})
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["actions"] == [{"action": "send-invoice", "payload": {"customer": "ACME", "amount": 300}}]
    assert plan["rejected"] == [
        {"action": "wire-money", "payload": {}, "reason": "unknown_action"},
        {"action": "notify-ops", "payload": [1, 2], "reason": "payload_not_object"},
    ]
    assert plan["model"] == "gpt-4o-mini"

    # What Relay sent: a strict JSON Schema naming exactly the tenant's actions, and their descriptions.
    sent = structured_request(fake_openai, marker)
    assert sent["response_format"]["type"] == "json_schema" and sent["response_format"]["json_schema"]["strict"] is True
    schema = sent["response_format"]["json_schema"]["schema"]
    assert strict_schema_problem(schema) is None
    assert schema["properties"]["actions"]["items"]["properties"]["action"]["enum"] == ["notify-ops", "send-invoice"]
    assert "- send-invoice: Sends an invoice to a customer" in sent["messages"][0]["content"]
    assert sent.get("stream") in (None, False) and 0 < sent["max_tokens"] <= 1000

    # Its cost: the fake's usage at the model's prices, settled to the tenant's budget and counted.
    prompt_tokens = sum(len(m["content"]) for m in sent["messages"]) // 4 + 1
    completion_tokens = len(json.dumps(scripted)) // 4 + 1
    cost = (prompt_tokens * PRICE_IN + completion_tokens * PRICE_OUT) / 1_000_000
    assert plan["cost_usd"] == pytest.approx(cost, abs=1e-8)
    assert tenant_budget_micro(plan_stack, plan["plan_id"]) == to_micro(plan["cost_usd"])
    metrics = requests.get(f"{plan_stack.base_url}/metrics", timeout=10).text
    assert any(line.startswith('relay_llm_cost_usd_total{model="gpt-4o-mini"}') and float(line.split()[-1]) > 0
               for line in metrics.splitlines())  # fmt: skip

    # Executed once: one signed delivery, verified by the official package; then 409.
    executed = post(plan_stack, "/ai/execute", user_a_headers, {"plan_id": plan["plan_id"]})
    assert executed.status_code == 202, executed.text
    assert [d["action"] for d in executed.json()["deliveries"]] == ["send-invoice"]
    wait_until(lambda: len(receiver.requests) == 1, 20, "the delivery")
    [request] = receiver.requests
    assert Webhook(secret).verify(request.body, request.headers) is not None
    assert event_body(request)["data"]["payload"] == {"customer": "ACME", "amount": 300}
    again = post(plan_stack, "/ai/execute", user_a_headers, {"plan_id": plan["plan_id"]})
    assert again.status_code == 409 and again.json()["error"]["code"] == "plan_already_executed"


def test_a_plan_holds_a_reservation_while_the_model_answers(plan_stack, user_a_headers, receiver):
    register(plan_stack, user_a_headers, "notify-ops", receiver.url, "Pages the operations team")
    store = redis.Redis.from_url(plan_stack.env["REDIS_URL"], decode_responses=True)
    pattern = f"{plan_stack.env['REDIS_KEY_PREFIX']}budget:res:plan:*"
    answers: list[requests.Response] = []
    body = {"prompt": "Page ops #ttft=2000", "model": "gpt-4o-mini"}
    thread = threading.Thread(target=lambda: answers.append(post(plan_stack, "/ai/plan", user_a_headers, body)))
    thread.start()
    wait_until(lambda: any(True for _ in store.scan_iter(match=pattern)), 10, "the plan's reservation")
    [key] = store.scan_iter(match=pattern)
    reserved = int(store.hget(key, "amount"))
    thread.join(30)
    [answer] = answers
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert plan["actions"] == [{"action": "notify-ops", "payload": {}}]  # the fake's default answer
    assert key.endswith(plan["plan_id"]) and not store.exists(key)  # settled
    assert reserved > to_micro(plan["cost_usd"]) == tenant_budget_micro(plan_stack, plan["plan_id"])


def test_the_local_model_answers_a_valid_plan_through_its_grammar(plan_stack, user_a_headers, receiver):
    register(plan_stack, user_a_headers, "send-invoice", receiver.url, "Sends an invoice to a customer")
    register(plan_stack, user_a_headers, "notify-ops", receiver.url, "Pages the operations team")
    body = {"prompt": "Invoice ACME for 300 dollars and tell the ops team.", "model": "local-smollm2"}
    started = time.monotonic()
    response = post(plan_stack, "/ai/plan", user_a_headers, body, timeout=260)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    plan = response.json()
    print(f"local plan in {elapsed:.1f} s: {plan}")
    assert plan["model"] == "local-smollm2" and plan["cost_usd"] == 0
    assert plan["actions"] or plan["rejected"]
    for item in plan["actions"]:
        assert item["action"] in ("send-invoice", "notify-ops") and isinstance(item["payload"], dict)
    # A grammar allows only registered names and key/value payloads: nothing for the sieve to reject.
    assert plan["rejected"] == []
