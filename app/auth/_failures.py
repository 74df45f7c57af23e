"""The auth_failures limit and the auth epoch, in Redis, checked before any token is parsed.

One MGET reads the client IP's failure count and the auth epoch (bumped
whenever a credential is revoked, so every process drops its cached
principals). A fixed window starts at an IP's first failure. Both keys share
the hash tag `{auth}`, so the MGET works on a Redis Cluster.

A process reuses an IP's answer for AUTH_CHECK_CACHE_SECONDS (1 s): that keeps
Redis off the path of most requests. It costs nothing against guessing: every
failure is counted in Redis at once, and the count Redis returns blocks the
IP in this process immediately. What may lag by that second is a valid
credential from an IP another process just blocked, and a revocation made by
another process.
"""

from __future__ import annotations

import threading
import time

import redis

from ..errors import APIError, too_many
from ..extensions import redis_store

LIMIT_NAME = "auth_failures"
MAX_REMEMBERED_IPS = 10_000
REDIS_ERRORS = (redis.RedisError, OSError)


def _failures_key(ip: str) -> str:
    return redis_store.key("auth", "{auth}", "failures", ip)


def _epoch_key() -> str:
    return redis_store.key("auth", "{auth}", "epoch")


def _limited(allowed: int, retry_after: float) -> APIError:
    error = too_many("rate_limited", LIMIT_NAME, retry_after, "Too many failed authentications; try again later.")
    seconds = error.extra_headers["Retry-After"]
    error.extra_headers.update(
        {"X-RateLimit-Limit": str(allowed), "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": seconds}
    )
    return error


class FailureGate:
    """Per process: `check(ip)` before parsing (429 or the epoch), `record(ip)` after a failure."""

    def __init__(self, limit: tuple[int, int], memo_s: float, clock=time.monotonic) -> None:
        self.allowed, self.window = limit
        self.memo_s = memo_s
        self._clock = clock
        # ip -> (answer valid until, epoch, blocked until or 0, asked at)
        self._memo: dict[str, tuple[float, str | None, float, float]] = {}
        self._lock = threading.Lock()

    def check(self, ip: str) -> tuple[str | None, float]:
        """429 when `ip` is over the limit; otherwise the auth epoch and when Redis said so."""
        now = self._clock()
        memo = self._memo.get(ip)
        if memo is None or memo[0] <= now:
            memo = self._ask_redis(ip, now)
        _, epoch, blocked_until, asked_at = memo
        if blocked_until > now:
            raise _limited(self.allowed, blocked_until - now)
        return epoch, asked_at

    def _ask_redis(self, ip: str, now: float) -> tuple[float, str | None, float, float]:
        count, epoch = redis_store.client.mget(_failures_key(ip), _epoch_key())
        blocked_until = 0.0
        if self.allowed > 0 and count is not None and int(count) >= self.allowed:
            ttl = redis_store.client.ttl(_failures_key(ip))
            blocked_until = now + (ttl if ttl is not None and ttl > 0 else self.window)
        valid_until = now + self.memo_s
        if blocked_until:
            valid_until = max(valid_until, blocked_until)  # blocked: no need to ask again until the window ends
        memo = (valid_until, epoch, blocked_until, now)
        if self.memo_s > 0 or blocked_until:
            with self._lock:
                while len(self._memo) >= MAX_REMEMBERED_IPS:
                    self._memo.pop(next(iter(self._memo)), None)
                self._memo[ip] = memo
        return memo

    def record(self, ip: str) -> int:
        """Count one failed authentication of `ip` in Redis; the window's count (0: limit off)."""
        if self.allowed <= 0:
            return 0
        key = _failures_key(ip)
        pipe = redis_store.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, max(1, self.window), nx=True)
        count = int(pipe.execute()[0])
        if count >= self.allowed:
            self._memo.pop(ip, None)  # the next request asks Redis, learns the block and remembers it
        return count

    def forget(self) -> None:
        self._memo.clear()


def bump_epoch() -> None:
    """Make every process forget its cached principals (after a revocation)."""
    redis_store.client.incr(_epoch_key())
