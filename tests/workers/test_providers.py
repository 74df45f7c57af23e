"""Each remote provider class, driven directly, against a fake server that speaks its wire
format over real HTTP: the official SDK code runs unchanged.

The fakes are steered by the last user message (see tests/fakes/*_server.py):
echo:<text>, #fail=<status>, #fail_once=<status>, #cut=<n>, #truncate=<n>,
#sse_error=<n>, #ttft=<ms>, and for Anthropic #echo_request.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator

import pytest
import requests

from app.catalog import BUILT_IN
from app.config import load_settings
from tests.support import fake_server, free_port
from workers.providers.anthropic_api import AnthropicProvider, to_anthropic
from workers.providers.base import Delta, ProviderError
from workers.providers.openai_compat import OpenAIProvider, sse_data

MODELS = {spec.id: spec for spec in BUILT_IN}
OPENAI_KEY = "sk-test-" + secrets.token_hex(16)
ANTHROPIC_KEY = "sk-ant-test-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def fake_anthropic(tmp_path_factory) -> Iterator[str]:
    """The fake Anthropic Messages API; yields its base URL (the SDK appends /v1/messages)."""
    with fake_server("anthropic", tmp_path_factory.mktemp("fake-anthropic"), first_token_ms=5) as base:
        yield base


@pytest.fixture(scope="module")
def servers(fake_openai, fake_anthropic) -> dict[str, str]:
    return {"openai": fake_openai, "anthropic": fake_anthropic}


def make_provider(kind: str, servers: dict[str, str], **overrides: object):
    env = {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": servers["openai"],
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": servers["anthropic"],
        "PROVIDER_TIMEOUT_SECONDS": "5",
        "PROVIDER_CONNECT_TIMEOUT_SECONDS": "2",
        **{name: str(value) for name, value in overrides.items()},
    }
    settings = load_settings(env)
    return OpenAIProvider(settings) if kind == "openai" else AnthropicProvider(settings)


MODEL_FOR = {"openai": MODELS["gpt-4o-mini"], "anthropic": MODELS["claude-haiku-4-5"]}
REMOTE = ["openai", "anthropic"]


def run(provider, kind: str, content: str | list[dict[str, str]], max_tokens: int = 200) -> list[Delta]:
    messages = [{"role": "user", "content": content}] if isinstance(content, str) else content
    return list(provider.stream(MODEL_FOR[kind], messages, max_tokens))


def run_until_error(provider, kind: str, content: str, max_tokens: int = 200) -> tuple[list[Delta], ProviderError]:
    """The deltas that arrived before the provider raised, and the error. Fails if it did not raise."""
    received: list[Delta] = []
    with pytest.raises(ProviderError) as caught:
        for delta in provider.stream(MODEL_FOR[kind], [{"role": "user", "content": content}], max_tokens):
            received.append(delta)
    return received, caught.value


def text_of(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def usage_of(deltas: list[Delta]) -> tuple[int | None, int | None]:
    prompt = [d.prompt_tokens for d in deltas if d.prompt_tokens is not None]
    completion = [d.completion_tokens for d in deltas if d.completion_tokens is not None]
    return (prompt[-1] if prompt else None), (completion[-1] if completion else None)


def finish_of(deltas: list[Delta]) -> list[str]:
    return [d.finish_reason for d in deltas if d.finish_reason]


def unique(tag: str) -> str:
    return f"{tag}-{secrets.token_hex(6)}"


# -- a normal reply ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", REMOTE)
def test_reply_text_and_usage_come_from_the_provider(kind, servers):
    provider = make_provider(kind, servers)
    content = 'Hello, wörld 🚀\nline two\r\n<b>event: done</b>\x00 data: {"x": 1}'
    deltas = run(provider, kind, "echo:" + content)
    assert text_of(deltas) == content
    pieces = -(-len(content) // 3)  # the fakes stream 3 characters a piece
    assert usage_of(deltas) == (len("echo:" + content) // 4 + 1, pieces)
    assert finish_of(deltas) == ["stop"]
    assert [d.text for d in deltas if d.text] == [content[i : i + 3] for i in range(0, len(content), 3)]


@pytest.mark.parametrize("kind", REMOTE)
def test_default_reply_streams_word_by_word(kind, servers):
    deltas = run(make_provider(kind, servers), kind, "Say something.")
    words = [d.text for d in deltas if d.text]
    assert len(words) > 5 and text_of(deltas).startswith("Hello! This is the fake")
    assert finish_of(deltas) == ["stop"]


@pytest.mark.parametrize("kind", REMOTE)
def test_max_tokens_ends_with_length(kind, servers):
    deltas = run(make_provider(kind, servers), kind, "tell me more", max_tokens=3)
    assert len([d for d in deltas if d.text]) == 3
    assert finish_of(deltas) == ["length"]
    assert usage_of(deltas)[1] == 3


@pytest.mark.parametrize("kind", REMOTE)
def test_the_provider_instance_serves_many_calls(kind, servers):
    provider = make_provider(kind, servers)
    for n in range(3):
        assert text_of(run(provider, kind, f"echo:call {n}")) == f"call {n}"


# -- Anthropic's message shape ---------------------------------------------------------------
def test_anthropic_sends_system_apart_and_turns_alternating(servers):
    provider = make_provider("anthropic", servers)
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "assistant", "content": "a reply whose question fell out of the context window"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": ""},  # cancelled before its first chunk
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": "third"},
        {"role": "user", "content": "fourth #echo_request"},
    ]
    deltas = run(provider, "anthropic", messages, max_tokens=2000)
    assert finish_of(deltas) == ["stop"]
    received = json.loads(text_of(deltas))
    assert received["system"] == "You are terse.\n\nAnswer in English."
    assert received["messages"] == [
        {"role": "user", "content": "first question\n\nsecond question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "third\n\nfourth #echo_request"},
    ]
    # The prompt's usage counts the system prompt too (the fake's formula: characters // 4 + 1).
    sent = len(received["system"]) + sum(len(m["content"]) for m in received["messages"])
    assert usage_of(deltas)[0] == sent // 4 + 1


def test_anthropic_without_a_system_message_sends_no_system(servers):
    deltas = run(make_provider("anthropic", servers), "anthropic", "hi #echo_request", max_tokens=2000)
    received = json.loads(text_of(deltas))
    assert received == {"system": None, "messages": [{"role": "user", "content": "hi #echo_request"}]}


def test_to_anthropic_shapes_messages():
    assert to_anthropic([{"role": "user", "content": "x"}]) == ("", [{"role": "user", "content": "x"}])
    system, turns = to_anthropic(
        [
            {"role": "system", "content": "  "},
            {"role": "user", "content": "a"},
            {"role": "user", "content": "   "},
            {"role": "assistant", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "user", "content": "d"},
        ]
    )
    assert system == ""
    assert turns == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b\n\nc"},
        {"role": "user", "content": "d"},
    ]
    assert to_anthropic([{"role": "assistant", "content": "only me"}]) == ("", [])


def test_anthropic_with_no_user_turn_fails_without_a_call(servers):
    provider = make_provider("anthropic", servers)
    with pytest.raises(ProviderError) as caught:
        run(provider, "anthropic", [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}])
    assert not caught.value.retryable


# -- errors from the provider ------------------------------------------------------------------
@pytest.mark.parametrize("kind", REMOTE)
@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_retryable(kind, status, servers):
    received, error = run_until_error(make_provider(kind, servers), kind, f"hello #fail={status}")
    assert received == []
    assert error.retryable and error.status == status


def test_anthropic_overloaded_529_is_retryable(servers):
    _, error = run_until_error(make_provider("anthropic", servers), "anthropic", "hello #fail=529")
    assert error.retryable and error.status == 529
    assert "overloaded_error" in str(error)


@pytest.mark.parametrize("kind", REMOTE)
@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retryable(kind, status, servers):
    received, error = run_until_error(make_provider(kind, servers), kind, f"hello #fail={status}")
    assert received == []
    assert not error.retryable and error.status == status


@pytest.mark.parametrize("kind", REMOTE)
def test_a_failure_once_then_success(kind, servers):
    """What the task's retry relies on: the same request after a 429 succeeds."""
    provider = make_provider(kind, servers)
    content = f"echo:retry me {unique('once')} #fail_once=429"
    _, error = run_until_error(provider, kind, content)
    assert error.retryable and error.status == 429
    assert text_of(run(provider, kind, content)) == content[len("echo:") :]


