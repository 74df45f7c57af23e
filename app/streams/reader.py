"""One SSE reader: journal replay after the client's last id, then live events.

Order matters: the subscription is confirmed before the journal is read, so
nothing published in between is missed; ids at or below the last one sent are
dropped, and any gap (or a RESYNC from the hub) is filled from the journal.
While silent, the reader sends heartbeats and watches for a job no worker
took (`no_worker`) or a worker gone silent (`stalled`), recording either as
the stream's terminal event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from ..observability import STREAMS_ACTIVE, STREAMS_TOTAL
from . import sse
from .hub import RESYNC, PubSubHub, Subscription
from .journal import Event, Journal
from .presence import PresenceKeeper

log = logging.getLogger("relay.streams.reader")


@dataclass(frozen=True)
class Timing:
    heartbeat_s: float
    queue_timeout_s: float
    stall_s: float
    orphan_grace_s: float


class _Reader:
    def __init__(self, stream_id: str, after: int, journal: Journal, timing: Timing) -> None:
        self.stream_id = stream_id
        self.last = after
        self.journal = journal
        self.timing = timing
        self.started = False
        self.last_event_at = time.time()
        self.ended = False
        self.gone = False

    def take(self, events: list[Event]) -> Iterator[str]:
        for event in events:
            if event.id <= self.last:
                continue
            self.last = event.id
            self.last_event_at = time.time()
            if event.event == "message_chunk":
                self.started = True
            yield sse.frame(event)
            if event.terminal:
                self.ended = True
                return

    def on_item(self, item: Event | str) -> list[Event]:
        if item == RESYNC:
            events = self.journal.read_after(self.stream_id, self.last)
            if not events and not self.journal.meta(self.stream_id):
                self.gone = True  # Redis lost the stream (e.g. restarted without persistence)
            return events
        assert isinstance(item, Event)
        if item.id <= self.last:
            return []
        if item.id == self.last + 1:
            return [item]
        return self.journal.read_after(self.stream_id, self.last)  # a gap: fill it

    def silence_deadline(self) -> float:
        limit = self.timing.stall_s if self.started else min(self.timing.queue_timeout_s, self.timing.stall_s)
        return self.last_event_at + limit

    def _end(self, code: str, detail: str) -> None:
        data = {"error_code": code, "detail": detail, "retry_after": 5}
        if self.journal.append(self.stream_id, "error", data) > 0:
            STREAMS_TOTAL.labels(code).inc()

    def check_silence(self) -> list[Event]:
        """Silent too long: end the stream as no_worker or stalled, unless it moved on."""
        meta = self.journal.meta(self.stream_id)
        if not meta:
            self.gone = True  # expired or deleted under us
            return []
        last_at = float(meta.get("last_at", self.last_event_at))
        self.last_event_at = max(self.last_event_at, last_at)
        self.started = self.started or "started" in meta
        silent_for = time.time() - self.last_event_at
        if "ended" not in meta:
            if not self.started and silent_for >= self.timing.queue_timeout_s:
                self._end("no_worker", "No worker took the job in time.")
            elif self.started and silent_for >= self.timing.stall_s:
                self._end("stalled", "The worker stopped responding.")
        return self.journal.read_after(self.stream_id, self.last)


def stream_events(
    stream_id: str,
    after: int,
    journal: Journal,
    hub: PubSubHub,
    sub: Subscription,
    timing: Timing,
    presence: PresenceKeeper,
) -> Iterator[str]:
    """SSE text for one client; `sub` is already confirmed. Always unsubscribes."""
    reader = _Reader(stream_id, after, journal, timing)
    STREAMS_ACTIVE.inc()
    presence.add(stream_id)
    try:
        yield sse.PREAMBLE
        yield from reader.take(journal.attach(stream_id, reader.last))
        next_heartbeat = time.time() + timing.heartbeat_s
        while not reader.ended:
            now = time.time()
            item = sub.get(min(next_heartbeat, reader.silence_deadline()) - now)
            now = time.time()
            if item is not None:
                yield from reader.take(reader.on_item(item))
                next_heartbeat = now + timing.heartbeat_s
            elif now >= reader.silence_deadline():
                yield from reader.take(reader.check_silence())
            if reader.gone:
                yield sse.local_error("internal", "The stream is no longer available; start a new one.")
                return
            if now >= next_heartbeat and not reader.ended:
                yield sse.heartbeat()
                next_heartbeat = now + timing.heartbeat_s
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("stream %s: Redis unavailable while reading (%s)", stream_id, type(exc).__name__)
        yield sse.local_error("dependency_unavailable", "The stream store is unavailable; resume shortly.", 2)
    finally:
        presence.remove(stream_id)
        STREAMS_ACTIVE.dec()
        hub.unsubscribe(sub)
