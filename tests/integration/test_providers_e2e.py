"""Remote providers through a real Relay: gunicorn (gevent) and a gevent Celery worker with
both remote providers configured, talking to the fake OpenAI and fake Anthropic servers.

This module runs a Relay of its own (its own Redis key prefix, so its own Celery queues, and
its own SQLite file) beside the session's `stack`, so the `anthropic` provider can be on.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import Stack, stack_env
from tests.support import collect, fake_server, reply_text

pytestmark = pytest.mark.slow

CLAUDE = "claude-haiku-4-5"
GPT = "gpt-4o-mini"


@pytest.fixture(scope="module")
def fake_anthropic(tmp_path_factory) -> Iterator[str]:
    """The fake Anthropic Messages API, for this module only (its /stats count our calls alone)."""
    with fake_server("anthropic", tmp_path_factory.mktemp("fake-anthropic-e2e"), first_token_ms=5) as base:
        yield base


@pytest.fixture(scope="module")
def relay(tmp_path_factory, base_env, fake_openai, fake_anthropic) -> Iterator[Stack]:
    """A second Relay (web + gevent worker) with OPENAI_* and ANTHROPIC_* pointing at the fakes."""
    log_dir = tmp_path_factory.mktemp("providers-relay")
    env = stack_env(
        base_env,
        fake_openai,
        log_dir,
        REDIS_KEY_PREFIX=base_env["REDIS_KEY_PREFIX"] + "providers:",  # its own queues and journals
        ANTHROPIC_API_KEY="sk-ant-test-not-a-real-key",
        ANTHROPIC_BASE_URL=fake_anthropic,
        DEFAULT_MODEL=CLAUDE,
        PROVIDER_TIMEOUT_SECONDS="10",
        LIMIT_ANON_HOURLY="0",
        LIMIT_ANON_IP_HOURLY="0",
        LIMIT_ANON_MINT="0",
    )
    running = Stack(env, log_dir)
    try:
        running.start_web(name="providers-web", port=int(env["PORT"]))
        running.start_worker("providers-worker", "gevent", "generate", 50)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def token(relay) -> str:
    return relay.anon_token()


def stats(base: str) -> dict:
    return requests.get(f"{base.removesuffix('/v1')}/stats", timeout=5).json()


def stream(relay: Stack, token: str, message: str, model: str, **fields) -> list:
    response = relay.post_stream(token, {"message": message, "model": model, **fields})
    assert response.status_code == 200, response.text
    events = collect(response)
    assert events[0].event == "stream" and events[0].data["model"] == model
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert [e.event for e in events].count("done") + [e.event for e in events].count("error") == 1
    assert events[-1].event in ("done", "error")
    return events


def conversation(relay: Stack, token: str, conversation_id: str) -> dict:
    response = requests.get(
        f"{relay.base_url}/api/v1/conversations/{conversation_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200
    return response.json()


def stream_row(relay: Stack, stream_id: str) -> dict:
    engine = create_engine(relay.env["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT status, finish_reason, error_code FROM streams WHERE id = :id"), {"id": stream_id}
            )
            return dict(row.mappings().one())
    finally:
        engine.dispose()


def test_models_lists_both_remote_providers(relay):
    models = requests.get(f"{relay.base_url}/api/v1/models", timeout=5).json()["models"]
    by_id = {m["id"]: m for m in models}
    assert by_id[CLAUDE]["provider"] == "anthropic" and by_id[CLAUDE]["default"] is True
    assert by_id[GPT]["provider"] == "openai"


# -- Anthropic ----------------------------------------------------------------------------------
def test_anthropic_reply_arrives_byte_for_byte_and_is_persisted(relay, token):
    content = 'line one\nline two\r\nthree\rfour \u2028 event: done\ndata: {"x": 1}\n\nid: 99 <b>ñ 🚀</b>'
    events = stream(relay, token, "echo:" + content, CLAUDE)
    done = events[-1]
    assert done.event == "done", done.data
    assert done.data["finish_reason"] == "stop"
    assert reply_text(events) == content
    chunks = [e for e in events if e.event == "message_chunk"]
    assert [c.data["index"] for c in chunks] == list(range(len(chunks)))
    # Usage from the provider's own figures: message_start's input_tokens, message_delta's output_tokens
    # (the fake's pieces, 3 characters each, however many events carried them).
    pieces = -(-len(content) // 3)
    assert done.data["usage"] == {"prompt_tokens": len("echo:" + content) // 4 + 1, "completion_tokens": pieces}
    expected = (done.data["usage"]["prompt_tokens"] * 1.00 + pieces * 5.00) / 1_000_000
    assert done.data["cost_usd"] == pytest.approx(expected, rel=1e-6)

    stored = conversation(relay, token, events[0].data["conversation_id"])
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][1]["content"] == content
    assert stored["messages"][1]["id"] == done.data["message_id"]
    assert stored["messages"][1]["model"] == CLAUDE


def test_anthropic_conversation_continues_with_alternating_turns(relay, token):
    first = stream(relay, token, "echo:first", CLAUDE)
    conversation_id = first[0].data["conversation_id"]
    second = stream(relay, token, "show me #echo_request", CLAUDE, conversation_id=conversation_id, max_tokens=2000)
    assert second[-1].event == "done"
    received = json.loads(reply_text(second))
    assert received["messages"] == [
        {"role": "user", "content": "echo:first"},
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "show me #echo_request"},
    ]


def test_anthropic_max_tokens_ends_with_length(relay, token):
    events = stream(relay, token, "tell me a long story", CLAUDE, max_tokens=3)
    assert reply_text(events) == "Hello! This is "  # the fake's first three chunks, a word each
    assert events[-1].event == "done" and events[-1].data["finish_reason"] == "length"


def test_anthropic_500_ends_with_provider_error_after_retries(relay, token, fake_anthropic):
    before = stats(fake_anthropic)["failures"]
    events = stream(relay, token, "hello #fail=500", CLAUDE)
    error = events[-1]
    assert error.event == "error"
    assert error.data["error_code"] == "provider_error"
    assert [e.event for e in events] == ["stream", "error"]
    # Retried before the first chunk: one call and two retries.
    assert stats(fake_anthropic)["failures"] - before == 3
    assert stream_row(relay, events[0].data["stream_id"])["error_code"] == "provider_error"


def test_anthropic_400_is_not_retried(relay, token, fake_anthropic):
    before = stats(fake_anthropic)["failures"]
    events = stream(relay, token, "hello #fail=400", CLAUDE)
    assert events[-1].event == "error" and events[-1].data["error_code"] == "provider_error"
    assert stats(fake_anthropic)["failures"] - before == 1


@pytest.mark.parametrize("status", [429, 529])
def test_anthropic_failure_once_then_success_is_done(relay, token, fake_anthropic, status):
    before = stats(fake_anthropic)["failures"]
    message = f"echo:second time lucky {secrets.token_hex(6)} #fail_once={status}"
    events = stream(relay, token, message, CLAUDE)
    assert events[-1].event == "done", events[-1].data
    assert reply_text(events) == message[len("echo:") :]
    assert stats(fake_anthropic)["failures"] - before == 1


def test_anthropic_cut_mid_stream_is_an_error_not_a_done(relay, token, fake_anthropic):
    before = stats(fake_anthropic)["requests"]
    events = stream(relay, token, "echo:abcdefghijklmnopqrstuvwxyz #cut=3", CLAUDE)
    assert events[-1].event == "error", events[-1].data
    assert events[-1].data["error_code"] == "provider_error"
    assert "done" not in [e.event for e in events]
    assert reply_text(events) == "abcdefghi"  # what arrived before the cut, and nothing twice
    # Not retried: chunks had already gone out.
    assert stats(fake_anthropic)["requests"] - before == 1
    row = stream_row(relay, events[0].data["stream_id"])
    assert row["status"] == "failed" and row["error_code"] == "provider_error"


def test_anthropic_clean_but_early_end_is_an_error_not_a_done(relay, token):
    events = stream(relay, token, "echo:abcdefghijklmnopqrstuvwxyz #truncate=2", CLAUDE)
    assert events[-1].event == "error" and events[-1].data["error_code"] == "provider_error"
    assert reply_text(events) == "abcdef"


def test_anthropic_error_event_mid_stream_is_a_provider_error(relay, token):
    events = stream(relay, token, "echo:abcdefghijklmnopqrstuvwxyz #sse_error=2", CLAUDE)
    assert events[-1].event == "error" and events[-1].data["error_code"] == "provider_error"
    assert reply_text(events) == "abcdef"


def test_anthropic_cut_before_the_first_chunk_is_retried(relay, token, fake_anthropic):
    before = stats(fake_anthropic)["requests"]
    events = stream(relay, token, "echo:never arrives #cut=0", CLAUDE)
    assert [e.event for e in events] == ["stream", "error"]
    assert events[-1].data["error_code"] == "provider_error"
    assert stats(fake_anthropic)["requests"] - before == 3


def test_anthropic_slow_first_token_still_streams(relay, token):
    events = stream(relay, token, "echo:worth the wait #ttft=1500", CLAUDE)
    assert events[-1].event == "done"
    assert events[-1].data["ttft_ms"] >= 1500
    assert reply_text(events) == "worth the wait #ttft=1500"


# -- OpenAI ---------------------------------------------------------------------------------------
def test_openai_500_ends_with_provider_error(relay, token):
    events = stream(relay, token, "hello #fail=500", GPT)
    assert [e.event for e in events] == ["stream", "error"]
    assert events[-1].data["error_code"] == "provider_error"


def test_openai_429_once_then_success_is_done(relay, token):
    message = f"echo:retried {secrets.token_hex(6)} #fail_once=429"
    events = stream(relay, token, message, GPT)
    assert events[-1].event == "done", events[-1].data
    assert reply_text(events) == message[len("echo:") :]


def test_openai_cut_mid_stream_is_an_error_not_a_done(relay, token):
    events = stream(relay, token, "echo:abcdefghijklmnopqrstuvwxyz #cut=3", GPT)
    assert events[-1].event == "error", events[-1].data
    assert events[-1].data["error_code"] == "provider_error"
    assert reply_text(events) == "abcdefghi"


def test_openai_clean_but_early_end_is_an_error_not_a_done(relay, token):
    events = stream(relay, token, "echo:abcdefghijklmnopqrstuvwxyz #truncate=2", GPT)
    assert events[-1].event == "error" and events[-1].data["error_code"] == "provider_error"
    assert reply_text(events) == "abcdef"


def test_openai_error_event_mid_stream_is_a_provider_error(relay, token):
    events = stream(relay, token, "echo:abcdefghijklmnopqrstuvwxyz #sse_error=2", GPT)
    assert events[-1].event == "error" and events[-1].data["error_code"] == "provider_error"
    assert reply_text(events) == "abcdef"
