"""OpenAI and any OpenAI-compatible server (vLLM, Ollama, llama.cpp server): configured by the
official SDK, streamed through its HTTP library."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import gevent
import httpx2
import openai
from gevent import monkey

from app.catalog import ModelSpec

from .base import NO_SAMPLING, Delta, JsonReply, Provider, ProviderError, Sampling

JSON_SCHEMA_NAME = "relay_output"
_LINE_END = re.compile(rb"\r\n|\r|\n")
DRAIN_SECONDS = 0.1  # how long the end of a body may take to come after [DONE]


class OpenAIProvider(Provider):
    name = "openai"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.client = openai.OpenAI(**self.sdk_options("OPENAI", openai.Timeout))
        # Streams go through httpx itself (the SDK's own HTTP library), with the SDK client's URL,
        # headers (auth included) and timeouts: the SDK's request and response layers cost about
        # 0.5 ms of CPU and of time to first token a reply, and its chunk models 130 us a chunk.
        self.http = httpx2.Client(
            base_url=self.client.base_url,
            headers=_sdk_headers(self.client),
            timeout=self.client.timeout,
            limits=openai.DEFAULT_CONNECTION_LIMITS,
        )

    def stream(
        self, model: ModelSpec, messages: list[dict[str, str]], max_tokens: int, sampling: Sampling = NO_SAMPLING
    ) -> Iterator[Delta]:
        finished = False
        body = {
            "model": model.upstream,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            **sampling.chat_options(),
        }
        request = self.http.build_request("POST", "chat/completions", json=body)
        try:
            response = self.http.send(request, stream=True)
        except httpx2.TransportError as exc:  # no answer at all (refused, timed out): a retry may help
            raise ProviderError(f"provider unreachable: {type(exc).__name__}", retryable=True) from None
        try:
            _check_status(response)
            events = sse_data(response.iter_bytes())
            for data in events:
                if data == "[DONE]":
                    _drain(response, events)
                    break
                delta = _delta(json.loads(data))
                finished = finished or delta.finish_reason is not None
                if delta.text or delta.finish_reason or delta.prompt_tokens is not None:
                    yield delta
        except (httpx2.HTTPError, httpx2.StreamError, ValueError):  # the body broke off, or is not what the API sends
            raise ProviderError("provider stream broke off", retryable=True) from None
        finally:
            response.close()
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


def _sdk_headers(client: openai.OpenAI) -> dict[str, str]:
    """The headers the SDK sends with a request: its defaults (less what it marks Omit) and its auth."""
    headers = {name: value for name, value in client.default_headers.items() if isinstance(value, str)}
    return {**headers, **client.auth_headers}


def _drain(response: httpx2.Response, rest: Iterator[str]) -> None:
    """Read the body to its end after [DONE], briefly: an HTTP/1.1 connection whose body was not
    read to the end is closed, and the next request pays a new TCP (and TLS) handshake. (The
    SDK's async client drains the same way; its sync client does not.)"""
    if response.http_version != "HTTP/1.1" or not monkey.is_module_patched("socket"):
        return  # only the gevent worker can bound the wait; elsewhere the connection is closed
    with contextlib.suppress(httpx2.HTTPError, httpx2.StreamError), gevent.Timeout(DRAIN_SECONDS, False):
        for _ in rest:
            pass  # what a server sends after [DONE] means nothing


def sse_data(chunks: Iterable[bytes]) -> Iterator[str]:
    """The `data` of each server-sent event in a body's bytes (its data lines joined); other
    fields and comments skipped. Lines end at CRLF, LF or CR, wherever the chunks split them;
    text is UTF-8, a bad byte read as U+FFFD. Bytes in, not httpx's text lines: three
    generator layers fewer for each chunk the provider sends."""
    pending = b""
    data: list[str] = []
    for chunk in chunks:
        buffer = pending + chunk
        # A CR at the end may be the first half of a CRLF: it ends its line once the next byte is known.
        held = b"\r" if buffer.endswith(b"\r") else b""
        *lines, pending = _LINE_END.split(buffer[:-1] if held else buffer)
        pending += held
        for line in lines:
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                data.append(_field_value(line[5:]))
    if pending.rstrip(b"\r").startswith(b"data:"):  # a last line without its line end
        data.append(_field_value(pending.rstrip(b"\r")[5:]))
    if data:
        yield "\n".join(data)


def _field_value(raw: bytes) -> str:
    return (raw[1:] if raw.startswith(b" ") else raw).decode("utf-8", "replace")


def _delta(chunk: dict[str, Any]) -> Delta:
    """A chat.completion.chunk as Relay's Delta; an `error` object in its place is the provider's failure."""
    if not isinstance(chunk, dict) or "error" in chunk:
        raise ProviderError("provider sent an error event mid-stream", retryable=True)
    delta = Delta()
    choices = chunk.get("choices") or ()
    if choices:
        choice = choices[0]
        delta.text = (choice.get("delta") or {}).get("content") or ""
        delta.finish_reason = _finish_reason(choice.get("finish_reason"))
    usage = chunk.get("usage")
    if usage:
        delta.prompt_tokens = usage.get("prompt_tokens")
        delta.completion_tokens = usage.get("completion_tokens")
    return delta


def _check_status(response: httpx2.Response) -> None:
    if response.status_code >= 400:
        raise _status_error(response.status_code) from None  # as every provider error: nothing chained


def _status_error(status: int) -> ProviderError:
    """A failed request's status as Relay's error: a 429 or a 5xx may help on a retry."""
    return ProviderError(f"provider answered {status}", status=status, retryable=status == 429 or status >= 500)


def _finish_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"


def _provider_error(exc: openai.APIStatusError | openai.APIConnectionError) -> ProviderError:
    """The SDK's failure as Relay's: a 429, a 5xx or no answer at all may help on a retry."""
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc.status_code)
    return ProviderError(f"provider unreachable: {type(exc).__name__}", retryable=True)