@pytest.mark.parametrize("kind", REMOTE)
def test_an_error_event_mid_stream_is_a_provider_error(kind, servers):
    received, error = run_until_error(make_provider(kind, servers), kind, "echo:abcdefghijkl #sse_error=2")
    assert text_of(received) == "abcdef"
    assert error.retryable


# -- timing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", REMOTE)
def test_a_slow_first_token_within_the_timeout_is_fine(kind, servers):
    provider = make_provider(kind, servers, PROVIDER_TIMEOUT_SECONDS=3)
    started = time.monotonic()
    deltas = run(provider, kind, "echo:patience #ttft=1200")
    assert time.monotonic() - started >= 1.2
    assert text_of(deltas) == "patience #ttft=1200"
    assert finish_of(deltas) == ["stop"]


@pytest.mark.parametrize("kind", REMOTE)
def test_a_first_token_beyond_the_timeout_is_a_retryable_error(kind, servers):
    provider = make_provider(kind, servers, PROVIDER_TIMEOUT_SECONDS=0.5)
    started = time.monotonic()
    received, error = run_until_error(provider, kind, "echo:too slow #ttft=4000")
    elapsed = time.monotonic() - started
    assert text_of(received) == ""
    assert error.retryable
    assert 0.4 < elapsed < 3.0  # the timeout fired, not the fake finishing


