"""The official `openai` package against a real Relay: completions, chunks, usage, models, errors,
retries, cancellation, resumption and multi-turn conversations."""

from __future__ import annotations

import json
import time

import openai
import pytest
import redis
import requests

from tests.conftest import bearer
from tests.support import collect, reply_text

from .conftest import ORPHAN_GRACE_SECONDS, STREAM_USER, wait_for_window

pytestmark = pytest.mark.slow

TEXT = "Hello from the fake provider, through Relay's OpenAI endpoint!"
USER = [{"role": "user", "content": f"echo:{TEXT}"}]


def test_a_completion_holds_the_exact_text_and_its_usage(client, relay, relay_key):
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert answer.object == "chat.completion" and answer.model == "gpt-4o-mini"
    assert answer.id.startswith("chatcmpl-")
    (choice,) = answer.choices
    assert choice.message.role == "assistant" and choice.message.content == TEXT
    assert choice.finish_reason == "stop"
    usage = answer.usage
    assert usage.completion_tokens == len(range(0, len(TEXT), 3))  # the fake's 3-character pieces
    assert usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    extras = answer.model_extra["x_relay"]
    assert extras["finish_reason"] == "stop" and extras["cost_usd"] > 0 and extras["message_id"]
    # The same stream through Relay's own API replays the same text.
    replay = requests.get(f"{relay.base_url}/api/v1/stream/{extras['stream_id']}", headers=bearer(relay_key),
                          stream=True, timeout=10)  # fmt: skip
    assert reply_text(collect(replay)) == TEXT


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_streaming_completion_holds_the_exact_text(client, include_usage):
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, **options))
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == TEXT
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes == ["stop"]
    if include_usage:
        last = chunks[-1]
        assert last.choices == [] and last.usage.completion_tokens == len(range(0, len(TEXT), 3))
        assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
        assert all(chunk.usage is None for chunk in chunks[:-1])
    else:
        assert all(chunk.usage is None for chunk in chunks)


def test_max_tokens_ends_with_length(client):
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=USER, max_completion_tokens=3)
    assert answer.choices[0].message.content == TEXT[:9]
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens >= 3  # counted by tokenizer


def test_a_cost_cap_ends_with_length_and_says_so(client, relay_key):
    # gpt-4o at $10 per million output tokens: a $0.0001 cap holds the prompt and a few chunks only.
    answer = client.chat.completions.create(model="gpt-4o", messages=USER, extra_headers={"X-Relay-Cost-Cap": "0.0001"})
    assert answer.choices[0].finish_reason == "length"
    assert answer.model_extra["x_relay"]["finish_reason"] == "cost_cap"
    assert 0 < len(answer.choices[0].message.content) < len(TEXT)
    assert answer.model_extra["x_relay"]["cost_usd"] <= 0.0001


def test_models_are_the_same_as_relays_own(client, relay):
    listed = client.models.list()
    own = requests.get(f"{relay.base_url}/api/v1/models", timeout=5).json()["models"]
    assert [model.id for model in listed.data] == [model["id"] for model in own]
    assert {(m.id, m.owned_by) for m in listed.data} == {(m["id"], m["provider"]) for m in own}
    one = client.models.retrieve("gpt-4o-mini")
    assert (one.id, one.object, one.owned_by) == ("gpt-4o-mini", "model", "openai")
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-5-turbo-ultra")
    assert caught.value.code == "model_not_found"


def test_an_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-5-turbo-ultra", messages=USER)
    assert caught.value.code == "model_not_found" and caught.value.param == "model"


def test_a_bad_key_is_an_authentication_error(relay):
    bad = openai.OpenAI(base_url=f"{relay.base_url}/v1", api_key="relay_sk_" + "x" * 43, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert caught.value.code == "invalid_api_key"
    assert set(caught.value.body) == {"message", "type", "param", "code"}
    assert caught.value.response.headers["X-Request-ID"]


def test_a_key_without_chat_is_a_permission_error(relay, admin_token):
    from .conftest import new_key

    key = new_key(relay, admin_token, scopes=("actions:preview",))
    sdk = openai.OpenAI(base_url=f"{relay.base_url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert caught.value.code == "insufficient_scope"


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "n"),
        ({"seed": 7}, "seed"),
        ({"extra_body": {"stream_options": {"include_obfuscation": False}}}, "stream_options.include_obfuscation"),
    ],
)
def test_unsupported_parameters_are_refused_by_name(client, options, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER, **options)
    assert caught.value.code == "unsupported_parameter" and caught.value.param == param
    assert caught.value.status_code == 400


def test_a_rate_limit_is_a_rate_limit_error_with_retry_after(client):
    wait_for_window()
    for _ in range(STREAM_USER[0]):
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert caught.value.code == "rate_limit_exceeded"
    assert 1 <= int(caught.value.response.headers["Retry-After"]) <= STREAM_USER[1]
    assert "stream_user" in caught.value.message


def test_the_sdks_own_retry_waits_for_retry_after(relay, relay_key):
    sdk = openai.OpenAI(base_url=f"{relay.base_url}/v1", api_key=relay_key, max_retries=1, timeout=30)
    wait_for_window()
    for _ in range(STREAM_USER[0]):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=USER)
    started = time.monotonic()
    raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER)
    waited = time.monotonic() - started
    assert raw.retries_taken == 1  # refused once (429, Retry-After), then admitted
    assert raw.parse().choices[0].message.content == TEXT
    assert 0.9 <= waited <= STREAM_USER[1] + 5  # it waited for the window rather than its own 0.5 s backoff


