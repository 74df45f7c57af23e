"""Admission of a new stream: its limits, quotas and budget reservation in ONE Redis round trip.

Why a script of our own rather than more flask-limiter limits: flask-limiter
spends one round trip per limit (a Lua call each) plus one more per limit to
read the window for the headers, and it cannot make several limits and a
budget reservation one atomic decision. A new stream by an anonymous
principal has five limits (stream_user, stream_ip, anon_hourly,
anon_lifetime, anon_ip_hourly) and up to three budgets; with flask-limiter
that is 6 to 11 round trips, and a request refused by the budget would still
have used up its rate limits. `_admit.lua` checks all of them and reserves
the budget, or changes nothing, in one call. With flask-limiter's global_ip
(before the view) and the auth_failures preflight (app/auth), a new stream
costs 3 round trips before it is created.

The windows are moving windows, the same algorithm and list layout as
flask-limiter's "moving-window" strategy (see app/limits/__init__.py for why),
timed by the Redis server's clock, so API processes on different hosts agree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app, g

from .. import extensions
from ..catalog import ModelSpec
from ..errors import APIError, too_many
from ..principal import Principal
from ..redis_store import registered
from . import _flask, budget
from ._rules import BUDGET_EXCEEDED, Rule, client_ip, rule

log = logging.getLogger("relay.limits")

_SCRIPT = (Path(__file__).parent / "_admit.lua").read_text()
PURGE_BATCH = 50
_MESSAGES = {
    "stream_user": "Too many new streams for this credential; slow down.",
    "stream_ip": "Too many new streams from this address; slow down.",
    "anon_hourly": "This anonymous session's hourly quota is used up.",
    "anon_lifetime": "This anonymous session's quota is used up; start a new session or sign in.",
    "anon_ip_hourly": "The hourly quota of anonymous streams from this address is used up.",
    "global_ip": "Too many requests from this address; slow down.",
}


class StreamIdInUse(Exception):
    """Another admission holds a reservation under this stream id: nothing was counted or reserved.

    Whether the caller may attach is for the stream's journal and its owner to say."""


@dataclass(frozen=True)
class Admission:
    """An admitted stream; `reserved` is True when this admission holds the stream's reservation."""

    stream_id: str
    reserved: bool
    reserved_usd: float

    def release(self) -> None:
        """Give back what this admission itself reserved (the stream was not created after all)."""
        if self.reserved:
            budget.settle(self.stream_id, 0.0)


def _stream_rules(config: Mapping[str, Any], principal: Principal, ip: str) -> list[tuple[Rule, str]]:
    """Every enabled limit on a new stream by `principal` from `ip`, with its Redis key."""
    rows = [(rule("stream_user", config), principal.id), (rule("stream_ip", config), ip)]
    if principal.is_anonymous:
        rows += [
            (rule("anon_hourly", config), principal.id),
            (rule("anon_lifetime", config), principal.id),
            (rule("anon_ip_hourly", config), ip),
        ]
    store = extensions.redis_store
    return [(limit, store.key("limits", limit.name, subject)) for limit, subject in rows if limit.enabled]


def admit_stream(
    principal: Principal,
    spec: ModelSpec,
    stream_id: str,
    messages: Sequence[Mapping[str, str]],
    max_tokens: int,
    cost_cap_usd: float,
) -> Admission:
    """Count a new stream against its limits and reserve its worst-case cost, or 429.

    Raises StreamIdInUse, counting nothing, when a reservation under `stream_id` exists."""
    config = current_app.config
    rules = _stream_rules(config, principal, client_ip())
    peeks = _flask.global_windows()  # flask-limiter's global_ip, already counted: read for the headers
    budgets = budget.ceilings(config, principal.tenant_id, principal.is_anonymous)
    reserved_usd = budget.reservation_usd(spec, messages, max_tokens, cost_cap_usd)
    if not rules and not any(ceiling for _, _, ceiling in budgets):
        return Admission(stream_id, False, reserved_usd)  # every limit and budget is off: nothing to count
    lifetime_ttl = config["ANON_TOKEN_MAX_TTL"] + config["JWT_LEEWAY_SECONDS"]
    hold = config["BUDGET_RESERVATION_SECONDS"]
    keys = [budget.reservations_key(), budget.reservation_key(stream_id)]
    keys += [key for _, key in rules] + [window.key for window in peeks] + [key for _, key, _ in budgets]
    args: list[Any] = [len(rules) + len(peeks), len(budgets), budget.to_micro(reserved_usd), hold]
    args += [hold + 86400, lifetime_ttl, PURGE_BATCH, stream_id, budget.reservation_key("")]
    for limit, _ in rules:
        args += [limit.count, limit.seconds, "hit"]
    for window in peeks:
        args += [window.count, window.seconds, "peek"]
    args += [ceiling for _, _, ceiling in budgets]

    outcome, *rest = registered(extensions.redis_store.client, _SCRIPT)(keys=keys, args=args)
    names = [limit.name for limit, _ in rules] + [window.name for window in peeks]
    counts = [limit.count for limit, _ in rules] + [window.count for window in peeks]
    if outcome == "in_use":
        raise StreamIdInUse(stream_id)
    if outcome == "ok":
        index, remaining, reset = (int(value) for value in rest)
        if index:
            g.relay_rate_limit = (counts[index - 1], remaining, reset)
        return Admission(stream_id, True, reserved_usd)
    if outcome == "limit":
        index, retry_after, reset = (int(value) for value in rest)
        name = names[index - 1]
        error = too_many(Rule(name, 0, 0).code, name, retry_after, _MESSAGES.get(name, "Too many requests."))
        _flask.refused(error, counts[index - 1], reset)
        raise error
    index, retry_after = (int(value) for value in rest)
    raise _budget_refusal(budgets[index - 1][0], retry_after)


def _budget_refusal(name: str, retry_after: int) -> APIError:
    error = too_many(BUDGET_EXCEEDED, name, retry_after, "Today's spend budget is used up; it resets at midnight UTC.")
    _flask.refused(error)
    return error
