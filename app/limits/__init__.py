"""Limits, quotas and budgets that hold under concurrency (docs/api.md, "Limits").

Strategy: moving window, for every windowed limit. A fixed window admits up to
twice its count across a window boundary (N at 0:59, N more at 1:00), and
flask-limiter's sliding-window counter is an approximation that weights the
previous window's count, so it too can admit more than N in some window.
The moving window keeps a timestamp per admitted request (at most N, in a
Redis list) and admits only while fewer than N fall inside the last window:
never more than N in ANY window, at O(N) memory per key, which is small for
our counts. Every check-and-count is one Lua script, atomic in Redis, so
concurrent requests in many processes can never both take the last slot.

Who does what:
  - flask-limiter (`_flask`): global_ip on every endpoint but /health* and
    /metrics, and per-endpoint limits through `limit()` (anon_mint per IP;
    ai_plan, ai_execute, actions_execute per tenant via `tenant_key`;
    webhooks_in per IP).
  - `admission.admit_stream`: a new stream's stream_user, stream_ip and
    anonymous quotas plus the budget reservation, in one script (see there why).
  - `budget.settle`: the worker settles a reservation to the real cost.
  - auth_failures lives in app/auth (it must run before a token is parsed).
Workers import this package for `settle` only: what needs flask-limiter loads on first use.
Client IP: `app.client_ip.client_ip()`, the limit key of `request.remote_addr`
(rewritten by ProxyFix only when TRUSTED_PROXY_COUNT is set; a client's own
X-Forwarded-For never moves a key); an IPv6 client counts as its /64.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flask import Flask

from ._rules import BUDGET_EXCEEDED, QUOTA_EXCEEDED, RATE_LIMITED, client_ip
from .budget import settle

if TYPE_CHECKING:
    from ._flask import limit, tenant_key
    from .admission import Admission, admit_stream

__all__ = [
    "BUDGET_EXCEEDED",
    "QUOTA_EXCEEDED",
    "RATE_LIMITED",
    "Admission",
    "admit_stream",
    "client_ip",
    "init_app",
    "limit",
    "settle",
    "tenant_key",
]

# Loaded on first use (PEP 562): workers import this package for `settle` and must never load
# flask-limiter, which `_flask` (and `admission`, through it) need.
_LAZY = {"limit": "._flask", "tenant_key": "._flask", "Admission": ".admission", "admit_stream": ".admission"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def init_app(app: Flask) -> None:
    """Bind the limiter; call after the request-id hook so a refusal carries the request id."""
    from ..extensions import limiter
    from ._flask import init_app as bind

    bind(app, limiter)
