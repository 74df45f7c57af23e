"""The SSE reader against real Redis: gap filling, no busy loop whatever the journal holds,
worker_lost from the workers' liveness keys, and silence measured on Redis's clock only."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
import redis

from app.streams.hub import PubSubHub
from app.streams.journal import Journal
from app.streams.presence import PresenceKeeper, WorkerWatch
from app.streams.reader import Timing, Watchers, stream_events
from tests.support import RedisServer, SSEEvent

SLOW = Timing(heartbeat_s=0.2, queue_timeout_s=60, stall_s=60, orphan_grace_s=5, worker_lost_s=60)


class Reader:
    """Runs one reader in a thread and collects its SSE events."""

    def __init__(self, journal: Journal, hub: PubSubHub, stream_id: str, after: int, timing: Timing, lost=None):
        self.sub = hub.subscribe(journal.channel(stream_id))
        self.hub = hub
        self.lost: list[str] = lost if lost is not None else []
        watchers = Watchers(PresenceKeeper(journal), WorkerWatch(journal, timing.worker_lost_s / 2), self.lost.append)
        self.events: list[SSEEvent] = []
        self.heartbeats = 0
        self.stop = threading.Event()
        self._gen = stream_events(stream_id, after, journal, self.sub, timing, watchers)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for text in self._gen:
                event = SSEEvent.parse(text.strip("\n"))
                if event is not None and event.event == "heartbeat":
                    self.heartbeats += 1
                elif event is not None:
                    self.events.append(event)
                if self.stop.is_set():
                    break
        finally:
            self._gen.close()
            self.hub.unsubscribe(self.sub)

    def finish(self, timeout: float) -> bool:
        """Whether the reader ended by itself within `timeout` (it is stopped either way)."""
        self.thread.join(timeout)
        ended = not self.thread.is_alive()
        self.stop.set()
        self.thread.join(5)
        return ended


def make_hub(url: str) -> PubSubHub:
    return PubSubHub(lambda: redis.Redis.from_url(url, decode_responses=True), queue_size=64)


@pytest.fixture
def journal(redis_client, key_prefix) -> Journal:
    return Journal(redis_client, key_prefix + f"reader-{secrets.token_hex(2)}:", 60, 1000, orphan_grace_s=5)


@pytest.fixture
def hub(redis_url):
    hub = make_hub(redis_url)
    yield hub
    hub.stop()


def new_stream(journal: Journal, worker: str | None = None) -> str:
    stream_id = secrets.token_urlsafe(12)
    assert journal.create(stream_id, {"owner": "anon:a", "model": "m"}, "stream", {"stream_id": stream_id}) is None
    if worker is not None:
        journal.client.set(journal.worker_key(worker), "1", ex=60)
        assert journal.claim(stream_id, worker) == 1
    return stream_id


def test_a_gap_in_the_live_events_is_filled_from_the_journal(journal, hub):
    stream_id = new_stream(journal, "w-gap")
    reader = Reader(journal, hub, stream_id, 0, SLOW)
    time.sleep(0.3)
    # Events 2 and 3 reach the journal but their notifications are lost (as on a pub/sub hiccup).
    meta, events = journal._key(stream_id, "meta"), journal._key(stream_id, "events")
    for seq in (2, 3):
        journal.client.hincrby(meta, "seq", 1)
        journal.client.xadd(events, {"e": "message_chunk", "d": f'{{"content":"c{seq}"}}'}, id=f"0-{seq}")
    journal.append(stream_id, "message_chunk", {"content": "c4"})
    journal.append(stream_id, "done", {"finish_reason": "stop"})
    assert reader.finish(5)
    assert [e.id for e in reader.events] == [1, 2, 3, 4, 5]
    assert [e.data.get("content") for e in reader.events[1:4]] == ["c2", "c3", "c4"]


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def commands_processed(client: redis.Redis) -> int:
    return sum(stat["calls"] for stat in client.info("commandstats").values())


@pytest.mark.parametrize("state", ["live, id past its last event", "ended, id past its end"])
def test_a_reader_never_loops_without_waiting(private_redis, state):
    """The silence deadlines long passed and every event the journal holds is at or below the
    reader's id: the reader waits (or ends), never hammering Redis with HGETALL + XRANGE."""
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    journal = Journal(client, "t:", 60, 1000, orphan_grace_s=5)
    hub = make_hub(private_redis.url)
    stream_id = new_stream(journal, "w-spin")
    journal.append(stream_id, "message_chunk", {"content": "x", "index": 0, "cost_usd": 0})
    if state.startswith("ended"):
        journal.append(stream_id, "done", {"finish_reason": "stop"})
    quick = Timing(heartbeat_s=0.5, queue_timeout_s=0.05, stall_s=0.05, orphan_grace_s=5, worker_lost_s=60)
    try:
        before = commands_processed(client)
        reader = Reader(journal, hub, stream_id, 50, quick)
        reader.finish(2.0)
        used = commands_processed(client) - before - 1  # less the INFO above
    finally:
        hub.stop()
    assert used < 40, f"{used} Redis commands in 2 s"
    assert [e.id for e in reader.events] == []


def test_a_reader_ends_a_stream_whose_worker_is_gone_with_worker_lost(journal, hub):
    stream_id = new_stream(journal, "w-dies")
    journal.append(stream_id, "message_chunk", {"content": "a", "index": 0, "cost_usd": 0.0123})
    timing = Timing(heartbeat_s=0.2, queue_timeout_s=60, stall_s=60, orphan_grace_s=5, worker_lost_s=1.0)
    lost: list[str] = []
    readers = [Reader(journal, hub, stream_id, 0, timing, lost) for _ in range(2)]
    time.sleep(1.5)  # three liveness rounds with the worker's key present: nothing happens
    assert all(reader.thread.is_alive() and len(reader.events) == 2 for reader in readers)
    started = time.monotonic()
    journal.client.delete(journal.worker_key("w-dies"))  # the worker stopped renewing its key
    for reader in readers:
        assert reader.finish(5), "the reader kept waiting"
        assert reader.events[-1].event == "error" and reader.events[-1].data["error_code"] == "worker_lost"
        assert [e.id for e in reader.events] == [1, 2, 3]
    assert time.monotonic() - started < 3
    assert lost == [stream_id]  # settled once, by the reader that recorded it
    assert journal.last_chunk_cost(stream_id) == pytest.approx(0.0123)


def test_silence_is_measured_on_redis_clock_not_the_workers(journal, hub, monkeypatch):
    """The worker's host clock runs an hour ahead: its events must not look an hour fresh."""
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    stream_id = new_stream(journal, "w-clock")
    journal.append(stream_id, "message_chunk", {"content": "a", "index": 0, "cost_usd": 0})
    monkeypatch.setattr(time, "time", real_time)
    seconds, micros = journal.client.time()
    assert abs(float(journal.meta(stream_id)["last_at"]) - (seconds + micros / 1e6)) < 2
    timing = Timing(heartbeat_s=0.2, queue_timeout_s=1, stall_s=1, orphan_grace_s=5, worker_lost_s=60)
    reader = Reader(journal, hub, stream_id, 0, timing)
    assert reader.finish(4), "a silent worker was never found stalled"
    assert reader.events[-1].event == "error" and reader.events[-1].data["error_code"] == "stalled"
