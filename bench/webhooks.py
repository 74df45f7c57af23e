"""Webhook deliveries: what one gevent worker sustains, and POST /actions/execute to the receiver's first byte.

A receiver on 127.0.0.1 (in this process, threaded) answers 200 at once.
  1. Latency: one execute at a time through gunicorn; time from sending the POST until the receiver
     has the webhook's first byte (the request line), median and p99.
  2. Throughput: with the webhooks worker stopped, queue --deliveries executions; start one gevent
     worker and time until every one is recorded `succeeded` in the database (claim, signed POST,
     attempt row and state: the whole path a delivery takes).

    .venv/bin/python bench/webhooks.py [--deliveries 1000] [--latency 200] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from _stack import ROOT, VENV_BIN, Process, high_limits_env, percentile, relay_stack, wait_until, workdir

arrivals: dict[str, float] = {}
arrived = threading.Condition()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        at = time.perf_counter()  # the request line and headers are in: the first byte came before
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with arrived:
            arrivals.setdefault(self.headers["webhook-id"], at)
            arrived.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def start_worker(env: dict[str, str], log_dir, name: str, concurrency: int) -> Process:
    argv = [str(VENV_BIN / "celery"), "-A", "celery_app", "worker", "-P", "gevent", "-c", str(concurrency),
            "-Q", "webhooks", "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "WARNING"]  # fmt: skip
    worker = Process(name, argv, env, log_dir)
    time.sleep(0.5)
    return worker


def succeeded(database: str) -> int:
    with sqlite3.connect(database.removeprefix("sqlite:///"), timeout=30) as connection:
        return connection.execute("SELECT count(*) FROM deliveries WHERE status = 'succeeded'").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    extra = {**high_limits_env(), "LIMIT_ACTIONS_EXECUTE": "1000000/60", "ALLOW_PRIVATE_WEBHOOK_TARGETS": "true"}
    with workdir() as log_dir, relay_stack("http://127.0.0.1:9", log_dir, extra_env=extra) as stack:
        keys = [str(VENV_BIN / "flask"), "--app", "wsgi", "relay", "keys", "create", "--name", "bench",
                "--scopes", "admin,actions:execute"]  # fmt: skip
        key = subprocess.run(keys, env=stack.env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        body = {"name": "bench", "url": url, "description": "bench receiver"}
        session.post(f"{stack.base}/api/v1/actions", json=body, timeout=10).raise_for_status()

        def execute(n: int) -> str:
            response = session.post(f"{stack.base}/actions/execute", json={"action": "bench", "payload": {"n": n}})
            response.raise_for_status()
            return "msg_" + response.json()["delivery_id"]

        worker = start_worker(stack.env, log_dir, "webhooks-bench", args.concurrency)
        execute(-1)  # warm: the worker is up once this one arrives
        wait_until(lambda: len(arrivals) == 1, 60, "the webhooks worker", worker)
        latencies = []
        for n in range(args.latency):
            t0 = time.perf_counter()
            webhook_id = execute(n)
            with arrived:
                arrived.wait_for(lambda webhook_id=webhook_id: webhook_id in arrivals, timeout=30)
            latencies.append((arrivals[webhook_id] - t0) * 1000)
        worker.stop()

        done_before = succeeded(stack.env["DATABASE_URL"])
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(execute, range(args.deliveries)))
        worker = start_worker(stack.env, log_dir, "webhooks-bench-2", args.concurrency)
        wait_until(lambda: len(arrivals) > args.latency + 1, 60, "the second worker", worker)
        started = time.perf_counter()
        target = done_before + args.deliveries
        wait_until(lambda: succeeded(stack.env["DATABASE_URL"]) >= target, 600, "every delivery", worker)
        elapsed = time.perf_counter() - started
        worker.stop()
    server.shutdown()
    print(f"execute -> receiver first byte, {args.latency} sequential: median {statistics.median(latencies):.1f} ms, "
          f"p99 {percentile(latencies, 99):.1f} ms")  # fmt: skip
    print(f"one gevent worker (-c {args.concurrency}): {args.deliveries} deliveries in {elapsed:.1f} s = "
          f"{args.deliveries / elapsed:.0f} deliveries/s (SQLite)")  # fmt: skip


if __name__ == "__main__":
    main()
