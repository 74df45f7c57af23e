"""What the stream views and the workers share in one process: journal, hub, catalog."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import gevent
import redis
from gevent import monkey
from kombu.exceptions import OperationalError as BrokerError

from ..catalog import Catalog
from ..db import Database, queries
from ..errors import unavailable
from ..limits import budget
from ..observability import STREAM_DISPATCH
from ..redis_store import RedisStore
from .direct import DirectLane
from .hub import HubUnavailable, PubSubHub, Subscription
from .job import GenerationJob
from .journal import Journal, error_data
from .presence import PresenceKeeper, WorkerWatch
from .reader import Timing, Watchers
from .rows import RowWriter

log = logging.getLogger("relay.streams")
DIRECT_QUEUE = "generate"  # the remote providers' queue, served by gevent workers that can listen


class StreamRuntime:
    """Built once per process by `create_app()`; the hub's thread starts on first use."""

    def __init__(self, settings: Mapping[str, Any], database: Database, store: RedisStore, celery: Any) -> None:
        self.settings = settings
        self.database = database
        self.catalog = Catalog(settings)
        self.celery = celery
        self.journal = Journal(
            store.client,
            store.prefix,
            retention_s=settings["STREAM_RETENTION_SECONDS"],
            maxlen=settings["STREAM_JOURNAL_MAXLEN"],
            orphan_grace_s=settings["STREAM_ORPHAN_GRACE_SECONDS"],
        )
        self.hub = PubSubHub(store.pubsub_client, settings["STREAM_READER_QUEUE"])
        worker_lost_s = settings["WORKER_LOST_SECONDS"]
        self.watchers = Watchers(
            PresenceKeeper(self.journal), WorkerWatch(self.journal, worker_lost_s / 2), self.settle_lost
        )
        self.rows = RowWriter(database, self.abandon)
        self.direct = DirectLane(store.client, store.prefix, DIRECT_QUEUE)
        self.timing = Timing(
            heartbeat_s=settings["HEARTBEAT_SECONDS"],
            queue_timeout_s=settings["QUEUE_TIMEOUT_SECONDS"],
            stall_s=settings["STREAM_STALL_SECONDS"],
            orphan_grace_s=settings["STREAM_ORPHAN_GRACE_SECONDS"],
            worker_lost_s=worker_lost_s,
        )

    def abandon(self, stream_id: str) -> None:
        """A stream that cannot be recorded: stop its job and end it for any reader."""
        try:
            self.journal.request_cancel(stream_id)
            self.journal.append(stream_id, "error", error_data("internal", "The stream could not be recorded.", 5))
        except (redis.ConnectionError, redis.TimeoutError):
            log.error("stream %s: could not be ended (Redis unavailable); its readers time out", stream_id)

    def settle_lost(self, stream_id: str) -> None:
        """A stream whose worker died ended `worker_lost`: charge what it cost so far (the last
        chunk's cost; before any chunk, its prompt, which the provider bills once called)
        and record that on its row."""
        try:
            cost = self.journal.last_chunk_cost(stream_id)
            if cost is None:
                cost = float(self.journal.meta(stream_id).get("prompt_usd") or 0.0)
        except (redis.ConnectionError, redis.TimeoutError):
            log.error("stream %s: worker lost, cost unknown (Redis unavailable); its reservation expires", stream_id)
            return
        budget.settle(stream_id, cost)
        try:
            with self.database.session() as session:
                queries.fail_unfinished_stream(session, stream_id, "worker_lost", cost)
        except Exception:  # noqa: BLE001 - the budget is settled; the row keeps its queued state
            log.exception("stream %s: could not record the lost worker", stream_id)

    def subscribe(self, stream_id: str) -> Subscription:
        try:
            return self.hub.subscribe(self.journal.channel(stream_id))
        except HubUnavailable:
            raise unavailable("redis") from None

    def create_stream(
        self, stream_id: str, fields: dict[str, str], first: dict[str, Any], job: GenerationJob, queue: str
    ) -> tuple[str | None, bool]:
        """Create the stream's journal and, in the same round trip, offer its job to a worker listening
        on the direct lane (remote providers, from a gevent process: the grace needs a green thread
        beside the request). Returns the existing owner (nothing created), or None and whether offered."""
        green = monkey.is_module_patched("socket")
        may_offer = queue == DIRECT_QUEUE and self.settings["DIRECT_DISPATCH"] and green
        offer = self.direct.offer_of(job.to_dict()) if may_offer else None
        return self.journal.create_and_offer(stream_id, fields, "stream", first, offer)

    def dispatch(self, job: GenerationJob, queue: str, offered: bool, on_refused: Callable[[], None]) -> None:
        """Send a created stream's job through Celery, unless a worker took its offer: then only if no
        worker claimed it within the grace (app/streams/direct.py). `on_refused` runs if the broker
        refuses it."""
        if offered:
            grace_s = self.settings["DIRECT_DISPATCH_GRACE_MS"] / 1000
            gevent.spawn_later(grace_s, self._unless_claimed, job, queue, on_refused)
            return
        STREAM_DISPATCH.labels("celery").inc()
        if not self.enqueue(job, queue):
            on_refused()

    def _unless_claimed(self, job: GenerationJob, queue: str, on_refused: Callable[[], None]) -> None:
        try:
            meta = self.journal.meta(job.stream_id)
            if meta.get("started"):
                STREAM_DISPATCH.labels("direct").inc()
                return
            if not meta or meta.get("ended"):
                return  # over before any worker took it (its error is recorded), or gone: nothing to run
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # unknown: send it; a claimed stream refuses the copy
        STREAM_DISPATCH.labels("celery_after_offer").inc()
        try:
            if not self.enqueue(job, queue):
                on_refused()
        except Exception:  # noqa: BLE001 - a green thread of its own: log, never lose the error
            log.exception("stream %s: sending the job through Celery failed", job.stream_id)

    def enqueue(self, job: GenerationJob, queue: str) -> bool:
        """Send a generation job; a job no worker took in time expires instead of running late.
        False when the broker refused it (the stream then ends with an error)."""
        try:
            self.celery.send_task(
                "workers.generate",
                kwargs={"job": job.to_dict()},
                queue=queue,
                expires=self.settings["QUEUE_TIMEOUT_SECONDS"],
                ignore_result=True,  # as the task says; told here, the sender builds no result backend per call
                # The message's readable summary (what monitoring tools show) names the stream only:
                # never the prompt, and no repr of it to build (a quarter of the publish's CPU).
                argsrepr="()",
                kwargsrepr=f"{{'job': <stream {job.stream_id}>}}",
            )
            return True
        except (OSError, BrokerError) as exc:
            log.error("broker unavailable: %s", type(exc).__name__)
            self.journal.append(job.stream_id, "error", error_data("internal", "The job queue is unavailable.", 5))
            return False
