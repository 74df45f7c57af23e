"""A provider's deltas in batches: one journal event for chunks that arrive close together.

Every event costs a Redis round trip in the worker and a pub/sub message, a
queue hand-off and a socket write in every web process that reads the stream,
whatever its size; providers often send a token a chunk, milliseconds apart.
So a stream's events are spaced at least `window_s` apart: a delta that arrives
after a quiet spell goes out at once (the first chunk is never held), and what
arrives within the window after an event waits for the window's end and goes
out with the others in one event.

A reader greenlet pulls the provider's deltas into a queue while the task
writes the previous batch. When chunks come spaced out in time, the reader
pauses until the window's end: what the provider sends meanwhile waits in the
socket and is read in one go then (a read per window, not a read and a wake-up
per chunk). A burst is read on to its end, so a reply's last delta is held
only when it comes on its own, and then at most one window.

This needs gevent (the remote-provider worker); elsewhere (the local model's
prefork worker, where tokens come tens of milliseconds apart) each delta is
its own batch.

The task is told it is `waiting` whenever it blocks (on the queue or on the
window), so a cancel interrupts it there (workers/cancel_watch.py), as it did
the provider read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import gevent
import gevent.event
import gevent.queue
from gevent import monkey

from .cancel_watch import Cancelled, Watch
from .providers import Delta

_END = object()  # the provider's reply ended
SPACED_S = 0.001  # a read that waited this long: the provider sends chunks spaced out in time


class _Failure:
    """The provider's iterator raised: re-raised in the task after the deltas before it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Pace:
    """What the task and its reader share: the queue, and when the next batch may go."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.queue: gevent.queue.SimpleQueue = gevent.queue.SimpleQueue()
        self.next_send = 0.0  # monotonic time before which a batch is held
        self.resume: gevent.event.Event | None = None  # set at the window's end to wake a paused reader
        self.last = gevent.event.Event()  # set when the reply's last delta (or its failure) is queued
        self.first_sent = gevent.event.Event()  # set once the first batch is written (the task resumed)


def batches(deltas: Iterator[Delta], watch: Watch, window_s: float) -> Iterator[list[Delta]]:
    """The deltas of `deltas`, in order, in lists; raises what `deltas` raises, where it raised it.
    Closing it (or its end) closes `deltas`: the provider's response."""
    if window_s <= 0 or not monkey.is_module_patched("socket"):
        try:
            yield from _one_by_one(deltas, watch)
        finally:
            _close(deltas)
        return
    pace = _Pace(window_s)
    reader = gevent.spawn(_pull, deltas, pace)
    try:
        yield from _windows(pace, watch)
    finally:
        # A stop before the end (cap, cancel, shutdown). Not waited for: the task may itself be
        # being killed. The reader closes the provider's response in its own greenlet as it goes.
        reader.kill(block=False)


def _close(deltas: Iterator[Delta]) -> None:
    close = getattr(deltas, "close", None)
    if close is not None:
        close()


def _pull(deltas: Iterator[Delta], pace: _Pace) -> None:
    iterator = iter(deltas)
    spaced = False
    try:
        while True:
            pause = pace.next_send - time.monotonic() if spaced else 0
            if pause > 0:
                # Chunks come spaced out and a batch is held until then: what the provider sends
                # meanwhile waits in the socket and is read in one go (the task wakes us then).
                pace.resume = resume = gevent.event.Event()
                resume.wait(pause)
            started = time.monotonic()
            try:
                delta = next(iterator)
            except StopIteration:
                break
            # A burst (and the first delta, whatever it waited for) is read on to its end.
            spaced = pace.first_sent.is_set() and time.monotonic() - started >= SPACED_S
            pace.queue.put(delta)
            if delta.finish_reason:
                pace.last.set()  # the reply is complete: no reason to hold it
            if not pace.first_sent.is_set():
                # The first delta goes out now: the rest of its burst is read once it is written,
                # not while the task waits on Redis for it (time to first chunk).
                pace.first_sent.wait()
    except gevent.GreenletExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - handed to the task, which raises it
        pace.queue.put(_Failure(exc))
        pace.last.set()
        return
    finally:
        _close(deltas)  # here, in the greenlet that runs it: never "generator already executing"
    pace.queue.put(_END)
    pace.last.set()


def _windows(pace: _Pace, watch: Watch) -> Iterator[list[Delta]]:
    while True:
        first = _blocking(watch, pace.queue.get)
        hold = pace.next_send - time.monotonic()
        if hold > 0 and first is not _END and not isinstance(first, _Failure):
            _blocking(watch, pace.last.wait, hold)  # the window's end, or the reply's if sooner
            if pace.resume is not None:
                pace.resume.set()  # the reader reads what arrived during the window ...
            gevent.sleep(0)  # ... before the batch is taken (it runs until its socket would block)
        batch, last = _take_queued(pace.queue, first)
        pace.next_send = time.monotonic() + pace.window_s  # the reader pauses from now on
        if batch:
            yield batch
        pace.first_sent.set()
        if last is _END:
            return
        if isinstance(last, _Failure):
            raise last.error


def _take_queued(queue: gevent.queue.SimpleQueue, first) -> tuple[list[Delta], object]:
    """`first` and every delta queued after it, up to the end or a failure (returned apart)."""
    batch: list[Delta] = []
    item = first
    while True:
        if item is _END or isinstance(item, _Failure):
            return batch, item
        batch.append(item)
        if not queue.qsize():
            return batch, None
        item = queue.get()


def _blocking(watch: Watch, call, *args):
    """`call(*args)`, which blocks; a cancel may interrupt it (and is checked before)."""
    if watch.cancelled:
        raise Cancelled
    watch.waiting = True
    try:
        return call(*args)
    finally:
        watch.waiting = False
        watch.activity()


def _one_by_one(deltas: Iterator[Delta], watch: Watch) -> Iterator[list[Delta]]:
    """Each delta its own batch, read in the task itself (the cancel watcher may interrupt the read)."""
    iterator = iter(deltas)
    while True:
        try:
            delta = _blocking(watch, next, iterator)
        except StopIteration:
            return
        yield [delta]
