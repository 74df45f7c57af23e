"""A chat completion request, checked and turned into a new stream.

Refused by name first (400 `unsupported_parameter`), so nothing is ever silently
ignored: every parameter but the supported ones, n > 1, message fields but role
and content, roles but system/user/assistant, content parts but text, stream
options but include_usage. Then the schema (400 `invalid_request_error` naming
the parameter), the model (404 `model_not_found`), what a provider itself would
refuse, and the cost cap of the X-Relay-Cost-Cap header.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError

from ..catalog import Catalog, ModelSpec
from ..db.models import new_id
from ..errors import APIError
from ..schemas.openai import ROLES, chat_request_schema
from ..streams.job import Sampling
from ..streams.service import NewStream

SUPPORTED = ("model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
             "temperature", "top_p", "stop", "user", "n")  # fmt: skip
MESSAGE_FIELDS = frozenset({"role", "content"})
STREAM_OPTIONS = frozenset({"include_usage"})
COST_CAP_HEADER = "X-Relay-Cost-Cap"
_COST_CAP = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,12})?")


@dataclass(frozen=True)
class ChatRequest:
    new: NewStream
    model: str
    stream: bool
    include_usage: bool


def invalid(param: str | None, message: str, code: str = "invalid_request_error", status: int = 400) -> APIError:
    """An error for /v1 that names the parameter at fault (app/openai_compat/errors.py renders it)."""
    return APIError(status, code, message, {"param": param})


def _unsupported(param: str, what: str = "parameter") -> APIError:
    return invalid(param, f"Unsupported {what}: '{param}' is not supported by Relay.", "unsupported_parameter")


def refuse_unsupported(body: Mapping[str, Any]) -> None:
    """400 unsupported_parameter for the first thing Relay does not do, named as OpenAI would."""
    for name in body:
        if name not in SUPPORTED:
            raise _unsupported(name)
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        raise invalid("n", "Only n=1 is supported: one choice per request.", "unsupported_parameter")
    options = body.get("stream_options")
    if isinstance(options, dict):
        for name in options:
            if name not in STREAM_OPTIONS:
                raise _unsupported(f"stream_options.{name}")
    messages = body.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict):
            continue
        for name in message:
            if name not in MESSAGE_FIELDS:
                raise _unsupported(f"messages[{index}].{name}")
        role = message.get("role")
        if isinstance(role, str) and role not in ROLES:
            raise invalid(f"messages[{index}].role", f"Unsupported role '{role}': use system, user or assistant.",
                          "unsupported_parameter")  # fmt: skip
        content = message.get("content")
        for part_index, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") != "text":
                raise _unsupported(f"messages[{index}].content[{part_index}].type", "content part")


def _first_error(messages: Any, path: str = "") -> tuple[str, str]:
    """The first error of a marshmallow error tree, as (OpenAI-style param path, reason)."""
    if isinstance(messages, dict):
        key = next(iter(messages))
        step = f"[{key}]" if isinstance(key, int) else (f".{key}" if path else str(key))
        if key == "_schema":  # the value itself (e.g. not an object): named by its own path
            step = ""
        return _first_error(messages[key], path + step)
    if isinstance(messages, list) and messages:
        return _first_error(messages[0], path) if not isinstance(messages[0], str) else (path, messages[0])
    return path, str(messages)


def cost_cap(raw: str | None, config: Mapping[str, Any]) -> float:
    """The X-Relay-Cost-Cap header, checked as a stream's cost_cap_usd is; absent: the default."""
    if raw is None:
        return config["DEFAULT_COST_CAP_USD"]
    most = config["MAX_COST_CAP_USD"]
    if not _COST_CAP.fullmatch(raw) or not 0 < float(raw) <= most:
        raise invalid(COST_CAP_HEADER, f"{COST_CAP_HEADER} must be a number of USD above 0 and at most {most:.2f}.")
    return float(raw)


def _provider_limits(spec: ModelSpec, sampling: Sampling) -> None:
    """What the model's provider would refuse after the stream started: refused now instead."""
    if spec.provider == "anthropic":  # Anthropic's Messages API has no sampling temperature or top_p
        for name in ("temperature", "top_p"):
            if getattr(sampling, name) is not None:
                raise invalid(name, f"{spec.id} does not take '{name}'.", "unsupported_parameter")


def parse_chat(
    body: Mapping[str, Any], cap_header: str | None, catalog: Catalog, config: Mapping[str, Any]
) -> ChatRequest:
    """The request as a NewStream of a new conversation holding `messages` as given; 400/404 otherwise."""
    refuse_unsupported(body)
    try:
        data = chat_request_schema(config).load(body)
    except ValidationError as exc:
        param, reason = _first_error(exc.messages)
        raise invalid(param, f"Invalid '{param}': {reason}") from None
    spec = catalog.get(data["model"])
    if spec is None:
        message = f"The model '{data['model']}' does not exist or you do not have access to it."
        raise invalid("model", message, "model_not_found", 404)
    sampling = Sampling(data.get("temperature"), data.get("top_p"), data.get("stop") or ())
    _provider_limits(spec, sampling)
    messages = [{"role": m["role"], "content": m["content"]} for m in data["messages"]]
    limits = [value for value in (data.get("max_tokens"), data.get("max_completion_tokens")) if value is not None]
    title = next((m["content"] for m in messages if m["role"] == "user" and m["content"].strip()), "")
    new = NewStream(
        spec=spec,
        messages=messages,
        title=title or messages[0]["content"],
        conversation_id=new_id(),
        new_conversation=True,
        max_tokens=min(limits) if limits else config["MAX_TOKENS_PER_REQUEST"],  # both given: both hold
        cost_cap_usd=cost_cap(cap_header, config),
        turns=messages,
        sampling=sampling,
        cap_field=COST_CAP_HEADER,
    )
    include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
    return ChatRequest(new, spec.id, bool(data.get("stream")), include_usage)
