"""Per-process keepers for every stream read in this process, one round trip each.

A stream with no live reader for STREAM_ORPHAN_GRACE_SECONDS is cancelled (the
worker's appends see the `readers` key gone). One thread per process renews
the key of every locally read stream every third of the grace period, in a
single round trip, so open streams cost no Redis connections of their own.
Another checks, for all local readers at once, that their streams' workers
are alive (WorkerWatch).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from .hub import WORKER_CHECK, Subscription
from .journal import Journal

log = logging.getLogger("relay.streams.presence")


class PresenceKeeper:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.interval = max(0.5, journal.orphan_grace_s / 3)
        self._readers: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, stream_id: str) -> None:
        with self._lock:
            self._readers[stream_id] += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="relay-presence", daemon=True)
                self._thread.start()

    def remove(self, stream_id: str) -> None:
        with self._lock:
            self._readers[stream_id] -= 1
            if self._readers[stream_id] <= 0:
                del self._readers[stream_id]

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.interval):
            with self._lock:
                streams = list(self._readers)
            if not streams:
                continue
            try:
                self.journal.touch_readers(streams)
            except Exception as exc:  # noqa: BLE001 - Redis away: readers see it themselves
                log.warning("could not renew %d readers: %s", len(streams), type(exc).__name__)


class WorkerWatch:
    """Whether the workers of the locally read streams are alive, for all of them in one round trip.

    A reader of a claimed stream registers its subscription with the claiming
    worker's id. Every `interval` one thread checks each distinct worker's
    liveness key; the readers of a worker whose key is gone get WORKER_CHECK,
    and each then confirms and ends its stream (`worker_lost`).
    """

    def __init__(self, journal: Journal, interval: float) -> None:
        self.journal = journal
        self.interval = max(0.2, interval)
        self._subs: dict[int, tuple[str, Subscription]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, worker: str, sub: Subscription) -> None:
        with self._lock:
            self._subs[id(sub)] = (worker, sub)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="relay-worker-watch", daemon=True)
                self._thread.start()

    def remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.pop(id(sub), None)

    def check(self) -> None:
        """One round: tell the readers of every worker whose liveness key is gone."""
        with self._lock:
            watched = list(self._subs.values())
        workers = sorted({worker for worker, _ in watched})
        if not workers:
            return
        try:
            alive = dict(zip(workers, self.journal.workers_alive(workers), strict=True))
        except Exception as exc:  # noqa: BLE001 - Redis away: readers see it themselves
            log.warning("could not check %d workers: %s", len(workers), type(exc).__name__)
            return
        for worker, sub in watched:
            if not alive[worker]:
                sub.deliver(WORKER_CHECK)

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.interval):
            self.check()
