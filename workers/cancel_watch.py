"""Stop a generation within a second of a cancel, even while the provider is silent.

While chunks flow, every append already reports a cancel or a lost reader. When
the provider goes quiet (a slow first token, a stalled server), the streams of
this process that have been quiet for a poll interval are checked, all in one
round trip, by one thread. Under gevent a stopped stream's blocked provider
read is interrupted; elsewhere only the flag the chunk loop checks is raised.
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


class Watch:
    """One stream's view: `cancelled` once it must stop; `waiting` while blocked on the provider."""

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.cancelled = False
        self.waiting = False
        self.last_activity = time.monotonic()
        green = monkey.is_module_patched("socket")
        current = gevent.getcurrent()
        self.task = current if green and isinstance(current, gevent.Greenlet) else None

    def activity(self) -> None:
        self.last_activity = time.monotonic()

    def stop(self) -> None:
        self.cancelled = True
        if self.task is not None and self.waiting:
            self.task.kill(Cancelled, block=False)


class CancelWatcher:
    """All streams generating in this process; one poller for the quiet ones."""

    def __init__(self, journal: Journal, poll_s: float = POLL_SECONDS) -> None:
        self.journal = journal
        self.poll_s = poll_s
        self._watches: dict[int, Watch] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, stream_id: str) -> _Registration:
        return _Registration(self, Watch(stream_id))

    def _add(self, watch: Watch) -> None:
        with self._lock:
            self._watches[id(watch)] = watch
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="relay-cancel-watch", daemon=True)
                self._thread.start()

    def _remove(self, watch: Watch) -> None:
        with self._lock:
            self._watches.pop(id(watch), None)

    def _run(self) -> None:
        pause = threading.Event()
        while not pause.wait(self.poll_s):
            now = time.monotonic()
            with self._lock:
                quiet = [w for w in self._watches.values() if now - w.last_activity >= self.poll_s]
            if not quiet:
                continue
            try:
                verdicts = self.journal.should_stop_many([w.stream_id for w in quiet])
            except Exception as exc:  # noqa: BLE001 - Redis trouble: the chunk loop will see it
                log.debug("cancel poll of %d streams failed: %s", len(quiet), type(exc).__name__)
                continue
            for watch, stop in zip(quiet, verdicts, strict=True):
                if stop:
                    watch.stop()


class _Registration:
    def __init__(self, watcher: CancelWatcher, watch: Watch) -> None:
        self.watcher = watcher
        self.watch = watch

    def __enter__(self) -> Watch:
        self.watcher._add(self.watch)
        return self.watch

    def __exit__(self, *_: object) -> None:
        self.watcher._remove(self.watch)
