"""Every connection pool of a process is bounded by its setting, and a caller beyond the bound
waits for a free connection instead of opening another (a managed Redis caps connections)."""

from __future__ import annotations

import threading

import redis

from app import extensions


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
    results: list[object] = []
    errors: list[BaseException] = []

    def slow_call() -> None:
        try:
            results.append(client.blpop([key], timeout=0.2))  # holds its connection 0.2 s
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=slow_call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors, errors
    assert results == [None] * 8  # every caller got its answer (the list stayed empty)
    pool = client.connection_pool
    assert len(pool._connections) <= 2  # noqa: SLF001 - the connections it ever opened


def test_the_limiter_shares_its_bounded_pool_under_concurrent_checks(make_app):
    app = make_app(LIMITER_POOL_SIZE=2)
    client = app.test_client()
    statuses: list[int] = []

    def request() -> None:
        statuses.append(client.get("/api/v1/models").status_code)

    threads = [threading.Thread(target=request) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert statuses == [200] * 12
    pool = extensions.limiter.storage.storage.connection_pool
    assert len(pool._connections) <= 2  # noqa: SLF001 - the connections it ever opened
