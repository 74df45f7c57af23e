"""Shared, unbound instances; `create_app()` binds them. Importing opens nothing."""

from __future__ import annotations

from flask import request
from flask_cors import CORS
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_talisman import Talisman

from .client_ip import client_ip
from .db import Database
from .redis_store import RedisStore

database = Database()
redis_store = RedisStore()
migrate = Migrate()
cors = CORS()
talisman = Talisman()


def _client_ip() -> str:
    return client_ip() if request else "unknown"


# Configured per app by app.limits.init_app (Redis storage, moving window, global_ip).
limiter = Limiter(key_func=_client_ip)
