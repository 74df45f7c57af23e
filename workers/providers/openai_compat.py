"""OpenAI and any OpenAI-compatible server (vLLM, Ollama, llama.cpp server), via the official SDK."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import openai

from app.catalog import ModelSpec

from .base import NO_SAMPLING, Delta, JsonReply, Provider, ProviderError, Sampling

JSON_SCHEMA_NAME = "relay_output"


class OpenAIProvider(Provider):
    name = "openai"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.client = openai.OpenAI(**self.sdk_options("OPENAI", openai.Timeout))

    def stream(
        self, model: ModelSpec, messages: list[dict[str, str]], max_tokens: int, sampling: Sampling = NO_SAMPLING
    ) -> Iterator[Delta]:
        finished = False
        try:
            response = self.client.chat.completions.create(
                model=model.upstream,
                messages=messages,
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
                **sampling.chat_options(),
            )
            with response:
                for chunk in response:
                    delta = Delta()
                    if chunk.choices:
                        choice = chunk.choices[0]
                        delta.text = (choice.delta.content or "") if choice.delta else ""
                        delta.finish_reason = _finish_reason(choice.finish_reason)
                        finished = finished or delta.finish_reason is not None
                    if chunk.usage is not None:
                        delta.prompt_tokens = chunk.usage.prompt_tokens
                        delta.completion_tokens = chunk.usage.completion_tokens
                    if delta.text or delta.finish_reason or delta.prompt_tokens is not None:
                        yield delta
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            raise _provider_error(exc) from None
        except openai.APIError:  # an {"error": ...} event inside the stream
            raise ProviderError("provider sent an error event mid-stream", retryable=True) from None
        if not finished:
            # The body ended without a finish_reason: the reply is incomplete, never a short success.
            raise ProviderError("provider stream ended without a finish_reason", retryable=True)

    def complete_json(
        self, model: ModelSpec, messages: list[dict[str, str]], schema: dict[str, Any], max_tokens: int
    ) -> JsonReply:
        """Structured outputs: `response_format` json_schema, strict, so the answer matches `schema`."""
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": JSON_SCHEMA_NAME, "strict": True, "schema": schema},
        }
        try:
            completion = self.client.chat.completions.create(
                model=model.upstream, messages=messages, max_tokens=max_tokens, response_format=response_format
            )
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            raise _provider_error(exc) from None
        if not completion.choices or completion.choices[0].message is None:
            raise ProviderError("provider answered without a choice")
        choice = completion.choices[0]
        if choice.message.refusal or choice.message.content is None:
            raise ProviderError("the model refused to answer in the schema")
        usage = completion.usage
        return JsonReply(
            choice.message.content,
            usage.prompt_tokens if usage else None,
            usage.completion_tokens if usage else None,
            _finish_reason(choice.finish_reason) or "stop",
        )


def _finish_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"


def _provider_error(exc: openai.APIStatusError | openai.APIConnectionError) -> ProviderError:
    """The SDK's failure as Relay's: a 429, a 5xx or no answer at all may help on a retry."""
    if isinstance(exc, openai.APIStatusError):
        retryable = exc.status_code == 429 or exc.status_code >= 500
        return ProviderError(f"provider answered {exc.status_code}", status=exc.status_code, retryable=retryable)
    return ProviderError(f"provider unreachable: {type(exc).__name__}", retryable=True)
