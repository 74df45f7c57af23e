"""The process's Redis client and the key prefix every Relay key and channel uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.commands.core import Script

T = TypeVar("T")


class RedisStore:
    """Lazily creates one pooled client per process; `key()` names Relay's keys."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.prefix = "relay:"
        self._pool: tuple[int, float] = (0, 0.0)  # connections at most, longest wait for one (s)
        self._client: redis.Redis | None = None

    def init(self, url: str, prefix: str, pool_size: int, pool_timeout: float) -> None:
        if self._client is not None and (url, (pool_size, pool_timeout)) != (self.url, self._pool):
            self._client.close()
            self._client = None
        self.url, self.prefix, self._pool = url, prefix, (pool_size, pool_timeout)

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            if self.url is None:
                raise RuntimeError("RedisStore.init() was not called")
            pool = bounded_pool(self.url, *self._pool, decode_responses=True)
            self._client = redis.Redis(connection_pool=pool)
        return self._client

    def pubsub_client(self) -> redis.Redis:
        """A separate client for a long-lived subscriber connection (no read timeout)."""
        return redis.Redis.from_url(self.url, decode_responses=True, socket_connect_timeout=2, socket_keepalive=True)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)


def bounded_pool(url: str, size: int, timeout: float, **options: object) -> redis.BlockingConnectionPool:
    """A pool of at most `size` connections: at its size callers wait (up to `timeout` s) for a free
    one instead of opening more, so a burst never exceeds what a managed Redis allows a client."""
    return redis.BlockingConnectionPool.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        max_connections=size,
        timeout=timeout,
        **options,
    )


_scripts: dict[tuple[int, str], Script] = {}


def registered(client: redis.Redis, source: str) -> Script:
    """The Lua script `source` on `client`, registered once per client (EVALSHA, loaded on demand)."""
    key = (id(client), source)
    script = _scripts.get(key)
    if script is None:
        script = _scripts[key] = client.register_script(source)
    return script


def with_retries(call: Callable[[], T], seconds: float) -> T:
    """`call()`, retried through a Redis outage (a restart, a failover) of up to `seconds`;
    the backoff starts at 0.1 s and doubles to 1 s. The last error is raised after that."""
    deadline = time.monotonic() + seconds
    delay = 0.1
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
