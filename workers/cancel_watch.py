"""Stop a generation within a second of a cancel, even while the provider is silent.

While chunks flow, every append already reports a cancel or a lost reader. When
the provider goes quiet (a slow first token, a stalled server), this watcher
polls the stream's flags; under gevent it interrupts the task's blocked read,
elsewhere it only raises the flag the chunk loop checks.
"""

from __future__ import annotations

import logging
import threading
import time

import gevent
from gevent import monkey

from app.streams import Journal

POLL_SECONDS = 0.5
log = logging.getLogger("relay.workers.cancel")


class Cancelled(BaseException):
    """Raised inside the task's provider read; BaseException so no SDK wraps it."""


class CancelWatch:
    def __init__(self, journal: Journal, stream_id: str, poll_s: float = POLL_SECONDS) -> None:
        self.journal = journal
        self.stream_id = stream_id
        self.poll_s = poll_s
        self.cancelled = False
        self.waiting = False  # True only while the task blocks on the provider
        self.last_activity = time.monotonic()
        self._stopped = threading.Event()
        green = monkey.is_module_patched("socket")
        current = gevent.getcurrent()
        self._task = current if green and isinstance(current, gevent.Greenlet) else None

    def __enter__(self) -> CancelWatch:
        threading.Thread(target=self._run, name=f"cancel-watch-{self.stream_id}", daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()

    def activity(self) -> None:
        self.last_activity = time.monotonic()

    def _run(self) -> None:
        while not self._stopped.wait(self.poll_s):
            if time.monotonic() - self.last_activity < self.poll_s:
                continue
            try:
                stop = self.journal.should_stop(self.stream_id)
            except Exception as exc:  # noqa: BLE001 - Redis trouble: the chunk loop will see it
                log.debug("cancel watch of %s: %s", self.stream_id, type(exc).__name__)
                continue
            if stop:
                self.cancelled = True
                if self._task is not None and self.waiting and not self._stopped.is_set():
                    self._task.kill(Cancelled, block=False)
                return
