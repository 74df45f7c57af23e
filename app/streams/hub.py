"""One Redis pub/sub connection per process, shared by every SSE reader in it.

A hub thread (a greenlet under gevent's monkey-patching) owns the connection.
Readers register a Subscription; the first reader of a channel makes the hub
SUBSCRIBE, and `subscribe()` returns only once Redis confirmed it, so a reader
that then replays the journal cannot miss an event. The hub never blocks on a
reader: each has a bounded queue, and a full queue is replaced by a RESYNC
marker (the reader re-reads the journal). After the connection drops and
comes back, every channel is subscribed again and each reader gets RESYNC.

When the process shuts down (gunicorn's SIGTERM, see gunicorn.conf.py),
`drain_all()` gives every reader, and every reader that subscribes from then
on, a DRAIN marker: each ends its response cleanly after its last whole
event, and the client resumes with Last-Event-ID on another process.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable

import redis

from .journal import Event, parse_message

log = logging.getLogger("relay.streams.hub")

RESYNC = "resync"  # marker: events may have been missed; re-read the journal
WORKER_CHECK = "worker_check"  # marker: the stream's worker looks gone; check it now
DRAIN = "drain"  # marker: this process is shutting down; end the response cleanly now
_HUBS: weakref.WeakSet[PubSubHub] = weakref.WeakSet()  # every hub of this process, for drain_all()


def _as_is(response: list) -> list:
    return response


class HubUnavailable(RuntimeError):
    """The hub could not confirm a subscription in time (Redis unreachable)."""


class Subscription:
    """One reader's view of a channel: a bounded queue of Events and markers."""

    def __init__(self, channel: str, size: int) -> None:
        self.channel = channel
        self.queue: queue.Queue[Event | str] = queue.Queue(maxsize=size)
        self.draining = False

    def deliver(self, item: Event | str) -> None:
        if self.draining:
            return  # the reader is ending; DRAIN must stay the last item
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            # Never block the hub: drop what is buffered and ask the reader to resync.
            self._clear()
            self.queue.put_nowait(RESYNC)

    def drain(self) -> None:
        """Tell the reader to end now: the marker replaces whatever is buffered (the journal has it),
        and nothing is delivered after it."""
        self.draining = True
        self._clear()
        with contextlib.suppress(queue.Full):  # cleared just now, and deliver() adds nothing more
            self.queue.put_nowait(DRAIN)

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
        self._draining = False
        _HUBS.add(self)

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
            if self._draining:
                sub.drain()  # a request that slipped in during shutdown: replay, then end cleanly
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

    def drain(self) -> int:
        """End every reader's response cleanly, now and from now on; returns how many were open."""
        with self._lock:
            self._draining = True
            subs = [sub for readers in self._readers.values() for sub in readers]
        for sub in subs:
            sub.drain()
        return len(subs)

    def stop(self) -> None:
        self._stopping = True
        pubsub = self._pubsub
        if pubsub is not None:
            # The hub's read fails at once and may close it too: redis-py's PubSub is not thread-safe.
            with contextlib.suppress(Exception):
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
        # RESP3 delivers messages as pushes; redis-py's default handler logs each one (a logger
        # look-up and a str() of the whole message, at debug level): a fifth of a reader's CPU.
        pubsub = self._client_factory().pubsub(ignore_subscribe_messages=False, push_handler_func=_as_is)
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
            except Exception:
                if self._stopping:
                    return  # stop() closed the connection under the read
                raise
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
            if not pubsub.subscribed:  # no channel yet, or none left: nothing to read
                pubsub.subscribed_event.wait(1.0)
                continue
            # A blocking read: no readiness poll before each message (a syscall and a parse of
            # their own), and a connection closed under it fails as a ConnectionError.
            response = pubsub.parse_response(block=True)
            message = pubsub.handle_message(response) if response else None
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


def drain_all() -> int:
    """Drain every hub of this process (a web process shutting down); returns the readers told."""
    return sum(hub.drain() for hub in list(_HUBS))
