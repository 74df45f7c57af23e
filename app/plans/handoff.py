"""The worker hands a plan's outcome to the request waiting for it: one Redis list per plan.

The worker RPUSHes the outcome (after the row is stored: store, then notify);
the API process BLPOPs it in slices shorter than its Redis client's socket
timeout, so a wait of PLAN_TIMEOUT_SECONDS never trips that timeout and, under
gevent, parks only its own greenlet. The list expires on its own when nobody waits.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from ..redis_store import RedisStore

WAIT_SLICE_SECONDS = 2.0  # below the pooled client's socket timeout (app/redis_store.py)
KEEP_SECONDS = 60  # an outcome nobody took is gone this long after the request's deadline


def reservation_id(plan_id: str) -> str:
    """The plan's budget reservation: ':' keeps it apart from every stream id (which cannot hold one)."""
    return f"plan:{plan_id}"


def _key(store: RedisStore, plan_id: str) -> str:
    return store.key("plans", plan_id, "outcome")


def hand_over(client: redis.Redis, store: RedisStore, plan_id: str, outcome: dict[str, Any], wait_s: float) -> None:
    """Leave the outcome where the request waits for it (worker side)."""
    key = _key(store, plan_id)
    with client.pipeline(transaction=True) as pipe:
        pipe.rpush(key, json.dumps(outcome))
        pipe.expire(key, int(wait_s) + KEEP_SECONDS)
        pipe.execute()


def wait_for(client: redis.Redis, store: RedisStore, plan_id: str, timeout_s: float) -> dict[str, Any] | None:
    """The outcome, or None after `timeout_s` (API side)."""
    key = _key(store, plan_id)
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        popped = client.blpop([key], timeout=max(0.01, min(left, WAIT_SLICE_SECONDS)))
        if popped is not None:
            return json.loads(popped[1])
    return None
