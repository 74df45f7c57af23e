"""What the fake provider servers share: statistics, the reply script, directives."""

from __future__ import annotations

import argparse
import re
import socket

from gevent.pywsgi import WSGIServer

# Directives in the last user message that steer a fake's reply (see each fake's docstring).
DIRECTIVE = re.compile(
    r"#(fail_once|fail|cut|truncate|sse_error|ttft|hold|ignore_max_tokens|no_usage|bad_chars|chunks|gap)=(\d+)"
)
# `#bad_chars=1`: a reply holding what PostgreSQL cannot store (NUL) and what UTF-8 cannot
# encode (a lone surrogate, sent as the JSON escape \ud800).
BAD_CHARS_REPLY = ["nul\x00", " lone\ud800", " end"]


class Stats:
    """What GET /stats reports: connections accepted, requests served, streams in flight and the most at once."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.failures = 0
        self.hold_timeouts = 0

    def enter(self) -> None:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1


def directives(message: str) -> dict[str, int]:
    return {name: int(value) for name, value in DIRECTIVE.findall(message)}


def split_reply(message: str, default_reply: str) -> list[str]:
    """`echo:<text>` streams <text> in 3-character pieces; `#bad_chars=1` BAD_CHARS_REPLY;
    `#chunks=<n>` n pieces, the default reply's words over and over; otherwise the default, a word a piece."""
    if "#bad_chars=1" in message:
        return list(BAD_CHARS_REPLY)
    if "#chunks=" in message:
        count = directives(message)["chunks"]
        words = default_reply.split(" ")
        return [words[i % len(words)] + " " for i in range(count)]
    if message.startswith("echo:"):
        text = message[len("echo:") :]
        return [text[i : i + 3] for i in range(0, len(text), 3)] or [""]
    words = default_reply.split(" ")
    return [word + (" " if i < len(words) - 1 else "") for i, word in enumerate(words)]


class _CountingServer(WSGIServer):
    """Counts the TCP connections it accepts in the app's Stats (whether clients reuse theirs)."""

    def handle(self, sock, address):
        stats = getattr(self.application, "stats", None)
        if stats is not None:
            stats.connections += 1
        super().handle(sock, address)


def serve(description: str, default_port: int, make_app) -> None:
    """Command line of a fake: `--port`, and the timing flags make_app(first_token_ms, token_ms) takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--first-token-ms", type=float, default=5.0)
    parser.add_argument("--token-ms", type=float, default=1.0)
    args = parser.parse_args()
    server = _CountingServer((args.host, args.port), make_app(args.first_token_ms, args.token_ms), log=None)
    server.init_socket()
    # As real API servers do: a response's headers and its first chunk go out as two writes, and
    # with Nagle's algorithm the second waits for the client's delayed ACK (40 ms on Linux).
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server.serve_forever()
