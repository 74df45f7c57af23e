"""The plan's schema per provider, the prompt, and the sieve that keeps only registered actions with object payloads."""

from __future__ import annotations

import json

import pytest

from app.plans.proposal import PlanUnparseable, plan_messages, plan_schema, sort_proposals
from tests.fakes.strict_schema import strict_schema_problem

NAMES = ["notify-ops", "send-invoice"]


def test_the_openai_schema_is_strict_and_names_exactly_the_actions():
    schema = plan_schema(NAMES, "json_string", 10)
    assert strict_schema_problem(schema) is None  # what OpenAI's strict mode accepts
    item = schema["properties"]["actions"]["items"]
    assert item["properties"]["action"] == {"type": "string", "enum": NAMES}
    assert item["properties"]["payload"]["type"] == "string"


def test_the_local_schema_is_bounded_everywhere():
    actions = plan_schema(NAMES, "pairs", 10)["properties"]["actions"]
    assert actions["maxItems"] == 3
    pairs = actions["items"]["properties"]["payload"]
    assert pairs["maxItems"] == 3
    assert all("maxLength" in field for field in pairs["items"]["properties"].values())


def test_the_prompt_lists_every_action_with_its_description():
    system, user = plan_messages([("send-invoice", "Sends an invoice"), ("notify-ops", "")], "Bill ACME", "object")
    assert system["role"] == "system" and "- send-invoice: Sends an invoice" in system["content"]
    assert "- notify-ops: (no description)" in system["content"]
    assert user == {"role": "user", "content": "Bill ACME"}


@pytest.mark.parametrize(
    ("encoding", "payload", "kept_payload"),
    [
        ("json_string", '{"amount": 300}', {"amount": 300}),
        ("object", {"amount": 300}, {"amount": 300}),
        ("pairs", [{"key": "amount", "value": "300"}], {"amount": "300"}),
        ("pairs", [], {}),
    ],
)
def test_each_encoding_decodes_to_an_object(encoding, payload, kept_payload):
    text = json.dumps({"actions": [{"action": "send-invoice", "payload": payload}]})
    assert sort_proposals(text, set(NAMES), encoding, 10) == ([{"action": "send-invoice", "payload": kept_payload}], [])


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"action": "wire-money", "payload": "{}"}, "unknown_action"),
        ({"action": "send-invoice", "payload": "[1, 2]"}, "payload_not_object"),
        ({"action": "send-invoice", "payload": "not json"}, "payload_not_object"),
        ({"action": "send-invoice", "payload": 7}, "payload_not_object"),
        ({"action": "send-invoice"}, "malformed"),
        ({"payload": "{}"}, "malformed"),
        ("send-invoice", "malformed"),
    ],
)
def test_what_is_not_a_registered_action_with_an_object_payload_is_rejected(item, reason):
    text = json.dumps({"actions": [item, {"action": "notify-ops", "payload": "{}"}]})
    kept, rejected = sort_proposals(text, set(NAMES), "json_string", 10)
    assert kept == [{"action": "notify-ops", "payload": {}}]
    assert [entry["reason"] for entry in rejected] == [reason]


def test_actions_past_the_maximum_are_rejected():
    text = json.dumps({"actions": [{"action": "notify-ops", "payload": {"n": n}} for n in range(3)]})
    kept, rejected = sort_proposals(text, set(NAMES), "object", 2)
    assert [a["payload"]["n"] for a in kept] == [0, 1]
    assert rejected == [{"action": "notify-ops", "payload": {"n": 2}, "reason": "too_many_actions"}]


@pytest.mark.parametrize("text", ['{"actions": [', "[]", '{"plan": []}', '{"actions": {}}'])
def test_an_answer_that_is_no_plan_is_unparseable(text):
    with pytest.raises(PlanUnparseable):
        sort_proposals(text, set(NAMES), "object", 10)
