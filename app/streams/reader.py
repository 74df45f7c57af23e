"""One SSE reader: journal replay after the client's last id, then live events.

Order matters: the subscription is confirmed before the journal is read, so
nothing published in between is missed; ids at or below the last one sent are
dropped, and any gap (or a RESYNC from the hub) is filled from the journal.
While silent, the reader sends heartbeats and watches for a job no worker
took (`no_worker`), a worker gone silent (`stalled`) or a worker process gone
(`worker_lost`), recording any of them as the stream's terminal event. Those
decisions compare times on Redis's clock only. When the process shuts down
(the hub's DRAIN), the reader ends the response cleanly after its last whole
event: the client resumes with Last-Event-ID on another process.

The reader never loops without waiting: after every check of the journal its
next check is at least MIN_CHECK_SECONDS away, whatever the journal holds.

`read_events` yields what the reader sees (journal events, HEARTBEAT, a
LocalError); `stream_events` frames it as Relay's SSE. Other framings (the
OpenAI-compatible API) render the same items their own way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis

from ..observability import STREAMS_ACTIVE, STREAMS_TOTAL
from . import sse
from .hub import DRAIN, RESYNC, WORKER_CHECK, Subscription
from .journal import CLAIMED_EVENT, Event, Journal, error_data
from .presence import PresenceKeeper, WorkerWatch

log = logging.getLogger("relay.streams.reader")

MIN_CHECK_SECONDS = 0.25
HEARTBEAT = "heartbeat"  # an item of read_events: nothing happened for HEARTBEAT_SECONDS


@dataclass(frozen=True)
class LocalError:
    """An item of read_events: a terminal error the journal could not record (no id)."""

    code: str
    detail: str
    retry_after: int | None = None


Item = Event | LocalError | str


@dataclass(frozen=True)
class Timing:
    heartbeat_s: float
    queue_timeout_s: float
    stall_s: float
    orphan_grace_s: float
    worker_lost_s: float


@dataclass(frozen=True)
class Watchers:
    """The process's keepers a reader registers with, and what ends a stream whose worker is gone."""

    presence: PresenceKeeper
    workers: WorkerWatch
    on_worker_lost: Callable[[str], None]  # called once, by the reader that recorded `worker_lost`


class _Reader:
    def __init__(self, stream_id: str, after: int, journal: Journal, timing: Timing, sub: Subscription, watchers):
        self.stream_id = stream_id
        self.last = after
        self.journal = journal
        self.timing = timing
        self.sub = sub
        self.watchers: Watchers = watchers
        self.worker: str | None = None  # the claiming worker, once known
        self.started = False
        self.ended = False
        self.gone = False
        self.next_check = time.monotonic() + self._limit()

    def _limit(self) -> float:
        return self.timing.stall_s if self.started else min(self.timing.queue_timeout_s, self.timing.stall_s)

    def _quiet_from_now(self) -> None:
        self.next_check = time.monotonic() + self._limit()

    def learn(self, meta: dict[str, str]) -> None:
        """What the meta says: the claiming worker; a stream that ended at or before our last id."""
        if meta.get("started"):
            self._watch(meta["started"])
        ended = meta.get("ended")
        if ended is not None and int(ended) <= self.last:
            self.ended = True  # nothing after our last id will ever come

    def _watch(self, worker: str) -> None:
        self.started = True
        if self.worker is None:
            self.worker = worker
            self.watchers.workers.add(worker, self.sub)

    def take(self, events: list[Event]) -> Iterator[Event]:
        for event in events:
            if event.id <= self.last:
                continue
            self.last = event.id
            if event.event == "message_chunk":
                self.started = True
            self._quiet_from_now()
            yield event
            if event.terminal:
                self.ended = True
                return

    def on_item(self, item: Event | str) -> list[Event]:
        if item == RESYNC:
            events, meta = self.journal.attach(self.stream_id, self.last)
            if not events and not meta:
                self.gone = True  # Redis lost the stream (e.g. restarted without persistence)
            self.learn(meta)
            return events
        if item == WORKER_CHECK:
            return self.check()
        assert isinstance(item, Event)
        if item.event == CLAIMED_EVENT:
            self._watch(item.payload()["worker"])
            self._quiet_from_now()  # the claim restarts the silence clock
            return []
        if item.id <= self.last:
            return []
        if item.id == self.last + 1:
            return [item]
        return self.journal.read_after(self.stream_id, self.last)  # a gap: fill it

    def _end(self, code: str, detail: str) -> bool:
        if self.journal.append(self.stream_id, "error", error_data(code, detail, 5)) > 0:
            STREAMS_TOTAL.labels(code).inc()
            return True
        return False

    def check(self) -> list[Event]:
        """Read the journal's state: end the stream if no worker took it, its worker
        stalled or is gone; then what the journal holds after our last id."""
        probe = self.journal.probe(self.stream_id, self.worker)
        if not probe.meta:
            self.gone = True  # expired or deleted under us
            return []
        self.learn(probe.meta)
        silent = probe.silent_for()
        remaining = self._limit() - silent
        if "ended" not in probe.meta:
            lost = probe.worker_alive is False and silent >= self.timing.worker_lost_s / 2
            if not self.started and silent >= self.timing.queue_timeout_s:
                self._end("no_worker", "No worker took the job in time.")
            elif self.started and silent >= self.timing.stall_s:
                self._end("stalled", "The worker stopped responding.")
            elif self.started and lost and self._end("worker_lost", "The worker generating this stream was lost."):
                self.watchers.on_worker_lost(self.stream_id)
        self.next_check = time.monotonic() + max(MIN_CHECK_SECONDS, remaining)
        if self.ended:
            return []
        return self.journal.read_after(self.stream_id, self.last)


