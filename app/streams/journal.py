"""A stream's journal in Redis: store, then notify, in one atomic step.

Per stream (all keys share the hash tag `{id}`):
  meta    hash: owner, model, prompt_usd, seq, started (the claiming worker's id),
          ended, cancel, last_at
  events  Redis Stream with ids `0-<seq>`: the replayable journal (capped, expiring)
  readers key with a TTL that live readers refresh; its absence means orphaned
  channel pub/sub channel carrying "<seq>\\n<event>\\n<json>" for live readers

`create` writes the first event and, in the same script, may offer the
stream's job on the direct lane (app/streams/direct.py), whose keys are
shared by all streams. `append` is one Lua script: it refuses events after `done`/`error`, reports a
cancel request or a lost reader to the producer, assigns the next id, appends,
refreshes TTLs and publishes. Readers replay with XRANGE after their last id.

`last_at` (the time of the last event or of the claim) is Redis's own clock,
read inside the scripts, and readers compare it with Redis's clock read in the
same round trip: API and worker hosts' clocks never meet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from ..redis_store import registered
from .direct import OFFER_LUA, Offer

TERMINAL_EVENTS = frozenset({"done", "error"})
CLAIMED_EVENT = "claimed"  # published (never journaled, id 0) when a worker claims the stream

# Return values of append besides a positive sequence number.
REJECTED_ENDED = 0
REJECTED_CANCELLED = -1

# Redis's clock as "<seconds>.<microseconds>", for last_at.
_NOW = """
local function now()
  local t = redis.call('TIME')
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end
"""

_APPEND = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'ended') == 1 then
  return 0
end
local event = ARGV[1]
if event == 'message_chunk' then
  if redis.call('HEXISTS', KEYS[1], 'cancel') == 1 or redis.call('EXISTS', KEYS[3]) == 0 then
    return -1
  end
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. seq, 'e', event, 'd', ARGV[2])
if event == 'done' or event == 'error' then
  redis.call('HSET', KEYS[1], 'ended', seq, 'last_at', now())
else
  redis.call('HSET', KEYS[1], 'last_at', now())
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], seq .. '\\n' .. event .. '\\n' .. ARGV[2])
return seq
"""
)

# Create a stream's meta if absent, with its first event (id 1), and when KEYS[4] and KEYS[5] are
# given, offer its job on the direct lane (app/streams/direct.py) in the same step. Returns the
# existing owner, or when created '+' (and offered) or ''.
# ARGV: ttl, grace, event, data, maxlen, job, cap, job ttl, fields...
_CREATE = (
    _NOW
    + OFFER_LUA
    + """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner then return owner end
redis.call('HSET', KEYS[1], 'seq', 1, 'last_at', now(), unpack(ARGV, 9))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '0-1', 'e', ARGV[3], 'd', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[1])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
if #KEYS == 5 and offer(KEYS[4], KEYS[5], ARGV[6], ARGV[7], ARGV[8]) == 1 then
  return '+'
end
return ''
"""
)
_CREATED_AND_OFFERED = "+"  # never an owner id (those are "<kind>:<id>" or a user's id)

# A worker claims a stream once: 0 when it ended (e.g. no_worker) or is gone,
# 1 when claimed, 2 when claimed but cancelled before it began. The claim
# restarts the silence clock and tells live readers which worker to watch.
_CLAIM = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'ended') == 1 then
  return 0
end
if redis.call('HSETNX', KEYS[1], 'started', ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'last_at', now())
redis.call('PUBLISH', ARGV[2], '0\\n' .. ARGV[3] .. '\\n' .. ARGV[4])
if redis.call('HEXISTS', KEYS[1], 'cancel') == 1 then
  return 2
end
return 1
"""
)

CLAIM_REFUSED, CLAIMED, CLAIMED_CANCELLED = 0, 1, 2


@dataclass(frozen=True)
class Event:
    id: int
    event: str
    data: str  # JSON text

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS

    def payload(self) -> dict[str, Any]:
        return json.loads(self.data)


def encode(data: dict[str, Any]) -> str:
    # ensure_ascii keeps NUL, CR, LF, U+2028 and friends escaped inside the JSON string.
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"))


def error_data(code: str, detail: str, retry_after: int | None = None) -> dict[str, Any]:
    """The payload of a stream's terminal `error` event; every producer of one builds it here."""
    return {"error_code": code, "detail": detail, "retry_after": retry_after}


def parse_message(raw: str) -> Event:
    """Decode a pub/sub message published by `append` (or a claim notice, id 0)."""
    seq, event, data = raw.split("\n", 2)
    return Event(int(seq), event, data)


@dataclass(frozen=True)
class Probe:
    """A stream's meta with Redis's clock, read in one round trip."""

    meta: dict[str, str]
    now: float  # Redis's clock
    worker_alive: bool | None  # None: no worker was asked about

    def silent_for(self) -> float:
        """Seconds since the last event or the claim, on Redis's clock."""
        return max(0.0, self.now - float(self.meta.get("last_at", self.now)))


