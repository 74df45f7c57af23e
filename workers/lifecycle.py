"""Around each generation and at shutdown, in a worker process.

Each `workers.generate` job is tracked while it runs in this process (Celery's
task_prerun/task_postrun), so that:

- when it ends, the worker writes the stream's `relay.stream` log line from
  the terminal event it recorded (outcome, time to first chunk, tokens, cost);
- on SIGTERM (Celery's warm shutdown: no new jobs, running ones go on), the
  generations still running after WORKER_SHUTDOWN_GRACE_SECONDS are ended
  explicitly: `error` `worker_lost` with a `retry_after`, their cost so far
  settled like a lost worker's, and their green threads killed so the pool's
  join returns. A client never waits in silence for a worker that is leaving.

The grace applies to pools whose jobs run in this process (gevent, threads,
solo). A prefork pool's jobs run in children, which Celery's warm shutdown
waits for; if they are killed instead, readers see their liveness keys expire
and end their streams `worker_lost` (app/streams/reader.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import redis
from celery.signals import task_postrun, task_prerun, worker_shutting_down
from flask import Flask

from app.logs import stream_finished
from app.streams import error_data

log = logging.getLogger("relay.workers.lifecycle")

GENERATE_TASK = "workers.generate"
SHUTDOWN_RETRY_AFTER_S = 1  # the reply can be asked for again at once: other workers are running
_running: dict[str, tuple[str, Any]] = {}  # task id -> (stream id, the greenlet or thread running it)
_lock = threading.Lock()


def _stream_id(args: tuple | list | None, kwargs: Mapping[str, Any] | None) -> str | None:
    """The stream a generation job feeds, whichever form the job travels in."""
    kwargs = kwargs or {}
    job = kwargs.get("job") or (args[0] if args and isinstance(args[0], Mapping) else None)
    if isinstance(job, Mapping):
        return job.get("stream_id")
    return kwargs.get("stream_id") or (args[0] if args and isinstance(args[0], str) else None)


def _current() -> Any:
    try:
        import gevent

        return gevent.getcurrent()
    except ImportError:  # pragma: no cover - gevent is a dependency
        return threading.current_thread()


def install(app: Flask) -> None:
    """Connect the hooks of this worker process to `app` (once per process)."""
    runtime = app.extensions["relay.streams"]
    grace_s = app.config["WORKER_SHUTDOWN_GRACE_SECONDS"]

    def started(task_id: str, task: Any, args: Any = None, kwargs: Any = None, **_: Any) -> None:
        if getattr(task, "name", None) != GENERATE_TASK:
            return
        stream_id = _stream_id(args, kwargs)
        if stream_id:
            _track(task_id, stream_id)

    def finished(task_id: str, task: Any, **_: Any) -> None:
        _untrack(runtime, task_id)

    def shutting_down(**_: Any) -> None:
        _later(grace_s, end_unfinished, runtime)
        with _lock:
            count = len(_running)
        log.warning("warm shutdown: %d generations running; those left after %.0fs end worker_lost", count, grace_s)

    task_prerun.connect(started, weak=False, dispatch_uid="relay.lifecycle.prerun")
    task_postrun.connect(finished, weak=False, dispatch_uid="relay.lifecycle.postrun")
    worker_shutting_down.connect(shutting_down, weak=False, dispatch_uid="relay.lifecycle.shutdown")


def _track(key: str, stream_id: str) -> None:
    with _lock:
        _running[key] = (stream_id, _current())


def _untrack(runtime: Any, key: str) -> None:
    with _lock:
        entry = _running.pop(key, None)
    if entry is not None:
        _log_stream(runtime, entry[0])


@contextlib.contextmanager
def tracked(runtime: Any, stream_id: str) -> Iterator[None]:
    """A generation started without Celery (workers/direct.py), tracked as a job is: its log line
    at the end, and the shutdown grace."""
    key = f"direct:{stream_id}"
    _track(key, stream_id)
    try:
        yield
    finally:
        _untrack(runtime, key)


def running_count() -> int:
    """Generations running in this process now."""
    with _lock:
        return len(_running)


def _later(seconds: float, call: Any, *args: Any) -> None:
    """Run `call(*args)` after `seconds`, in the background. Under gevent the signal arrives in the
    hub, where a thread's start (which waits for the thread) may not block: a timer greenlet instead."""
    from gevent import monkey

    if monkey.is_module_patched("threading"):
        import gevent

        gevent.spawn_later(seconds, call, *args)
        return
    timer = threading.Timer(seconds, call, args=args)
    timer.daemon = True
    timer.start()


def _log_stream(runtime: Any, stream_id: str) -> None:
    """Write the `relay.stream` line from the stream's terminal event (when it has one)."""
    try:
        meta = runtime.journal.meta(stream_id)
        ended = int(meta.get("ended") or 0)
        if not ended:
            return
        events = runtime.journal.read_after(stream_id, ended - 1)
    except (redis.ConnectionError, redis.TimeoutError):
        return  # the stream's outcome is in the database and the metrics; only its log line is lost
    if events and events[0].terminal:
        stream_finished(stream_id, meta.get("model"), events[0].event, events[0].payload())


def end_unfinished(runtime: Any) -> int:
    """The grace is over: end every generation still running here, and stop it. Returns how many."""
    with _lock:
        entries = list(_running.items())
    ended = 0
    for task_id, (stream_id, runner) in entries:
        data = error_data("worker_lost", "The worker shut down before the reply was finished.", SHUTDOWN_RETRY_AFTER_S)
        try:
            if runtime.journal.append(stream_id, "error", data) > 0:
                ended += 1
                runtime.settle_lost(stream_id)
                _log_stream(runtime, stream_id)
        except (redis.ConnectionError, redis.TimeoutError):
            log.error("stream %s: could not be ended at shutdown (Redis unavailable); readers time out", stream_id)
        with _lock:
            _running.pop(task_id, None)
        _stop(runner)
    if entries:
        log.warning("warm shutdown: grace over, %d unfinished generations ended worker_lost", ended)
    return ended


def _stop(runner: Any) -> None:
    """Kill a job's green thread (its provider call is closed on the way out); threads run on."""
    kill = getattr(runner, "kill", None)
    if kill is not None and not getattr(runner, "dead", True):
        kill(block=False)
