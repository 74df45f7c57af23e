"""The auth_failures limit and the auth epoch, in Redis.

Before a token is parsed, one MGET reads the client IP's failure count and the
auth epoch (bumped whenever a credential is revoked, so every process drops
its cached principals). A fixed window starts at an IP's first failure.
Both keys share the hash tag `{auth}`, so the MGET works on a Redis Cluster.
"""

from __future__ import annotations

import redis

from ..errors import APIError, too_many
from ..extensions import redis_store

LIMIT_NAME = "auth_failures"


def _failures_key(ip: str) -> str:
    return redis_store.key("auth", "{auth}", "failures", ip)


def _epoch_key() -> str:
    return redis_store.key("auth", "{auth}", "epoch")


def preflight(ip: str, limit: tuple[int, int]) -> str | None:
    """429 when `ip` is over the limit; otherwise the current auth epoch."""
    count, epoch = redis_store.client.mget(_failures_key(ip), _epoch_key())
    allowed, window = limit
    if allowed > 0 and count is not None and int(count) >= allowed:
        ttl = redis_store.client.ttl(_failures_key(ip))
        raise _limited(allowed, window if ttl is None or ttl < 0 else ttl)
    return epoch


def _limited(allowed: int, retry_after: int) -> APIError:
    error = too_many("rate_limited", LIMIT_NAME, retry_after, "Too many failed authentications; try again later.")
    error.extra_headers.update(
        {"X-RateLimit-Limit": str(allowed), "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(max(1, retry_after))}
    )
    return error


def record_failure(ip: str, limit: tuple[int, int]) -> int:
    """Count one failed authentication of `ip`; the count in the current window (0: limit off)."""
    allowed, window = limit
    if allowed <= 0:
        return 0
    key = _failures_key(ip)
    pipe = redis_store.client.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, max(1, window), nx=True)
    count, _ = pipe.execute()
    return int(count)


def bump_epoch() -> None:
    """Make every process forget its cached principals (after a revocation)."""
    redis_store.client.incr(_epoch_key())


REDIS_ERRORS = (redis.RedisError, OSError)
