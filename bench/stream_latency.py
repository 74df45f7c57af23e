"""Time to first chunk and total time: through Relay (its own API and its OpenAI-compatible
/v1/chat/completions) vs the provider called directly.

The same fake OpenAI-style server (first token after 5 ms) serves all three; the
kinds of request are interleaved in one run, read by the same HTTP client, so
the difference is what Relay adds (auth, validation, database writes, the
Celery hop, the journal and the pub/sub hub). The first chunk of an OpenAI-style
stream is the first with content (Relay's opening chunk holds only the role).

    .venv/bin/python bench/stream_latency.py [--streams 200] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import requests
from _stack import fake_openai, high_limits_env, percentile, relay, workdir


def first_and_total(response: requests.Response, first_marker: bytes, end_marker: bytes, t0: float):
    first = None
    buffer = b""
    for piece in response.iter_content(chunk_size=None):
        buffer += piece
        if first is None and first_marker in buffer:
            first = time.perf_counter() - t0
        if end_marker in buffer:
            break
    total = time.perf_counter() - t0
    response.close()
    if first is None:
        raise RuntimeError(f"no chunk in response: {buffer[:300]!r}")
    return first, total


def first_content_and_total(response: requests.Response, t0: float):
    """An OpenAI-style stream: time to the first chunk with content, and to `data: [DONE]`."""
    first = None
    buffer = b""
    for piece in response.iter_content(chunk_size=None):
        buffer += piece
        while first is None and b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            data = next((line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")), b"")
            choices = json.loads(data).get("choices") if data.startswith(b"{") else None
            if choices and choices[0]["delta"].get("content"):
                first = time.perf_counter() - t0
        if b"[DONE]" in buffer:
            break
    total = time.perf_counter() - t0
    response.close()
    if first is None:
        raise RuntimeError(f"no chunk with content in response: {buffer[:300]!r}")
    return first, total


def openai_style(session: requests.Session, url: str, key: str):
    t0 = time.perf_counter()
    response = session.post(
        f"{url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        stream=True,
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(response.text)
    return first_content_and_total(response, t0)


def through_relay(session: requests.Session, base: str, token: str):
    t0 = time.perf_counter()
    response = session.post(
        f"{base}/api/v1/stream",
        json={"message": "hello", "model": "gpt-4o-mini"},
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(response.text)
    return first_and_total(response, b"event: message_chunk", b"event: done", t0)


def report(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{name:<28} median {statistics.median(ms):7.2f} ms   p99 {percentile(ms, 99):7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--postgres", default=None, help="DATABASE_URL of a PostgreSQL database (default SQLite)")
    args = parser.parse_args()

    with (
        workdir() as tmp,
        fake_openai(first_token_ms=5, token_ms=1, log_dir=tmp) as provider,
        relay(provider, tmp, database_url=args.postgres, extra_env=high_limits_env()) as base,
    ):
        session = requests.Session()
        token = session.post(f"{base}/api/v1/anon_session", timeout=5).json()["token"]
        calls = {
            "direct": lambda: openai_style(session, provider, "sk-bench"),
            "relay": lambda: through_relay(session, base, token),
            "relay /v1": lambda: openai_style(session, base, token),
        }
        for _ in range(args.warmup):
            for call in calls.values():
                call()
        results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in calls}
        for _ in range(args.streams):
            for name, call in calls.items():
                first, total = call()
                results[name][0].append(first)
                results[name][1].append(total)

    print(f"stream latency, {args.streams} streams each, interleaved; fake provider first token 5 ms")
    print(f"database: {'PostgreSQL' if args.postgres else 'SQLite'}")
    for name in calls:
        print(report(f"{name} time to first chunk", results[name][0]))
        print(report(f"{name} total", results[name][1]))
    for name, goal_ms in (("relay", 5), ("relay /v1", 10)):
        added_first = statistics.median(results[name][0]) - statistics.median(results["direct"][0])
        added_total = statistics.median(results[name][1]) - statistics.median(results["direct"][1])
        print(f"{name} adds (median): first chunk {added_first * 1000:.2f} ms, total {added_total * 1000:.2f} ms")
        met = "met" if added_first < goal_ms / 1000 else "NOT met"
        print(f"  goal: under {goal_ms} ms added to the median first chunk -> {met}")


if __name__ == "__main__":
    main()
