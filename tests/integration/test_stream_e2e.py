"""End to end with real processes: gunicorn (gevent), Celery workers, Redis, SQLite,
the real local model and the fake OpenAI-style server."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import requests

from app.catalog import BUILT_IN
from app.tokens import count_prompt_tokens
from tests.support import collect, reply_text

pytestmark = pytest.mark.slow


def conversation(stack, token: str, conversation_id: str) -> dict:
    response = requests.get(
        f"{stack.base_url}/api/v1/conversations/{conversation_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200
    return response.json()


def test_local_model_streams_a_real_reply_and_persists_it(stack):
    token = stack.anon_token()
    started = time.monotonic()
    response = stack.post_stream(token, {"message": "Name three colours.", "model": "local-smollm2", "max_tokens": 24})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    stream_id = response.headers["X-Stream-Id"]
    events = collect(response)
    wall_ms = (time.monotonic() - started) * 1000

    assert [e.event for e in events][0] == "stream"
    assert events[0].data["stream_id"] == stream_id and events[0].data["model"] == "local-smollm2"
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    chunks = [e for e in events if e.event == "message_chunk"]
    assert chunks and [c.data["index"] for c in chunks] == list(range(len(chunks)))
    done = events[-1]
    assert done.event == "done", done.data
    assert done.data["finish_reason"] in ("stop", "length")
    assert done.data["usage"]["completion_tokens"] == len(chunks)
    assert done.data["usage"]["prompt_tokens"] > 0
    # The first token needs a prompt evaluation (well over a millisecond); later ones come after it,
    # and the whole stream fits inside what the client timed.
    assert 0 < done.data["ttft_ms"] <= done.data["duration_ms"] <= wall_ms
    assert len(chunks) == 1 or done.data["ttft_ms"] < done.data["duration_ms"]

    stored = conversation(stack, token, events[0].data["conversation_id"])
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][0]["content"] == "Name three colours."
    assert stored["messages"][1]["content"] == reply_text(events)
    assert stored["messages"][1]["id"] == done.data["message_id"]
    assert stored["messages"][1]["usage"]["completion_tokens"] == len(chunks)


def test_body_starts_with_retry_and_frames_each_event(stack):
    token = stack.anon_token()
    response = stack.post_stream(token, {"message": "echo:abc", "model": "gpt-4o-mini"})
    raw = b"".join(response.iter_content(chunk_size=None)).decode("ascii")
    assert raw.startswith("retry: 2000\n\n")
    blocks = [b for b in raw.split("\n\n") if b and not b.startswith("retry")]
    for block in blocks:
        lines = block.split("\n")
        assert lines[0].startswith("id: ") and lines[1].startswith("event: ") and lines[2].startswith("data: ")
        assert len(lines) == 3


@pytest.mark.parametrize(
    "content",
    [
        "line one\nline two\r\nthree\rfour",
        'event: done\ndata: {"finish_reason": "stop"}\n\nid: 99',
        "separators \u2028 and \u2029 and <script>alert(1)</script>",
        "emoji 🚀 and accents ñ é — done",
    ],
)
def test_any_model_output_arrives_byte_for_byte(stack, content):
    token = stack.anon_token()
    events = collect(stack.post_stream(token, {"message": "echo:" + content, "model": "gpt-4o-mini"}))
    assert events[-1].event == "done"
    assert reply_text(events) == content


def test_openai_provider_conversation_continues_with_context(stack):
    token = stack.anon_token()
    first = collect(stack.post_stream(token, {"message": "echo:first", "model": "gpt-4o-mini"}))
    conversation_id = first[0].data["conversation_id"]
    second = collect(
        stack.post_stream(token, {"message": "echo:second", "model": "gpt-4o-mini", "conversation_id": conversation_id})
    )
    assert second[0].data["conversation_id"] == conversation_id
    stored = conversation(stack, token, conversation_id)
    assert [m["content"] for m in stored["messages"]] == ["echo:first", "first", "echo:second", "second"]
    # The provider reported usage; the done event carries it and a cost at gpt-4o-mini prices.
    done = second[-1].data
    assert done["usage"]["completion_tokens"] == 2
    expected = (done["usage"]["prompt_tokens"] * 0.15 + 2 * 0.60) / 1_000_000
    assert done["cost_usd"] == pytest.approx(expected, rel=1e-6)


def test_max_tokens_stops_with_length(stack):
    token = stack.anon_token()
    events = collect(stack.post_stream(token, {"message": "tell me more", "model": "gpt-4o-mini", "max_tokens": 3}))
    # The fake's first three chunks, a word each, however many events carry them.
    assert reply_text(events) == "Hello! This is "
    assert events[-1].data["finish_reason"] == "length"


def test_cost_cap_stops_generation(stack):
    token = stack.anon_token()
    # gpt-4o: $10 per million output tokens; a 300-character echo is 100 chunks.
    # The cap admits the prompt plus a handful of chunks, then stops.
    prompt = "echo:" + "x" * 300
    spec = next(spec for spec in BUILT_IN if spec.id == "gpt-4o")
    cap = spec.cost(count_prompt_tokens(spec, [{"role": "user", "content": prompt}]), 0) + 0.0002
    events = collect(stack.post_stream(token, {"message": prompt, "model": "gpt-4o", "cost_cap_usd": cap}))
    done = events[-1]
    assert done.event == "done" and done.data["finish_reason"] == "cost_cap"
    chunks = [e for e in events if e.event == "message_chunk"]
    assert 0 < len(chunks) < 100
    assert all(c.data["cost_usd"] <= cap for c in chunks)


@pytest.mark.parametrize("cap", [1e-13, 1e-6])
def test_a_cap_below_the_prompts_cost_is_422_and_the_provider_is_never_called(stack, fake_openai, cap):
    stats_url = fake_openai.removesuffix("/v1") + "/stats"
    before = requests.get(stats_url, timeout=5).json()["requests"]
    body = {
        "message": "echo:" + "a prompt that costs more than the cap " * 4,
        "model": "gpt-4o-mini",
        "cost_cap_usd": cap,
    }
    response = stack.post_stream(stack.anon_token(), body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error" and "cost_cap_usd" in error["details"]["fields"]
    assert requests.get(stats_url, timeout=5).json()["requests"] == before


def test_get_stream_with_query_parameters(stack):
    token = stack.anon_token()
    response = requests.get(
        f"{stack.base_url}/api/v1/stream",
        params={"message": "echo:via get", "model": "gpt-4o-mini", "max_tokens": "50"},
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=30,
    )
    assert response.status_code == 200
    assert reply_text(collect(response)) == "via get"


def test_one_gevent_process_serves_100_concurrent_streams(stack, fake_openai):
    """100 streams against one gunicorn worker process and one gevent Celery worker.
    The fake provider holds every first token until all 100 are in flight at once,
    which a server handling streams one after another could never reach.
    (bench/concurrent_streams.py measures the wall time of 200 ms replies.)"""
    stats_url = fake_openai.removesuffix("/v1") + "/stats"
    before = requests.get(stats_url, timeout=5).json()
    token = stack.anon_token()

    def one(i: int) -> str:
        response = stack.post_stream(token, {"message": f"echo:reply {i:03d} #hold=100", "model": "gpt-4o-mini"})
        return reply_text(collect(response))

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        replies = list(pool.map(one, range(100)))
    wall = time.monotonic() - started
    after = requests.get(stats_url, timeout=5).json()

    print(f"100 concurrent streams held open together: wall {wall:.2f} s; max in flight {after['max_in_flight']}")
    assert replies == [f"reply {i:03d} #hold=100" for i in range(100)]
    assert after["requests"] - before["requests"] == 100
    assert after["hold_timeouts"] == before["hold_timeouts"], "the 100 streams were never all in flight at once"
    assert after["max_in_flight"] >= 100


def test_metrics_gather_web_and_worker_processes_with_bounded_labels(stack):
    token = stack.anon_token()
    response = stack.post_stream(token, {"message": "echo:count me", "model": "gpt-4o-mini"})
    stream_id = response.headers["X-Stream-Id"]
    assert collect(response)[-1].event == "done"
    text = requests.get(f"{stack.base_url}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    # From the Celery worker process:
    assert samples['relay_streams_total{outcome="stop"}'] >= 1
    assert samples['relay_llm_cost_usd_total{model="gpt-4o-mini"}'] > 0
    assert samples["relay_stream_ttft_seconds_count"] >= 1
    # From the gunicorn worker process:
    assert any(name.startswith("http_requests_total{") and 'endpoint="/api/v1/stream"' in name for name in samples)
    assert "relay_streams_active" in samples
    # Labels never carry ids or tokens.
    for line in text.splitlines():
        assert stream_id not in line and token not in line and "anon:" not in line, line