@pytest.mark.parametrize("kind", REMOTE)
def test_an_unreachable_provider_is_a_retryable_error(kind, servers):
    dead = f"http://127.0.0.1:{free_port()}"
    overrides = {"OPENAI_BASE_URL": dead + "/v1"} if kind == "openai" else {"ANTHROPIC_BASE_URL": dead}
    started = time.monotonic()
    _, error = run_until_error(make_provider(kind, servers, **overrides), kind, "echo:anyone?")
    assert error.retryable and time.monotonic() - started < 5


# -- streams that stop short must never look like a finished reply ------------------------------
@pytest.mark.parametrize("kind", REMOTE)
@pytest.mark.parametrize("cut", [0, 2])
def test_a_connection_cut_mid_stream_is_a_provider_error(kind, cut, servers):
    received, error = run_until_error(make_provider(kind, servers), kind, f"echo:abcdefghijklmnop #cut={cut}")
    assert text_of(received) == "abcdefghijklmnop"[: 3 * cut]
    assert not finish_of(received)
    assert error.retryable


@pytest.mark.parametrize("kind", REMOTE)
def test_a_body_that_ends_early_without_an_error_is_a_provider_error(kind, servers):
    received, error = run_until_error(make_provider(kind, servers), kind, "echo:abcdefghijklmnop #truncate=2")
    assert text_of(received) == "abcdef"
    assert not finish_of(received)
    assert error.retryable


# -- the fake itself speaks like the real API ----------------------------------------------------
def test_fake_anthropic_wants_credentials_and_a_version(fake_anthropic):
    url = f"{fake_anthropic}/v1/messages"
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    missing_key = requests.post(url, json=body, headers={"anthropic-version": "2023-06-01"}, timeout=5)
    assert missing_key.status_code == 401
    assert missing_key.json()["type"] == "error"
    assert missing_key.json()["error"]["type"] == "authentication_error"
    missing_version = requests.post(url, json=body, headers={"x-api-key": "k"}, timeout=5)
    assert missing_version.status_code == 401
    ok = requests.post(url, json=body, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}, timeout=5)
    assert ok.status_code == 200 and ok.headers["Content-Type"].startswith("text/event-stream")
    names = [line.split(": ", 1)[1] for line in ok.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    system_role = {**body, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]}
    refused = requests.post(url, json=system_role, headers={"x-api-key": "k", "anthropic-version": "v"}, timeout=5)
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request_error"


# -- secrets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", REMOTE)
def test_the_api_key_never_appears_in_errors_or_logs(kind, servers, caplog):
    key = OPENAI_KEY if kind == "openai" else ANTHROPIC_KEY
    provider = make_provider(kind, servers)
    with caplog.at_level(logging.DEBUG):
        run(provider, kind, "echo:fine")
        for content in ("x #fail=401", "x #fail=500", "echo:abcdef #cut=1"):
            _, error = run_until_error(provider, kind, content)
            assert key not in str(error) and key not in repr(error)
            assert error.__cause__ is None and error.__suppress_context__
    assert key not in caplog.text
    assert key not in repr(provider)


# -- the OpenAI provider's SSE reading, from the body's bytes --------------------------------------
SSE_BODY = 'data: {"a": 1}\n\n: a comment\nevent: x\ndata: first\ndata: second\n\ndata:no-space\n\ndata: é😀\n\n'
SSE_EVENTS = ['{"a": 1}', "first\nsecond", "no-space", "é😀"]


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1000])
def test_sse_data_reads_events_however_the_body_is_split(line_end, piece):
    """Every line ending SSE allows, split anywhere: inside a CRLF, inside a multi-byte character."""
    body = SSE_BODY.replace("\n", line_end).encode()
    chunks = [body[i : i + piece] for i in range(0, len(body), piece)]
    assert list(sse_data(chunks)) == SSE_EVENTS


def test_sse_data_keeps_a_crlf_split_between_chunks_inside_one_event():
    # A CR at a chunk's end followed by LF is one line end, not two (which would end the event early).
    chunks = [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]
    assert list(sse_data(chunks)) == ["a\nb"]


def test_sse_data_reads_a_bad_byte_as_a_replacement_character_and_a_last_unended_line():
    assert list(sse_data([b"data: caf\xff\n\n", b"data: [DONE]"])) == ["caf\ufffd", "[DONE]"]
