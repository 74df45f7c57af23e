"""The auth_failures limit and the auth epoch, in Redis, checked before any token is parsed.

One script reads whether the client IP is blocked and the auth epoch (bumped
whenever a credential is revoked, so every process drops its cached
principals). The window is a moving one: an IP keeps the times of its last N
failures, and is blocked while the oldest of them is younger than the window,
so no stretch of that length ever holds more than N failures (a fixed window
would let 2N through across its boundary). Times are Redis's own clock. Both
keys share the hash tag `{auth}`, so the scripts work on a Redis Cluster.

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
from ..redis_store import registered

LIMIT_NAME = "auth_failures"
MAX_REMEMBERED_IPS = 10_000
REDIS_ERRORS = (redis.RedisError, OSError)


# KEYS: failures list, epoch; ARGV: allowed, window. Returns {seconds blocked (0: not), epoch}.
_CHECK = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local oldest = redis.call('LINDEX', KEYS[1], tonumber(ARGV[1]) - 1)
local blocked = 0
if oldest then
  blocked = tonumber(oldest) + tonumber(ARGV[2]) - t
  if blocked < 0 then blocked = 0 end
end
return {tostring(blocked), redis.call('GET', KEYS[2])}
"""

# KEYS: failures list; ARGV: allowed, window. Returns the failures inside the window, this one included.
_RECORD = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local allowed = tonumber(ARGV[1])
redis.call('LPUSH', KEYS[1], string.format('%.6f', t))
redis.call('LTRIM', KEYS[1], 0, allowed - 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
local times = redis.call('LRANGE', KEYS[1], 0, -1)
local inside = 0
for _, stamp in ipairs(times) do
  if tonumber(stamp) > t - tonumber(ARGV[2]) then inside = inside + 1 end
end
return inside
"""


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
        if self.allowed > 0:
            blocked, epoch = _script(_CHECK)(keys=[_failures_key(ip), _epoch_key()], args=[self.allowed, self.window])
            blocked_s = float(blocked)
        else:
            blocked_s, epoch = 0.0, redis_store.client.get(_epoch_key())
        blocked_until = now + blocked_s if blocked_s > 0 else 0.0
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
        count = int(_script(_RECORD)(keys=[_failures_key(ip)], args=[self.allowed, max(1, self.window)]))
        if count >= self.allowed:
            self._memo.pop(ip, None)  # the next request asks Redis, learns the block and remembers it
        return count

    def forget(self) -> None:
        self._memo.clear()


def _script(source: str):
    """The script on this process's Redis client (re-registered if the client changes)."""
    return registered(redis_store.client, source)


def bump_epoch() -> None:
    """Make every process forget its cached principals (after a revocation)."""
    redis_store.client.incr(_epoch_key())
