"""Each worker process tells Redis it is alive, and how its local model fared.

Every process that runs jobs (a prefork child, a gevent pool's process) renews
`journal.worker_key(worker_id())` every WORKER_LOST_SECONDS/3 with a TTL of
WORKER_LOST_SECONDS, from a thread (a greenlet under gevent) started when it
begins serving. `claim` writes the same id into the stream's meta `started`, so
a reader that finds that key gone knows the worker died (SIGKILL, OOM, SIGILL)
and ends the stream `worker_lost` instead of waiting for the stall timeout.

A local-model worker also proves its model with a one-token generation and
renews the outcome (app/worker_state.py) on the same beat, so the outcome of a
dead worker expires with it. `failed` is written before the proof: a process
that dies during it (SIGILL) leaves `failed`, never nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

import redis

from app.worker_state import local_model_index, local_model_key

log = logging.getLogger("relay.workers.liveness")

INDEX_TTL_BEATS = 10  # the set of local workers outlives its members' records by this many TTLs
_ident: tuple[int, str] | None = None
_beat: Heartbeat | None = None
_start_lock = threading.Lock()


def worker_id() -> str:
    """This process's id, `host:pid`, computed in the process itself (never a parent's)."""
    global _ident
    pid = os.getpid()
    if _ident is None or _ident[0] != pid:
        _ident = (pid, f"{socket.gethostname()}:{pid}")
    return _ident[1]


class Heartbeat:
    """Renews this process's liveness key (and its local model's outcome) until the process ends."""

    def __init__(self, client: redis.Redis, worker: str, alive_key: str, prefix: str, ttl_s: float) -> None:
        self.client = client
        self.worker = worker
        self.alive_key = alive_key
        self.prefix = prefix
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.interval_s = ttl_s / 3
        self.local_model: str | None = None  # ok | failed, once this process has one
        self.pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="relay-liveness", daemon=True)

    def start(self) -> None:
        self.beat()  # at once: a job claimed right after start must find the key
        self._thread.start()

    def report_local_model(self, outcome: str) -> None:
        """Record the local model's outcome now, and on every later beat."""
        self.local_model = outcome
        self.beat()

    def beat(self) -> None:
        pipe = self.client.pipeline(transaction=False)  # keys in different cluster slots
        pipe.set(self.alive_key, "1", px=self.ttl_ms)
        if self.local_model is not None:
            index = local_model_index(self.prefix)
            pipe.set(local_model_key(self.prefix, self.worker), self.local_model, px=self.ttl_ms)
            pipe.sadd(index, self.worker)
            pipe.pexpire(index, self.ttl_ms * INDEX_TTL_BEATS)  # gone once every local worker is
        try:
            pipe.execute()
        except redis.RedisError as exc:  # the next beat retries; readers allow a whole TTL
            log.warning("liveness beat failed: %s", type(exc).__name__)

    def _run(self) -> None:
        pause = threading.Event()
        while not pause.wait(self.interval_s):
            self.beat()


def start(client: redis.Redis, alive_key: str, prefix: str, ttl_s: float) -> Heartbeat:
    """Start this process's heartbeat, once per process (idempotent; a forked child starts its own)."""
    global _beat
    with _start_lock:
        if _beat is None or _beat.pid != os.getpid():
            _beat = Heartbeat(client, worker_id(), alive_key, prefix, ttl_s)
            _beat.start()
        return _beat


def in_background(target: Callable[..., object], *args: object) -> None:
    """Run start-up work without delaying the process's readiness (a greenlet under gevent)."""
    threading.Thread(target=target, args=args, name=f"relay-{target.__name__}", daemon=True).start()


def prove_local_model(beat: Heartbeat, settings: Mapping[str, Any]) -> None:
    """Load the local model and generate one token, in the background; record ok or failed."""

    def prove() -> None:
        from .providers import ProviderError, get_provider

        beat.report_local_model("failed")  # stays if this process dies while proving
        try:
            get_provider("local", settings).prove()
        except ProviderError as exc:
            log.error("local model failed its start-up check: %s", exc)
            return
        beat.report_local_model("ok")
        log.info("local model ready: one-token generation succeeded")

    in_background(prove)
