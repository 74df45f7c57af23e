"""Server-Sent Events framing. Data is always one line of ASCII JSON."""

from __future__ import annotations

import time

from .journal import Event, encode, error_data

RETRY_MS = 2000
PREAMBLE = f"retry: {RETRY_MS}\n\n"
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def frame(event: Event) -> str:
    return f"id: {event.id}\nevent: {event.event}\ndata: {event.data}\n\n"


def heartbeat() -> str:
    return f"event: heartbeat\ndata: {encode({'ts': round(time.time(), 3)})}\n\n"


def local_error(code: str, detail: str, retry_after: int | None = None) -> str:
    """A terminal error the journal could not record (Redis unreachable): no id,
    so the client's Last-Event-ID still points at the last real event."""
    data = encode(error_data(code, detail, retry_after))
    return f"event: error\ndata: {data}\n\n"