def test_a_stream_the_client_closes_is_cancelled_after_the_grace(client, relay, relay_key, openai_fakes):
    long_text = "x" * 3000  # 1000 chunks, 5 ms apart: about 5 s from the fake
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"echo:{long_text}"}], stream=True
    )
    stream_id = raw.headers["X-Stream-Id"]
    stream = raw.parse()
    received = [next(stream) for _ in range(4)]
    assert received[1].choices[0].delta.content == "xxx"
    stream.close()
    closed = time.monotonic()
    meta = f"{relay.env['REDIS_KEY_PREFIX']}stream:{{{stream_id}}}:meta"
    store = redis.Redis.from_url(relay.env["REDIS_URL"], decode_responses=True)
    while "ended" not in store.hgetall(meta):  # never attach meanwhile: a reader would keep it alive
        assert time.monotonic() - closed < ORPHAN_GRACE_SECONDS + 8, "the stream was never cancelled"
        time.sleep(0.05)
    assert time.monotonic() - closed >= ORPHAN_GRACE_SECONDS / 2  # the grace, less at most a renewal interval
    replay = requests.get(f"{relay.base_url}/api/v1/stream/{stream_id}", headers=bearer(relay_key),
                          stream=True, timeout=10)  # fmt: skip
    events = collect(replay)
    assert events[-1].event == "done" and events[-1].data["finish_reason"] == "cancelled"
    assert len(reply_text(events)) < len(long_text)
    stats = lambda: requests.get(f"{openai_fakes['openai']}/stats", timeout=5).json()  # noqa: E731
    deadline = time.monotonic() + 5
    while stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats()["in_flight"] == 0  # the provider's stream was closed, not read to its end


def test_a_cut_stream_resumed_by_its_id_has_the_same_text(client, relay, relay_key):
    text = "Resumable: " + "abcdefghij" * 6
    messages = [{"role": "user", "content": f"echo:{text}"}]
    uncut = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True) if c.choices)  # fmt: skip
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, stream=True)
    stream = raw.parse()
    first = [next(stream) for _ in range(4)]  # the role, then three pieces
    stream.close()
    got = "".join(chunk.choices[0].delta.content or "" for chunk in first)
    # Chunk k (from 1) is the stream's event k + 1 (event 1 opened it): resume after the last one read.
    resumed = requests.get(f"{relay.base_url}/api/v1/stream/{raw.headers['X-Stream-Id']}",
                           headers={**bearer(relay_key), "Last-Event-ID": str(len(first))}, stream=True, timeout=10)  # fmt: skip
    assert resumed.status_code == 200
    events = collect(resumed)
    assert events[-1].event == "done" and events[-1].data["finish_reason"] == "stop"
    assert got + reply_text(events) == uncut == text


def test_the_chunks_carry_their_journal_ids(relay, relay_key):
    response = requests.post(f"{relay.base_url}/v1/chat/completions", headers=bearer(relay_key), stream=True,
                             json={"model": "gpt-4o-mini", "messages": USER, "stream": True}, timeout=10)  # fmt: skip
    blocks = [b for b in response.text.split("\n\n") if b.strip()]
    assert blocks[-1] == "data: [DONE]"
    ids = [int(b.split("\n")[0].removeprefix("id: ")) for b in blocks[:-1]]
    assert ids == list(range(1, len(ids) + 1))
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["X-Stream-Id"]


def test_multi_turn_messages_reach_the_provider_as_given_and_are_stored(client, relay, relay_key):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}, {"type": "text", "text": "#echo_request"}]},
    ]
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, temperature=0.25, top_p=0.5, stop=["END", "STOP"]
    )
    sent = [*messages[:3], {"role": "user", "content": "And 3+3?\n#echo_request"}]
    received = json.loads(answer.choices[0].message.content)
    assert received == {"messages": sent, "temperature": 0.25, "top_p": 0.5, "stop": ["END", "STOP"]}
    conversation_id = answer.model_extra["x_relay"]["conversation_id"]
    stored = requests.get(f"{relay.base_url}/api/v1/conversations/{conversation_id}", headers=bearer(relay_key),
                          timeout=10).json()  # fmt: skip
    turns = [{"role": m["role"], "content": m["content"]} for m in stored["messages"]]
    assert turns == [*sent, {"role": "assistant", "content": answer.choices[0].message.content}]
    assert stored["title"] == "What is 2+2?"


def test_anthropic_gets_the_system_prompt_as_its_system_parameter(client):
    messages = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hi #echo_request"}]
    answer = client.chat.completions.create(model="claude-haiku-4-5", messages=messages, stop=["FIN"])
    received = json.loads(answer.choices[0].message.content)
    assert received == {"system": "Answer in French.", "messages": [{"role": "user", "content": "Hi #echo_request"}]}


@pytest.mark.parametrize("option", ["temperature", "top_p"])
def test_anthropic_models_refuse_what_the_messages_api_does_not_take(client, option):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude-haiku-4-5", messages=USER, **{option: 0.5})
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", option)
