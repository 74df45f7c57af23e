"""Reader presence for every stream read in this process, refreshed in one pipeline.

A stream with no live reader for STREAM_ORPHAN_GRACE_SECONDS is cancelled (the
worker's appends see the `readers` key gone). One thread per process renews
the key of every locally read stream every third of the grace period, in a
single round trip, so open streams cost no Redis connections of their own.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

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