class Journal:
    """Both sides of a stream's Redis state: the producer's writes and the readers' reads."""

    def __init__(self, client: redis.Redis, prefix: str, retention_s: int, maxlen: int, orphan_grace_s: float):
        self.client = client
        self.prefix = prefix
        self.retention_s = retention_s
        self.maxlen = maxlen
        self.orphan_grace_s = orphan_grace_s
        self._append = registered(client, _APPEND)
        self._create = registered(client, _CREATE)
        self._claim = registered(client, _CLAIM)

    def _key(self, stream_id: str, part: str) -> str:
        return f"{self.prefix}stream:{{{stream_id}}}:{part}"

    def worker_key(self, worker_id: str) -> str:
        """A worker process's liveness key: it renews it while alive; `started` in meta names it."""
        return f"{self.prefix}worker:{worker_id}:alive"

    def channel(self, stream_id: str) -> str:
        return self._key(stream_id, "live")

    def create(self, stream_id: str, fields: dict[str, str], first_event: str, data: dict[str, Any]) -> str | None:
        """Create the stream with its first event; None when created, else the existing owner id."""
        return self.create_and_offer(stream_id, fields, first_event, data, None)[0]

    def create_and_offer(
        self, stream_id: str, fields: dict[str, str], first_event: str, data: dict[str, Any], offer: Offer | None
    ) -> tuple[str | None, bool]:
        """Create the stream with its first event and, once created, make `offer` (in one round trip).
        Returns the existing owner id (nothing created or offered), or None and whether it was offered."""
        flat: list[str] = []
        for name, value in fields.items():
            flat += [name, value]
        keys = [self._key(stream_id, "meta"), self._key(stream_id, "readers"), self._key(stream_id, "events")]
        grace = max(1, int(self.orphan_grace_s))
        job, cap, job_ttl = offer.args if offer is not None else ("", 0, 0)
        if offer is not None:
            keys += offer.keys
        args = [self.retention_s, grace, first_event, encode(data), self.maxlen, job, cap, job_ttl, *flat]
        result = self._create(keys=keys, args=args)
        if result == _CREATED_AND_OFFERED:
            return None, True
        return result or None, False

    def append(self, stream_id: str, event: str, data: dict[str, Any]) -> int:
        """Append and publish; the new id, or REJECTED_ENDED / REJECTED_CANCELLED."""
        keys = [self._key(stream_id, "meta"), self._key(stream_id, "events"), self._key(stream_id, "readers")]
        args = [event, encode(data), self.maxlen, self.retention_s, self.channel(stream_id)]
        return int(self._append(keys=keys, args=args))

    def claim(self, stream_id: str, worker: str) -> int:
        """CLAIMED for the first worker to take the open stream (CLAIMED_CANCELLED if
        it was cancelled while queued); CLAIM_REFUSED otherwise."""
        notice = encode({"worker": worker})
        args = [worker, self.channel(stream_id), CLAIMED_EVENT, notice]
        return int(self._claim(keys=[self._key(stream_id, "meta")], args=args))

    def meta(self, stream_id: str) -> dict[str, str]:
        return self.client.hgetall(self._key(stream_id, "meta"))

    def probe(self, stream_id: str, worker: str | None = None) -> Probe:
        """Meta and Redis's clock (and whether `worker` is alive), in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self._key(stream_id, "meta"))
        pipe.time()
        if worker is not None:
            pipe.exists(self.worker_key(worker))
        meta, (seconds, micros), *alive = pipe.execute()
        return Probe(meta, seconds + micros / 1_000_000, bool(alive[0]) if alive else None)

    def workers_alive(self, workers: list[str]) -> list[bool]:
        """Whether each worker process's liveness key exists, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for worker in workers:
            pipe.exists(self.worker_key(worker))
        return [bool(found) for found in pipe.execute()]

    def read_after(self, stream_id: str, after: int) -> list[Event]:
        """Journal events with id > after, in order."""
        return self._events(self.client.xrange(self._key(stream_id, "events"), min=f"(0-{after}", max="+"))

    def last_chunk_cost(self, stream_id: str) -> float | None:
        """The cost so far: the `cost_usd` of the newest chunk (None before the first one)."""
        rows = self.client.xrevrange(self._key(stream_id, "events"), max="+", min="-", count=3)
        for event in self._events(rows):
            if event.event == "message_chunk":
                return float(event.payload().get("cost_usd") or 0.0)
        return None

    @staticmethod
    def _events(rows: list) -> list[Event]:
        return [Event(int(row_id.split("-", 1)[1]), fields["e"], fields["d"]) for row_id, fields in rows]

    def attach(self, stream_id: str, after: int) -> tuple[list[Event], dict[str, str]]:
        """A reader arrives: mark it live, read what it missed and the meta, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._key(stream_id, "readers"), "1", ex=max(1, int(self.orphan_grace_s)))
        pipe.xrange(self._key(stream_id, "events"), min=f"(0-{after}", max="+")
        pipe.hgetall(self._key(stream_id, "meta"))
        _, rows, meta = pipe.execute()
        return self._events(rows), meta

    def touch_readers(self, stream_ids: list[str]) -> None:
        """Live readers exist for these streams: keep them from being cancelled as orphaned."""
        pipe = self.client.pipeline(transaction=False)
        for stream_id in stream_ids:
            pipe.set(self._key(stream_id, "readers"), "1", ex=max(1, int(self.orphan_grace_s)))
        pipe.execute()

    def should_stop_many(self, stream_ids: list[str]) -> list[bool]:
        """should_stop for many streams in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for stream_id in stream_ids:
            pipe.hexists(self._key(stream_id, "meta"), "cancel")
            pipe.exists(self._key(stream_id, "readers"))
        flags = pipe.execute()
        return [bool(cancel) or not readers for cancel, readers in zip(flags[::2], flags[1::2], strict=True)]

    def request_cancel(self, stream_id: str) -> None:
        self.client.hset(self._key(stream_id, "meta"), "cancel", "1")

    def discard(self, stream_id: str) -> None:
        """Forget a stream that never started (its creation failed half-way)."""
        self.client.delete(*(self._key(stream_id, part) for part in ("meta", "events", "readers")))
