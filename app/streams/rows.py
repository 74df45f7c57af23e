"""The rows a new stream starts with, written beside the responses, in batches.

One writer thread per process (a greenlet under gevent) drains a queue: the
request never waits for the database, and under load many streams' rows share
one transaction. A batch that fails is retried row by row, and a stream whose
rows cannot be written is stopped and ended with an error event.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..db import Database, queries
from ..principal import Principal

log = logging.getLogger("relay.streams.rows")
BATCH = 100


@dataclass(frozen=True)
class PendingRows:
    principal: Principal
    rows: dict[str, Any]


class RowWriter:
    def __init__(self, database: Database, on_failure: Callable[[str], None]) -> None:
        self.database = database
        self.on_failure = on_failure
        self._queue: queue.SimpleQueue[PendingRows] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, principal: Principal, rows: dict[str, Any]) -> None:
        self._queue.put(PendingRows(principal, rows))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="relay-row-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self.write(batch)

    def write(self, batch: list[PendingRows]) -> None:
        """Write a batch in one transaction; on failure row by row, ending each stream that fails."""
        try:
            with self.database.session() as session:
                for item in batch:
                    queries.record_user_turn(session, item.principal, **item.rows)
            return
        except Exception:  # noqa: BLE001 - find the row at fault below
            if len(batch) == 1:
                log.exception("stream %s: could not record its rows", batch[0].rows["stream_id"])
                self.on_failure(batch[0].rows["stream_id"])
                return
        for item in batch:
            self.write([item])
