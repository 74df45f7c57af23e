"""A provider's deltas in batches: one journal event for chunks that arrive close together.

Every event costs a Redis round trip in the worker and a pub/sub message, a
queue hand-off and a socket write in every web process that reads the stream,
whatever its size; providers often send a token a chunk, milliseconds apart.
So a stream's events are spaced at least `window_s` apart: a delta that arrives
after a quiet spell goes out at once (the first chunk is never held), and what
arrives within the window after an event waits for the window's end and goes
out together with it. No delta waits longer than the window, and the end of the
reply is never held.

A reader greenlet pulls the provider's deltas into a queue while the task
writes the previous batch, so a slow Redis round trip also batches. That needs
gevent (the remote-provider worker); elsewhere (the local model's prefork
worker, where tokens come tens of milliseconds apart) each delta is its own batch.

The task is told it is `waiting` only while it blocks on the queue, so a cancel
can interrupt it there (workers/cancel_watch.py), as it did the provider read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import gevent
import gevent.queue
from gevent import monkey

from .cancel_watch import Cancelled, Watch
from .providers import Delta

_END = object()  # the provider's reply ended


class _Failure:
    """The provider's iterator raised: re-raised in the task after the deltas before it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def batches(deltas: Iterator[Delta], watch: Watch, window_s: float) -> Iterator[list[Delta]]:
    """The deltas of `deltas`, in order, in lists; raises what `deltas` raises, where it raised it."""
    if window_s <= 0 or not monkey.is_module_patched("socket"):
        yield from _one_by_one(deltas, watch)
        return
    pending: gevent.queue.SimpleQueue = gevent.queue.SimpleQueue()
    reader = gevent.spawn(_pull, deltas, pending)
    try:
        yield from _windows(pending, watch, window_s)
    finally:
        reader.kill()  # a stop (cap, cancel) before the end: the provider's response closes


def _pull(deltas: Iterator[Delta], pending: gevent.queue.SimpleQueue) -> None:
    try:
        for delta in deltas:
            pending.put(delta)
    except gevent.GreenletExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - handed to the task, which raises it
        pending.put(_Failure(exc))
        return
    pending.put(_END)


def _windows(pending: gevent.queue.SimpleQueue, watch: Watch, window_s: float) -> Iterator[list[Delta]]:
    last_sent = -window_s
    while True:
        batch: list[Delta] = []
        item = _wait(pending, watch, None)
        hold_until = last_sent + window_s
        while True:
            if item is _END or isinstance(item, _Failure):
                if batch:
                    yield batch
                if isinstance(item, _Failure):
                    raise item.error
                return
            batch.append(item)
            watch.activity()
            if pending.qsize():  # already here: never worth a wait
                item = pending.get()
                continue
            remaining = hold_until - time.monotonic()
            if remaining <= 0:
                break
            item = _wait(pending, watch, remaining)
            if item is None:
                break
        yield batch
        last_sent = time.monotonic()


def _wait(pending: gevent.queue.SimpleQueue, watch: Watch, timeout: float | None):
    """The next item, or None after `timeout`; interruptible by a cancel while it waits."""
    if watch.cancelled:
        raise Cancelled
    watch.waiting = True
    try:
        return pending.get(timeout=timeout)
    except gevent.queue.Empty:
        return None
    finally:
        watch.waiting = False


def _one_by_one(deltas: Iterator[Delta], watch: Watch) -> Iterator[list[Delta]]:
    """Each delta its own batch, read in the task itself (the cancel watcher may interrupt the read)."""
    iterator = iter(deltas)
    while True:
        if watch.cancelled:
            raise Cancelled
        watch.waiting = True
        try:
            delta = next(iterator)
        except StopIteration:
            return
        finally:
            watch.waiting = False
        watch.activity()
        yield [delta]
