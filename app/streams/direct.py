"""Direct dispatch: a listening worker starts a reply without Celery's hop.

Celery's hop (the publish, the worker's pick-up and its ack bookkeeping) takes
about 3 ms before the provider hears of a reply: the largest part of what Relay
adds to the time to first chunk. So a gevent worker with room for more replies
listens on a Redis list, and the web offers each remote-provider job there
first, when a worker listens. The worker claims the stream as for any job; a
stream is claimed once, so a job never runs twice.

Celery still carries every job no worker took: a few milliseconds after the
offer (DIRECT_DISPATCH_GRACE_MS) the web reads the stream's meta and, unless a
worker claimed it, publishes the job to Celery as it would have. An offer no
worker read, or that a worker took and died before claiming, costs that grace
and nothing else; the Celery copy of a job a worker claimed late is refused
at its claim.

Keys (the process's prefix, then `direct:<queue>:`):
  listeners  sorted set: worker id -> Redis time until which it listens
  jobs       list of job JSON, capped and expiring (stale offers are refused at the claim)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from ..redis_store import registered

JOBS_CAP = 256  # offers kept at most; an offer beyond is dropped, and the grace sends it through Celery
JOBS_TTL_S = 30

# offer(listeners, jobs, job, cap, ttl): 1 when `job` was put on the lane, 0 when no worker listens.
# Also made by the journal's create script, in the round trip that creates the stream.
OFFER_LUA = """
local function offer(listeners, jobs, job, cap, ttl)
  local now = redis.call('TIME')[1]
  redis.call('ZREMRANGEBYSCORE', listeners, '-inf', '(' .. now)
  if redis.call('ZCARD', listeners) == 0 then
    return 0
  end
  redis.call('LPUSH', jobs, job)
  redis.call('LTRIM', jobs, 0, tonumber(cap) - 1)
  redis.call('EXPIRE', jobs, ttl)
  return 1
end
"""
_OFFER = OFFER_LUA + "return offer(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])"

# KEYS: listeners. ARGV: worker id, seconds it listens for.
_LISTEN = """
local now = redis.call('TIME')[1]
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Offer:
    """A job to put on a lane, as OFFER_LUA's keys and arguments."""

    keys: tuple[str, str]  # listeners, jobs
    args: tuple[str, int, int]  # job JSON, cap, ttl


class DirectLane:
    """One queue's direct lane: the web offers, listening workers take."""

    def __init__(self, client: redis.Redis, prefix: str, queue: str) -> None:
        self.client = client
        self.queue = queue
        self.listeners_key = f"{prefix}direct:{queue}:listeners"
        self.jobs_key = f"{prefix}direct:{queue}:jobs"
        self._offer = registered(client, _OFFER)

    def offer_of(self, job: dict[str, Any]) -> Offer:
        return Offer(
            (self.listeners_key, self.jobs_key), (json.dumps(job, separators=(",", ":")), JOBS_CAP, JOBS_TTL_S)
        )

    def offer(self, job: dict[str, Any]) -> bool:
        """Put `job` on the lane when a worker listens; False (nothing written) when none does."""
        offer = self.offer_of(job)
        return bool(self._offer(keys=list(offer.keys), args=list(offer.args)))

    def take(self, worker: str, wait_s: int) -> dict[str, Any] | None:
        """Listen as `worker` and wait up to `wait_s` (whole seconds) for a job, in one round trip;
        None when none came (or what came was not a job). The listening mark outlives the wait by a
        second, so offers never find a gap between waits."""
        pipe = self.client.pipeline(transaction=False)
        # EVAL, not a registered script: a pipeline checks its scripts exist in a round trip of its own.
        pipe.eval(_LISTEN, 1, self.listeners_key, worker, wait_s + 1)
        pipe.brpop([self.jobs_key], timeout=max(1, wait_s))  # 0 would wait for ever
        _, popped = pipe.execute()
        if popped is None:
            return None
        try:
            job = json.loads(popped[1])
        except ValueError:
            return None
        return job if isinstance(job, dict) else None

    def leave(self, worker: str) -> None:
        """Stop listening as `worker` (at capacity, or shutting down)."""
        self.client.zrem(self.listeners_key, worker)
