"""One Redis pub/sub connection per process, shared by every SSE reader in it.

A hub thread (a greenlet under gevent's monkey-patching) owns the connection.
Readers register a Subscription; the first reader of a channel makes the hub
SUBSCRIBE, and `subscribe()` returns only once Redis confirmed it, so a reader
that then replays the journal cannot miss an event. The hub never blocks on a
reader: each has a bounded queue, and a full queue is replaced by a RESYNC
marker (the reader re-reads the journal). After the connection drops and
comes back, every channel is subscribed again and each reader gets RESYNC.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

import redis

from .journal import Event, parse_message

log = logging.getLogger("relay.streams.hub")

RESYNC = "resync"  # marker: events may have been missed; re-read the journal
WORKER_CHECK = "worker_check"  # marker: the stream's worker looks gone; check it now


class HubUnavailable(RuntimeError):
    """The hub could not confirm a subscription in time (Redis unreachable)."""


class Subscription:
    """One reader's view of a channel: a bounded queue of Events and markers."""

    def __init__(self, channel: str, size: int) -> None:
        self.channel = channel
        self.queue: queue.Queue[Event | str] = queue.Queue(maxsize=size)

    def deliver(self, item: Event | str) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            # Never block the hub: drop what is buffered and ask the reader to resync.
            self._clear()
            self.queue.put_nowait(RESYNC)

    def _clear(self) -> None:
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass

    def get(self, timeout: float) -> Event | str | None:
        try:
            return self.queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None


class PubSubHub:
    """Reference-counted channel subscriptions over a single connection."""

    def __init__(self, client_factory: Callable[[], redis.Redis], queue_size: int, confirm_timeout: float = 5.0):
        self._client_factory = client_factory
        self._queue_size = queue_size
        self._confirm_timeout = confirm_timeout
        # One lock orders registry changes with the (UN)SUBSCRIBE writes they cause.
        self._lock = threading.RLock()
        self._readers: dict[str, set[Subscription]] = {}
        self._confirmed: dict[str, threading.Event] = {}
        self._pubsub: redis.client.PubSub | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- readers' side -------------------------------------------------------
    def subscribe(self, channel: str) -> Subscription:
        """Register a reader; returns once Redis confirmed the channel's subscription."""
        self._ensure_thread()
        sub = Subscription(channel, self._queue_size)
        with self._lock:
            self._readers.setdefault(channel, set()).add(sub)
            confirmed = self._confirmed.get(channel)
            if confirmed is None:
                confirmed = self._confirmed[channel] = threading.Event()
                self._send(lambda pubsub: pubsub.subscribe(channel))
        if not confirmed.wait(self._confirm_timeout):
            self.unsubscribe(sub)
            raise HubUnavailable("pub/sub subscription not confirmed")
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            readers = self._readers.get(sub.channel)
            if readers is None:
                return
            readers.discard(sub)
            if not readers:
                del self._readers[sub.channel]
                self._confirmed.pop(sub.channel, None)
                self._send(lambda pubsub: pubsub.unsubscribe(sub.channel))

    def channel_count(self) -> int:
        with self._lock:
            return len(self._readers)

    def stop(self) -> None:
        self._stopping = True
        pubsub = self._pubsub
        if pubsub is not None:
            pubsub.close()

    # -- the hub thread ------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="relay-pubsub-hub", daemon=True)
            self._thread.start()

    def _send(self, command: Callable[[redis.client.PubSub], object]) -> None:
        # Called with the lock held. While disconnected, `_connect` subscribes every channel.
        if self._pubsub is None:
            return
        try:
            command(self._pubsub)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            log.warning("pub/sub write failed; the hub will reconnect")

    def _connect(self) -> set[str]:
        """Open a connection and subscribe every registered channel; returns them."""
        pubsub = self._client_factory().pubsub(ignore_subscribe_messages=False)
        with self._lock:
            pubsub.ping()  # opens the connection now, so failures surface here
            channels = set(self._readers)
            if channels:
                pubsub.subscribe(*channels)
            self._pubsub = pubsub
        return channels

    def _disconnect(self) -> None:
        with self._lock:
            pubsub, self._pubsub = self._pubsub, None
            for confirmed in self._confirmed.values():
                confirmed.clear()
        if pubsub is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                pubsub.close()

    def _run(self) -> None:
        backoff = 0.1
        reconnecting = False
        while not self._stopping:
            try:
                channels = self._connect()
                if reconnecting:
                    log.info("pub/sub hub reconnected; resyncing %d channels", len(channels))
                backoff = 0.1
                self._read_loop(channels if reconnecting else set())
            except (redis.ConnectionError, redis.TimeoutError, OSError, ValueError) as exc:
                if self._stopping:
                    return
                log.warning("pub/sub hub lost Redis (%s); retrying in %.1fs", type(exc).__name__, backoff)
            self._disconnect()
            reconnecting = True
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _readers_of(self, channel: str) -> list[Subscription]:
        with self._lock:
            return list(self._readers.get(channel, ()))

    def _read_loop(self, pending_resync: set[str]) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        while not self._stopping:
            message = pubsub.get_message(timeout=30.0)
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            if kind == "message":
                readers = self._readers_of(channel)
                if readers:
                    event = parse_message(message["data"])
                    for sub in readers:
                        sub.deliver(event)
            elif kind == "subscribe":
                with self._lock:
                    confirmed = self._confirmed.get(channel)
                if confirmed is not None:
                    confirmed.set()
                if channel in pending_resync:
                    # Events published while we were away are only in the journal.
                    pending_resync.discard(channel)
                    for sub in self._readers_of(channel):
                        sub.deliver(RESYNC)
