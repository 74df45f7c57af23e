"""The limits table of docs/api.md: names, the 429 code each answers with, and their settings.

Each limit is the setting `LIMIT_<NAME>`, parsed by app.config into
`(count, seconds)`: seconds 0 is a lifetime total, count 0 turns it off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app

from ..client_ip import client_ip as client_ip  # the limit key of per-IP limits; admission imports it here

RATE_LIMITED = "rate_limited"
QUOTA_EXCEEDED = "quota_exceeded"
BUDGET_EXCEEDED = "budget_exceeded"

# Anonymous quotas answer quota_exceeded; every other limit is a rate (rate_limited).
_QUOTAS = frozenset({"anon_hourly", "anon_lifetime", "anon_ip_hourly", "anon_mint"})

# A lifetime total handed to flask-limiter (which has no such thing) becomes a very long window.
_LIFETIME_SECONDS = 10 * 365 * 86400


@dataclass(frozen=True)
class Rule:
    name: str  # the docs/api.md name, e.g. "stream_user"; details.limit of a 429
    count: int
    seconds: int  # 0: a lifetime total

    @property
    def code(self) -> str:
        return code_for(self.name)

    @property
    def enabled(self) -> bool:
        return self.count > 0


def code_for(name: str) -> str:
    """The 429 code of a limit."""
    return QUOTA_EXCEEDED if name in _QUOTAS else RATE_LIMITED


def rule(name: str, config: Mapping[str, Any] | None = None) -> Rule:
    """The limit `name` as the app's settings define it."""
    count, seconds = (config if config is not None else current_app.config)[f"LIMIT_{name.upper()}"]
    return Rule(name, int(count), int(seconds))


def limit_string(name: str) -> str:
    """flask-limiter's spelling of a limit from the current app's settings ('' when off)."""
    current = rule(name)
    if not current.enabled:
        return ""
    return f"{current.count} per {current.seconds or _LIFETIME_SECONDS} second"
