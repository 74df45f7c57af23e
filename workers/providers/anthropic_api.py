"""Anthropic's Messages API (and any Anthropic-compatible server), via the official SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import anthropic
import httpx2

from app.catalog import ModelSpec

from .base import NO_SAMPLING, Delta, JsonReply, Provider, ProviderError, Sampling

# Error types worth a retry when they arrive as an `error` event inside a 200 stream.
_RETRYABLE_TYPES = {"rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529}
# Stop reasons that mean the reply was cut short by a token limit.
_LENGTH_REASONS = {"max_tokens", "model_context_window_exceeded"}
# The one tool a structured answer is forced through: its input is the answer.
OUTPUT_TOOL = "relay_output"


class AnthropicProvider(Provider):
    name = "anthropic"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.client = anthropic.Anthropic(**self.sdk_options("ANTHROPIC", anthropic.Timeout))

    def stream(
        self, model: ModelSpec, messages: list[dict[str, str]], max_tokens: int, sampling: Sampling = NO_SAMPLING
    ) -> Iterator[Delta]:
        system, turns = to_anthropic(messages)
        if not turns:
            raise ProviderError("nothing to send: no user message")
        params: dict[str, Any] = {"model": model.upstream, "max_tokens": max_tokens, "messages": turns}
        if system:
            params["system"] = system
        params.update(_sampling(sampling))
        stopped = False
        try:
            response = self.client.messages.create(stream=True, **params)
            with response:
                for event in response:
                    if event.type == "message_start":
                        yield Delta(prompt_tokens=_input_tokens(event.message.usage))
                    elif event.type == "content_block_delta":
                        if event.delta.type == "text_delta" and event.delta.text:
                            yield Delta(text=event.delta.text)
                    elif event.type == "message_delta":
                        reason = event.delta.stop_reason
                        yield Delta(
                            prompt_tokens=_input_tokens(event.usage) if event.usage.input_tokens is not None else None,
                            completion_tokens=event.usage.output_tokens,
                            finish_reason=("length" if reason in _LENGTH_REASONS else "stop") if reason else None,
                        )
                    elif event.type == "message_stop":
                        stopped = True
        except anthropic.APIStatusError as exc:
            status = exc.status_code
            if status < 400:  # an `error` event inside the stream: judge it by its type
                status = _RETRYABLE_TYPES.get(exc.type or "", 502)
            retryable = status == 429 or status >= 500
            kind = f" ({exc.type})" if exc.type else ""
            raise ProviderError(f"provider answered {status}{kind}", status=status, retryable=retryable) from None
        except (anthropic.APIConnectionError, anthropic.APITimeoutError) as exc:
            raise ProviderError(f"provider unreachable: {type(exc).__name__}", retryable=True) from None
        except httpx2.RequestError as exc:
            # Unlike the openai SDK, the anthropic SDK lets transport errors while reading the
            # stream (a cut connection, a read timeout) through unwrapped.
            raise ProviderError(f"provider stream failed: {type(exc).__name__}", retryable=True) from None
        if not stopped:
            # The body ended without message_stop: the reply is incomplete, never a short success.
            raise ProviderError("provider stream ended before message_stop", retryable=True)

    def complete_json(
        self, model: ModelSpec, messages: list[dict[str, str]], schema: dict[str, Any], max_tokens: int
    ) -> JsonReply:
        """A forced tool call: one tool whose input_schema is `schema`, and tool_choice naming it."""
        system, turns = to_anthropic(messages)
        if not turns:
            raise ProviderError("nothing to send: no user message")
        tool = {"name": OUTPUT_TOOL, "description": "Submit the answer.", "input_schema": schema}
        params: dict[str, Any] = {"model": model.upstream, "max_tokens": max_tokens, "messages": turns,
                                  "tools": [tool], "tool_choice": {"type": "tool", "name": OUTPUT_TOOL}}  # fmt: skip
        if system:
            params["system"] = system
        try:
            message = self.client.messages.create(**params)
        except anthropic.APIStatusError as exc:
            retryable = exc.status_code == 429 or exc.status_code >= 500
            raise ProviderError(
                f"provider answered {exc.status_code}", status=exc.status_code, retryable=retryable
            ) from None
        except (anthropic.APIConnectionError, anthropic.APITimeoutError, httpx2.RequestError) as exc:
            raise ProviderError(f"provider unreachable: {type(exc).__name__}", retryable=True) from None
        call = next((b for b in message.content if b.type == "tool_use" and b.name == OUTPUT_TOOL), None)
        if call is None:
            raise ProviderError("the model did not call the answer tool")
        return JsonReply(
            json.dumps(call.input),
            _input_tokens(message.usage),
            message.usage.output_tokens,
            "length" if message.stop_reason in _LENGTH_REASONS else "stop",
        )


def to_anthropic(messages: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """Chat messages as Anthropic wants them: the system text apart, then user/assistant
    turns that alternate and start with the user. Consecutive same-role messages are merged;
    empty ones (a reply cancelled before its first chunk) are dropped, as the API refuses them."""
    system_parts: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        role, content = message.get("role"), message.get("content") or ""
        if role == "system":
            if content.strip():
                system_parts.append(content)
            continue
        if role not in ("user", "assistant") or not content.strip():
            continue
        if not turns and role == "assistant":
            continue  # the context window began mid-conversation
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": role, "content": content})
    return "\n\n".join(system_parts), turns


def _sampling(sampling: Sampling) -> dict[str, Any]:
    """The caller's options in Anthropic's terms: stop sequences are `stop_sequences`. The Messages
    API takes no temperature or top_p (the API refuses them before a job exists): never dropped silently."""
    if sampling.temperature is not None or sampling.top_p is not None:
        raise ProviderError("Anthropic's Messages API takes no temperature or top_p")
    return {"stop_sequences": list(sampling.stop)} if sampling.stop else {}


def _input_tokens(usage: Any) -> int:
    """All input tokens, whether fresh or served from the prompt cache."""
    return sum(
        getattr(usage, name, None) or 0
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
