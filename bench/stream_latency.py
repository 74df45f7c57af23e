"""Time to first chunk and total time: through Relay vs the provider called directly.

The same fake OpenAI-style server (first token after 5 ms) serves both; the
two kinds of request are interleaved in one run, read by the same HTTP client,
so the difference is what Relay adds (auth, validation, database writes, the
Celery hop, the journal and the pub/sub hub).

    .venv/bin/python bench/stream_latency.py [--streams 200] [--postgres URL]
"""

from __future__ import annotations

import argparse
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


def direct(session: requests.Session, provider: str):
    t0 = time.perf_counter()
    response = session.post(
        f"{provider}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "stream": True},
        headers={"Authorization": "Bearer sk-bench"},
        stream=True,
        timeout=30,
    )
    return first_and_total(response, b'"content"', b"[DONE]", t0)


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
        for _ in range(args.warmup):
            direct(session, provider)
            through_relay(session, base, token)
        results = {"direct": ([], []), "relay": ([], [])}
        for _ in range(args.streams):
            for name, call in (("direct", lambda: direct(session, provider)),
                               ("relay", lambda: through_relay(session, base, token))):  # fmt: skip
                first, total = call()
                results[name][0].append(first)
                results[name][1].append(total)

    print(f"stream latency, {args.streams} streams each, interleaved; fake provider first token 5 ms")
    print(f"database: {'PostgreSQL' if args.postgres else 'SQLite'}")
    for name in ("direct", "relay"):
        print(report(f"{name} time to first chunk", results[name][0]))
        print(report(f"{name} total", results[name][1]))
    added_first = statistics.median(results["relay"][0]) - statistics.median(results["direct"][0])
    added_total = statistics.median(results["relay"][1]) - statistics.median(results["direct"][1])
    print(f"Relay adds (median): first chunk {added_first * 1000:.2f} ms, total {added_total * 1000:.2f} ms")
    print(f"goal: under 5 ms added to the median first chunk -> {'met' if added_first < 0.005 else 'NOT met'}")


if __name__ == "__main__":
    main()
