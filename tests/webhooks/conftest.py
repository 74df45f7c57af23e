"""Fixtures of the webhook tests: a local receiver, a resolver tests control, and action helpers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.webhooks import ssrf


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    started: float
    ended: float = 0.0


@dataclass
class Receiver:
    """A tiny HTTP server on 127.0.0.1: records every request; `script(request, n)` decides the answer.

    `n` counts the requests with the same webhook-id so far (1 for the first). The script returns
    (status, headers, body, hold_seconds); hold_seconds delays the answer (an in-flight window).
    """

    url: str
    requests: list[Received] = field(default_factory=list)
    script: Callable[[Received, int], tuple[int, dict[str, str], bytes, float]] = lambda r, n: (200, {}, b"ok", 0.0)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0

    def by_id(self) -> dict[str, list[Received]]:
        groups: dict[str, list[Received]] = {}
        with self.lock:
            for item in self.requests:
                groups.setdefault(item.headers.get("webhook-id", ""), []).append(item)
        return groups


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            item = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
            with receiver.lock:
                receiver.requests.append(item)
                n = sum(1 for r in receiver.requests if r.headers.get("webhook-id") == item.headers.get("webhook-id"))
                receiver.in_flight += 1
            try:
                status, headers, reply, hold = receiver.script(item, n)
                time.sleep(hold)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(reply)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply)
            finally:
                item.ended = time.monotonic()
                with receiver.lock:
                    receiver.in_flight -= 1

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(made))
    server.daemon_threads = True
    made.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield made
    server.shutdown()
    server.server_close()


@pytest.fixture
def names() -> Iterator[dict[str, list[str]]]:
    """Host names tests point at addresses of their choice (the SSRF guard's resolver); others fail."""
    table: dict[str, list[str]] = {}

    def resolve(host: str, port: int) -> list[str]:
        if host in table:
            return list(table[host])
        if host in ("localhost",):
            return ["127.0.0.1"]
        raise OSError(f"no test address for {host}")

    ssrf.set_resolver(resolve)
    yield table
    ssrf.set_resolver(None)


def register(client, headers: dict[str, str], name: str, url: str, description: str = "a test action"):
    """POST /api/v1/actions; the response."""
    return client.post("/api/v1/actions", json={"name": name, "url": url, "description": description}, headers=headers)


def registered(client, headers: dict[str, str], name: str, url: str) -> str:
    """Register an action that must be accepted; its secret."""
    response = register(client, headers, name, url)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["secret"]


def execute(client, headers: dict[str, str], action: str, payload: dict | None = None, **extra: object):
    body = {"action": action, "payload": payload if payload is not None else {"n": 1}, **extra}
    return client.post("/actions/execute", json=body, headers=headers)


def delivery(client, headers: dict[str, str], delivery_id: str) -> dict:
    response = client.get(f"/actions/deliveries/{delivery_id}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def event_body(request: Received) -> dict:
    return json.loads(request.body)
