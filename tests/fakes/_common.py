"""What the fake provider servers share: statistics, the reply script, directives."""

from __future__ import annotations

import re

# Directives in the last user message that steer a fake's reply (see each fake's docstring).
DIRECTIVE = re.compile(r"#(fail_once|fail|cut|truncate|sse_error|ttft|hold)=(\d+)")


class Stats:
    """What GET /stats reports: requests served, streams in flight and the most at once."""

    def __init__(self) -> None:
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
    """`echo:<text>` streams <text> in 3-character pieces; otherwise the default, a word a piece."""
    if message.startswith("echo:"):
        text = message[len("echo:") :]
        return [text[i : i + 3] for i in range(0, len(text), 3)] or [""]
    words = default_reply.split(" ")
    return [word + (" " if i < len(words) - 1 else "") for i, word in enumerate(words)]
