"""Spend budgets: what a request reserves, and settling a reservation to the real cost.

Money in Redis is whole micro-dollars (integers, so INCRBY is exact), always
rounded up: a reservation never holds less than its worst case, and a
settlement never records less than the database does.

A reservation lives in `budget:res:<stream id>` (amount, the day counters it
was added to, state) and in the deadline set `budget:res`. Settling moves the
day counters by (real - reserved) and deletes it. Work that never settles (a
crashed worker, a job no worker took) stops holding budget at its deadline:
the next admission releases it (state `expired`); a late settlement then adds
the real cost to the counters of the day it was reserved on.

Workers call `settle()`; it uses no request state.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from .. import extensions
from ..catalog import ModelSpec
from ..redis_store import registered, with_retries
from ..tokens import count_prompt_tokens

log = logging.getLogger("relay.limits")

MICRO = 1_000_000
SETTLE_RETRY_SECONDS = 5.0

_SETTLE = """
local held = redis.call('HMGET', KEYS[2], 'amount', 'keys', 'state')
if not held[1] then
  return -1
end
local delta = tonumber(ARGV[2])
if held[3] == 'held' then
  delta = delta - tonumber(held[1])
end
for key in string.gmatch(held[2], '%S+') do
  redis.call('INCRBY', key, delta)
  if redis.call('TTL', key) < 0 then
    redis.call('EXPIRE', key, 3 * 86400)
  end
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""


def to_micro(usd: float) -> int:
    """Whole micro-dollars, rounded up (after trimming float noise such as 130.00000000000003)."""
    return math.ceil(round(usd * MICRO, 6))


def reservation_usd(spec: ModelSpec, messages: Iterable[Mapping[str, str]], max_tokens: int, cap_usd: float) -> float:
    """The smaller of the cost cap and the worst case (prompt at the input price, max_tokens at the
    output price), and never less than the prompt's own cost: the provider bills the prompt whatever the cap."""
    if not spec.price_in_per_mtok and not spec.price_out_per_mtok:
        return 0.0  # a free model: nothing to reserve, no tokenizer to load
    prompt_tokens = count_prompt_tokens(spec, messages)
    return max(spec.cost(prompt_tokens, 0), min(cap_usd, spec.cost(prompt_tokens, max_tokens)))


def ceilings(config: Mapping[str, Any], tenant_id: str | None, anonymous: bool) -> list[tuple[str, str, int]]:
    """(name, base key, ceiling in micro-dollars; 0 is off) of every budget a request draws on."""
    rows = [("daily_spend_ceiling", base_key("global"), config["DAILY_SPEND_CEILING_USD"])]
    if tenant_id:
        rows.append(("tenant_daily_budget", base_key("tenant", tenant_id), config["TENANT_DAILY_BUDGET_USD"]))
    if anonymous:
        rows.append(("anon_daily_budget", base_key("anon"), config["ANON_DAILY_BUDGET_USD"]))
    return [(name, key, max(0, math.floor(round(usd * MICRO, 6)))) for name, key, usd in rows]


def base_key(*parts: str) -> str:
    return extensions.redis_store.key("budget", *parts)


def reservations_key() -> str:
    return extensions.redis_store.key("budget", "res")


def reservation_key(stream_id: str) -> str:
    return extensions.redis_store.key("budget", "res", stream_id)


def spent_today_usd(*parts: str) -> float:
    """Spend plus live reservations of one budget today (UTC), from Redis."""
    day = int(time.time() // 86400)
    raw = extensions.redis_store.client.get(f"{base_key(*parts)}:{day}")
    return int(raw or 0) / MICRO


def settle(stream_id: str, cost_usd: float) -> None:
    """Settle the stream's reservation to what it really cost (0 releases it). Never raises.

    Rides out a short Redis outage; after that the reservation expires on its own.
    """
    script = registered(extensions.redis_store.client, _SETTLE)
    keys, args = [reservations_key(), reservation_key(stream_id)], [stream_id, to_micro(cost_usd)]
    try:
        with_retries(lambda: script(keys=keys, args=args), SETTLE_RETRY_SECONDS)
    except (redis.ConnectionError, redis.TimeoutError):
        log.error("stream %s: budget not settled (Redis unavailable); its reservation will expire", stream_id)
    except redis.RedisError:
        log.exception("stream %s: budget not settled", stream_id)
