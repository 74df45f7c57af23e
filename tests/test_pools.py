"""Every connection pool of a process is bounded by its setting, and a caller beyond the bound
waits for a free connection instead of opening another (a managed Redis caps connections)."""

from __future__ import annotations

import redis

from app import extensions
from tests.support import at_once


def test_each_pool_takes_its_size_from_the_settings(make_app):
    app = make_app(REDIS_POOL_SIZE=3, LIMITER_POOL_SIZE=2, BROKER_POOL_SIZE=4, REDIS_POOL_TIMEOUT_SECONDS=1.5)
    commands = extensions.redis_store.client.connection_pool
    assert isinstance(commands, redis.BlockingConnectionPool)
    assert (commands.max_connections, commands.timeout) == (3, 1.5)
    limiter = extensions.limiter.storage.storage.connection_pool
    assert isinstance(limiter, redis.BlockingConnectionPool)
    assert (limiter.max_connections, limiter.timeout) == (2, 1.5)
    celery = app.extensions["celery"]
    assert celery.conf.broker_pool_limit == 4
    assert celery.pool.limit == 4


def test_callers_beyond_the_pool_wait_for_a_connection_and_all_succeed(make_app):
    make_app(REDIS_POOL_SIZE=2)
    client = extensions.redis_store.client
    key = extensions.redis_store.key("pool-test", "empty-list")
    # Each call holds its connection 0.2 s (the list stays empty): 8 of them share 2 connections.
    results = at_once(lambda: client.blpop([key], timeout=0.2), 8)
    assert results == [None] * 8  # every caller got its answer, none an error
    pool = client.connection_pool
    assert len(pool._connections) <= 2  # noqa: SLF001 - the connections it ever opened


def test_the_limiter_shares_its_bounded_pool_under_concurrent_checks(make_app):
    app = make_app(LIMITER_POOL_SIZE=2)
    client = app.test_client()
    statuses = at_once(lambda: client.get("/api/v1/models").status_code, 12)
    assert statuses == [200] * 12
    pool = extensions.limiter.storage.storage.connection_pool
    assert len(pool._connections) <= 2  # noqa: SLF001 - the connections it ever opened