def stream_events(
    stream_id: str, after: int, journal: Journal, sub: Subscription, timing: Timing, watchers: Watchers
) -> Iterator[str]:
    """SSE text for one client; `sub` is already confirmed. The caller unsubscribes."""
    return as_sse(read_events(stream_id, after, journal, sub, timing, watchers))


def as_sse(items: Iterator[Item]) -> Iterator[str]:
    """Relay's SSE framing of what a reader sees, from the `retry:` preamble on."""
    yield sse.PREAMBLE
    try:
        for item in items:
            if isinstance(item, Event):
                yield sse.frame(item)
            elif isinstance(item, LocalError):
                yield sse.local_error(item.code, item.detail, item.retry_after)
            else:
                yield sse.heartbeat()
    finally:
        items.close()  # type: ignore[attr-defined] - its cleanup runs now, not when collected


def read_events(
    stream_id: str, after: int, journal: Journal, sub: Subscription, timing: Timing, watchers: Watchers
) -> Iterator[Item]:
    """What one client sees: the events after `after`, in order, to the terminal one; HEARTBEAT
    while silent; a LocalError when the store is lost. `sub` is already confirmed."""
    reader = _Reader(stream_id, after, journal, timing, sub, watchers)
    STREAMS_ACTIVE.inc()
    watchers.presence.add(stream_id)
    try:
        events, meta = journal.attach(stream_id, reader.last)
        yield from reader.take(events)
        if not reader.ended:
            reader.learn(meta)
        next_heartbeat = time.monotonic() + timing.heartbeat_s
        while not reader.ended:
            item = sub.get(min(next_heartbeat, reader.next_check) - time.monotonic())
            if item == DRAIN:
                return  # the process is shutting down: a clean end, which Last-Event-ID resumes elsewhere
            now = time.monotonic()
            if item is not None:
                yield from reader.take(reader.on_item(item))
                next_heartbeat = now + timing.heartbeat_s
            elif now >= reader.next_check:
                yield from reader.take(reader.check())
            if reader.gone:
                yield LocalError("internal", "The stream is no longer available; start a new one.")
                return
            if now >= next_heartbeat and not reader.ended:
                yield HEARTBEAT
                next_heartbeat = now + timing.heartbeat_s
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("stream %s: Redis unavailable while reading (%s)", stream_id, type(exc).__name__)
        yield LocalError("dependency_unavailable", "The stream store is unavailable; resume shortly.", 2)
    finally:
        watchers.workers.remove(sub)
        watchers.presence.remove(stream_id)
        STREAMS_ACTIVE.dec()
