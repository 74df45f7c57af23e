"""Admission cost of POST /api/v1/stream, against a bare Flask endpoint on the same gunicorn config.

Three targets, each gunicorn with gunicorn.conf.py (gevent) and the same
number of workers, measured in one run, the latency requests interleaved:
  bare    a Flask app with one POST route that parses the JSON body and
          answers 200 text/event-stream (this module's `bare_app`)
  relay   Relay with every limit and budget on (values out of the bench's
          reach): auth, validation, global_ip, the admission script
          (stream limits, anonymous quotas, budget reservation), the journal,
          the enqueue, the SSE response
  off     the same Relay with every limit and budget off: what `relay` costs
          more is what limits, quotas and budgets cost
Each request is timed to the response headers, then closed (the stream body
is discarded). Streams go to the local model's queue, which no worker
consumes here, so nothing but admission runs.

Redis round trips are counted on a private redis-server by INFO stats
`total_reads_processed` (one per command or pipeline a client sends; commands
inside a Lua script are not round trips), before and after each target's
sequential phase; Relay's Celery worker is stopped first so only the API's
traffic counts.

    .venv/bin/python bench/admission.py [--requests 400] [--web-workers 2] [--concurrency 8]
"""

from __future__ import annotations

import json

from flask import Flask, Response, request

bare_app = Flask("bare")


@bare_app.post("/bare")
def bare():
    body = request.get_json()
    return Response("retry: 2000\n\n", mimetype="text/event-stream", headers={"X-Len": str(len(body))})


def main() -> None:  # noqa: PLR0915 - one linear script: start, measure, print
    import argparse
    import contextlib
    import os
    import shutil
    import statistics
    import subprocess
    import sys
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import redis
    import requests
    from _stack import VENV_BIN, Process, free_port, percentile, relay_stack, wait_until, workdir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="latency samples per target")
    parser.add_argument("--rt-requests", type=int, default=100, help="requests per target for the round trips")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="client threads of the throughput phase")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each throughput phase")
    args = parser.parse_args()

    limits_on = {
        **{f"LIMIT_{n}": "1000000/60" for n in ("GLOBAL_IP", "STREAM_USER", "STREAM_IP", "ANON_HOURLY",
                                                   "ANON_IP_HOURLY", "ANON_MINT")},
        "LIMIT_ANON_LIFETIME": "1000000",
        "DAILY_SPEND_CEILING_USD": "1000000", "ANON_DAILY_BUDGET_USD": "1000000",
    }  # fmt: skip
    limits_off = {name: "0" for name in limits_on}
    body = {"message": "hello", "model": "local-smollm2"}

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(workdir())
        port = free_port()
        server = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        stack.callback(server.wait, 10)
        stack.callback(server.terminate)
        url = f"redis://127.0.0.1:{port}/0"
        monitor = redis.Redis.from_url(url)

        def answers() -> bool:
            try:
                return bool(monitor.ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, 10, "private redis-server")

        def reads() -> int:
            return int(monitor.info("stats")["total_reads_processed"])

        common = {"REDIS_URL": url, "WEB_CONCURRENCY": str(args.web_workers)}
        targets: dict[str, dict] = {}
        for name, settings in (("relay", limits_on), ("off", limits_off)):
            folder = tmp / name
            folder.mkdir()
            running = stack.enter_context(
                relay_stack("http://127.0.0.1:9", folder, args.web_workers, 4, extra_env={**common, **settings})
            )
            running.worker.stop()  # no Celery traffic in the counts; nothing consumes the local queue here
            token = requests.post(f"{running.base}/api/v1/anon_session", timeout=5).json()["token"]
            targets[name] = {"url": f"{running.base}/api/v1/stream", "headers": {"Authorization": f"Bearer {token}"}}
        bare_port = free_port()
        bare_env = {**os.environ, "PORT": str(bare_port), "WEB_CONCURRENCY": str(args.web_workers),
                    "PYTHONPATH": str(VENV_BIN.parent.parent)}  # fmt: skip
        bare_process = Process("bare", [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "bench.admission:bare_app"],
                               bare_env, tmp)  # fmt: skip
        stack.callback(bare_process.stop)
        bare_url = f"http://127.0.0.1:{bare_port}/bare"
        wait_until(lambda: requests.post(bare_url, json=body, timeout=1).ok, 30, "the bare app", bare_process)
        targets = {"bare": {"url": bare_url, "headers": {}}, **targets}

        def once(session: requests.Session, target: dict) -> float:
            started = time.perf_counter()
            response = session.post(target["url"], json=body, headers=target["headers"], stream=True, timeout=10)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"{target['url']}: {response.status_code} {response.text[:300]}")
            response.close()
            return elapsed

        session = requests.Session()
        for _ in range(30):  # warm up every process and connection pool
            for target in targets.values():
                once(session, target)

        # Round trips: each target alone, sequential, against an idle Redis.
        round_trips = {}
        for name, target in targets.items():
            time.sleep(0.5)
            before = reads()
            for _ in range(args.rt_requests):
                once(session, target)
            time.sleep(0.5)  # let each stream's clean-up (reader gone, cancel) land
            round_trips[name] = (reads() - before - 1) / args.rt_requests

        latency: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(args.requests):
            for name, target in targets.items():
                latency[name].append(once(session, target) * 1000)

        throughput = {}
        for name, target in targets.items():
            done = []
            stop_at = time.monotonic() + args.seconds
            lock = threading.Lock()

            def client(target=target, done=done, stop_at=stop_at, lock=lock) -> None:
                own = requests.Session()
                count = 0
                while time.monotonic() < stop_at:
                    once(own, target)
                    count += 1
                with lock:
                    done.append(count)

            started = time.monotonic()
            with ThreadPoolExecutor(args.concurrency) as pool:
                for _ in range(args.concurrency):
                    pool.submit(client)
            throughput[name] = sum(done) / (time.monotonic() - started)

    print(f"POST /api/v1/stream admission vs a bare Flask endpoint; gunicorn gevent, {args.web_workers} workers")
    print(f"latency to response headers, {args.requests} sequential requests each, interleaved; "
          f"throughput with {args.concurrency} client threads for {args.seconds:.0f} s")  # fmt: skip
    for name in targets:
        ms = latency[name]
        print(f"  {name:<6} median {statistics.median(ms):6.2f} ms   p99 {percentile(ms, 99):6.2f} ms   "
              f"{throughput[name]:7.0f} req/s   Redis round trips/request {round_trips[name]:5.2f}")  # fmt: skip
    added = statistics.median(latency["relay"]) - statistics.median(latency["bare"])
    limits_added = statistics.median(latency["relay"]) - statistics.median(latency["off"])
    limit_trips = round_trips["relay"] - round_trips["off"]
    print(f"Relay's whole admission adds {added:.2f} ms median over the bare endpoint "
          f"(auth, validation, limits, budget, journal, enqueue, SSE start)")  # fmt: skip
    print(f"limits, quotas and budget add {limits_added:.2f} ms median and {limit_trips:.2f} Redis round trips "
          f"per admitted request (goal: at most 3)")  # fmt: skip
    print(f"goal: admission adds under 1 ms median -> {'met' if limits_added < 1 else 'NOT met'} for limits and budget, "
          f"{'met' if added < 1 else 'NOT met'} for the whole start of a stream")  # fmt: skip
    print(json.dumps({"round_trips": round_trips, "throughput_rps": throughput}, default=round))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
