"""A gevent worker's listener on the direct lane (app/streams/direct.py).

One green thread per worker process that consumes the remote providers' queue:
while the process runs fewer generations than its pool's concurrency, it
listens and takes offered jobs. Each runs in the Celery pool's own green
threads, in the app's context, tracked like a Celery job: its log line, and
the warm shutdown waits for it (or ends it at the grace) as for any job.
At capacity, and from the warm shutdown on, it stops listening; an offer it
took after that is dropped, and the web's grace sends it through Celery.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import gevent
import redis
from flask import Flask

from app.streams.direct import DirectLane

from . import lifecycle
from .liveness import worker_id

log = logging.getLogger("relay.workers.direct")

WAIT_S = 1  # one listening round trip per second while idle
FULL_PAUSE_S = 0.05  # at capacity: how often room is looked for
RETRY_MAX_S = 2.0


class DirectListener:
    """The listening green thread of one worker process, and the offers it starts in `pool`."""

    def __init__(self, app: Flask, lane: DirectLane, pool: Any) -> None:
        self.app = app
        self.lane = lane
        self.pool = pool
        self.capacity = max(1, int(pool.limit or 1))
        self.worker = worker_id()
        self.stopping = False
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._listen)

    def stop(self) -> None:
        """No more offers from now on (the warm shutdown)."""
        self.stopping = True
        gevent.spawn(self._leave)

    def _listen(self) -> None:
        backoff = 0.1
        listening = False
        while not self.stopping:
            if lifecycle.running_count() >= self.capacity:
                if listening:
                    self._leave()
                    listening = False
                gevent.sleep(FULL_PAUSE_S)
                continue
            try:
                listening = True
                job = self.lane.take(self.worker, WAIT_S)
                backoff = 0.1
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("direct lane unavailable (%s); retrying in %.1fs", type(exc).__name__, backoff)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
                continue
            if job is None or self.stopping:
                continue  # a job taken while stopping is dropped: the web sends it through Celery
            # Waits for room when webhook deliveries fill the pool; the pool reports the outcome to
            # `callback`, and the generation records its own.
            self.pool.apply_async(self._run, args=(job,), callback=_ignore)
            gevent.sleep(0)  # the job starts (up to its claim) before the next listen goes out
        self._leave()

    def _leave(self) -> None:
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):  # the mark expires in seconds
            self.lane.leave(self.worker)

    def _run(self, job: dict[str, Any]) -> None:
        from .generate import generate

        stream_id = str(job.get("stream_id"))
        started = time.monotonic()
        try:
            with self.app.app_context(), lifecycle.tracked(self.app.extensions["relay.streams"], stream_id):
                generate.run(job)
        except Exception:  # noqa: BLE001 - a green thread of its own: the stream's end is generate's job
            log.exception("stream %s: direct generation failed after %.1fs", stream_id, time.monotonic() - started)


def _ignore(_outcome: object) -> None:
    pass


_listener: DirectListener | None = None


def start(app: Flask, consumer: Any) -> DirectListener | None:
    """Listen in this worker process when it runs a gevent pool on the remote providers' queue."""
    global _listener
    from celery.concurrency.gevent import TaskPool as GeventPool

    runtime = app.extensions["relay.streams"]
    queues = {queue.name for queue in getattr(getattr(consumer, "task_consumer", None), "queues", ())}
    pool = getattr(consumer, "pool", None)
    if not app.config["DIRECT_DISPATCH"] or runtime.direct.queue not in queues or not isinstance(pool, GeventPool):
        return None
    _listener = DirectListener(app, runtime.direct, pool)
    _listener.start()
    log.info("listening for direct dispatch on %s (up to %d generations)", runtime.direct.queue, _listener.capacity)
    return _listener


def stop() -> None:
    if _listener is not None:
        _listener.stop()
