"""What the model is asked for and how its answer is sorted: the plan's JSON Schema, the prompt, the sieve.

The schema names exactly the tenant's actions (an `enum`), so a constrained
decoder cannot invent one. How a payload travels depends on what each
provider's constrained decoding can express:

- `json_string` (OpenAI structured outputs, strict): strict mode needs every
  object closed (`additionalProperties: false`, every property required), so a
  free-form payload travels as a string holding a JSON object.
- `object` (Anthropic's forced tool call): a plain JSON object.
- `pairs` (the local model's llama.cpp grammar): a short list of key/value
  strings. A free-form object lets a small model write keys and digits until
  max_tokens cuts the JSON; every part of this shape has a bound, so the
  grammar ends well inside the token budget and the answer always parses.

Relay trusts none of it: `sort_proposals` keeps registered actions with object
payloads and rejects the rest with a reason (an OpenAI-compatible server may
ignore the schema; an action may be deleted while the model answers).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

ENCODINGS = {"openai": "json_string", "anthropic": "object", "local": "pairs"}
SCHEMA_NAME = "relay_plan"
# Bounds of the `pairs` shape: they keep the local model's longest possible answer a few hundred tokens.
PAIRS_MAX_ACTIONS = 3
PAIRS_MAX_FIELDS = 3
PAIRS_KEY_CHARS = 20
PAIRS_VALUE_CHARS = 40


class PlanUnparseable(ValueError):
    """The model's answer is not a JSON object with an `actions` list."""


def encoding_for(provider: str) -> str:
    """How payloads travel for this provider (see the module docstring)."""
    return ENCODINGS[provider]


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _payload_schema(encoding: str) -> dict[str, Any]:
    if encoding == "json_string":
        return {"type": "string", "description": "A JSON object, encoded as a string."}
    if encoding == "pairs":
        pair = _closed(
            {
                "key": {"type": "string", "maxLength": PAIRS_KEY_CHARS},
                "value": {"type": "string", "maxLength": PAIRS_VALUE_CHARS},
            }
        )
        return {"type": "array", "items": pair, "maxItems": PAIRS_MAX_FIELDS}
    return {"type": "object"}


def plan_schema(names: Sequence[str], encoding: str, max_actions: int) -> dict[str, Any]:
    """The JSON Schema of a plan whose actions are exactly `names`."""
    item = _closed({"action": {"type": "string", "enum": list(names)}, "payload": _payload_schema(encoding)})
    actions: dict[str, Any] = {"type": "array", "items": item}
    if encoding == "pairs":
        actions["maxItems"] = min(max_actions, PAIRS_MAX_ACTIONS)
    elif encoding == "object":
        actions["maxItems"] = max_actions
    # OpenAI's strict mode is left without maxItems: extra items are rejected here instead.
    return _closed({"actions": actions})


_PAYLOAD_HINTS = {
    "json_string": 'a JSON object encoded as a string, e.g. "{\\"amount\\": 300}"',
    "pairs": 'a list of {"key": ..., "value": ...} pairs',
    "object": "a JSON object",
}


def plan_messages(actions: Iterable[tuple[str, str]], prompt: str, encoding: str) -> list[dict[str, str]]:
    """The system message (the tenant's actions and their descriptions) and the user's prompt."""
    listing = "\n".join(f"- {name}: {description or '(no description)'}" for name, description in actions)
    system = (
        "You plan actions for the user's request; you never perform them. The registered actions are:\n"
        f"{listing}\n"
        'Answer only with JSON: {"actions": [{"action": <a registered name>, "payload": <details>}]}, '
        f"where payload is {_PAYLOAD_HINTS[encoding]} holding the details the request gives. "
        'Propose only the actions the request calls for; answer {"actions": []} when none fits.'
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


def _decode_payload(value: Any, encoding: str) -> Any:
    if encoding == "json_string" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    pairs = encoding == "pairs" and isinstance(value, list)
    if pairs and all(isinstance(pair, dict) and set(pair) == {"key", "value"} for pair in value):
        return {str(pair["key"]): pair["value"] for pair in value}
    return value


def sort_proposals(
    text: str, registered: set[str], encoding: str, max_actions: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, rejected): registered actions with object payloads, up to `max_actions`; the rest with a reason."""
    try:
        answer = json.loads(text)
    except ValueError:
        raise PlanUnparseable("the answer is not JSON") from None
    items = answer.get("actions") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        raise PlanUnparseable('the answer has no "actions" list')
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("action"), str) or "payload" not in item:
            proposed = item if isinstance(item, dict) else {"payload": item}
            rejected.append(
                {"action": proposed.get("action"), "payload": proposed.get("payload"), "reason": "malformed"}
            )
            continue
        name, payload = item["action"], _decode_payload(item["payload"], encoding)
        reason = None
        if name not in registered:
            reason = "unknown_action"
        elif not isinstance(payload, dict):
            reason = "payload_not_object"
        elif len(kept) >= max_actions:
            reason = "too_many_actions"
        if reason:
            rejected.append({"action": name, "payload": payload, "reason": reason})
        else:
            kept.append({"action": name, "payload": payload})
    return kept, rejected
