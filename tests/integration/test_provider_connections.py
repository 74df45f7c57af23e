"""The worker keeps its connection to the provider from one reply to the next: a reply read to
[DONE] but not to the end of its body would cost the next one a new TCP (and, against a real
provider, TLS) handshake before its first token. Reading that end is bounded in time."""

from __future__ import annotations

import time

import pytest
import requests

from tests.support import SSEEvent, collect

pytestmark = pytest.mark.slow


def fake_stats(fake_openai: str) -> dict:
    return requests.get(fake_openai.removesuffix("/v1") + "/stats", timeout=5).json()


def reply(stack, token: str, message: str) -> list[SSEEvent]:
    response = stack.post_stream(token, {"message": message, "model": "gpt-4o-mini"})
    assert response.status_code == 200, response.text
    events = collect(response)
    assert events[-1].event == "done", events[-1]
    return events


def test_the_worker_reuses_its_connection_to_the_provider(stack, fake_openai):
    token = stack.anon_token()
    reply(stack, token, "#chunks=5 #gap=0")  # the worker's connection exists from here on
    before = fake_stats(fake_openai)
    for _ in range(4):
        reply(stack, token, "#chunks=5 #gap=0")
    after = fake_stats(fake_openai)
    assert after["requests"] - before["requests"] == 4
    # One remote worker process, one reply at a time: its one pooled connection serves them all.
    # The one new connection is the GET /stats that read `after` (closing it each reply: 5).
    assert after["connections"] - before["connections"] == 1, (before, after)


def test_a_body_left_open_after_done_does_not_hold_the_reply(stack, fake_openai):
    token = stack.anon_token()
    started = time.monotonic()
    events = reply(stack, token, "#chunks=3 #gap=0 #linger=5000")
    # The provider keeps its body open 5 s after [DONE]; the reply is complete at [DONE].
    assert time.monotonic() - started < 3, "the reply waited for the provider to end its body"
    assert events[-1].data["finish_reason"] == "stop"
