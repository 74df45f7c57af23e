"""Shared, unbound instances; `create_app()` binds them. Importing opens nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import request
from flask_cors import CORS
from flask_migrate import Migrate
from flask_talisman import Talisman

from .client_ip import client_ip
from .db import Database
from .redis_store import RedisStore

if TYPE_CHECKING:
    from flask_limiter import Limiter

    limiter: Limiter

database = Database()
redis_store = RedisStore()
migrate = Migrate()
cors = CORS()
talisman = Talisman()


def _client_ip() -> str:
    return client_ip() if request else "unknown"


def __getattr__(name: str) -> Any:
    """`limiter`, built on first use (PEP 562): workers import this module for the database and
    Redis and must never load flask-limiter. Configured per app by app.limits.init_app."""
    if name != "limiter":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from flask_limiter import Limiter

    global limiter
    limiter = Limiter(key_func=_client_ip)
    return limiter
