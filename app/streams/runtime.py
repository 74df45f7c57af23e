"""What the stream views and the workers share in one process: journal, hub, catalog."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis
from kombu.exceptions import OperationalError as BrokerError

from ..catalog import Catalog
from ..db import Database
from ..errors import unavailable
from ..redis_store import RedisStore
from .hub import HubUnavailable, PubSubHub, Subscription
from .journal import Journal
from .presence import PresenceKeeper
from .reader import Timing
from .rows import RowWriter

log = logging.getLogger("relay.streams")


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
        self.presence = PresenceKeeper(self.journal)
        self.rows = RowWriter(database, self.abandon)
        self.timing = Timing(
            heartbeat_s=settings["HEARTBEAT_SECONDS"],
            queue_timeout_s=settings["QUEUE_TIMEOUT_SECONDS"],
            stall_s=settings["STREAM_STALL_SECONDS"],
            orphan_grace_s=settings["STREAM_ORPHAN_GRACE_SECONDS"],
        )

    def abandon(self, stream_id: str) -> None:
        """A stream that cannot be recorded: stop its job and end it for any reader."""
        try:
            self.journal.request_cancel(stream_id)
            self.journal.append(
                stream_id,
                "error",
                {"error_code": "internal", "detail": "The stream could not be recorded.", "retry_after": 5},
            )
        except (redis.ConnectionError, redis.TimeoutError):
            log.error("stream %s: could not be ended (Redis unavailable); its readers time out", stream_id)

    def subscribe(self, stream_id: str) -> Subscription:
        try:
            return self.hub.subscribe(self.journal.channel(stream_id))
        except HubUnavailable:
            raise unavailable("redis") from None

    def enqueue(self, task: str, queue: str, kwargs: dict[str, Any]) -> bool:
        """Send a job; a job no worker took in time expires instead of running late.
        False when the broker refused it (the stream then ends with an error)."""
        try:
            self.celery.send_task(task, kwargs=kwargs, queue=queue, expires=self.settings["QUEUE_TIMEOUT_SECONDS"])
            return True
        except (OSError, BrokerError) as exc:
            log.error("broker unavailable: %s", type(exc).__name__)
            self.journal.append(
                kwargs["stream_id"],
                "error",
                {"error_code": "internal", "detail": "The job queue is unavailable.", "retry_after": 5},
            )
            return False
