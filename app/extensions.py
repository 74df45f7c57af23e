"""Shared, unbound instances; `create_app()` binds them. Importing opens nothing."""

from __future__ import annotations

from flask_cors import CORS
from flask_migrate import Migrate
from flask_talisman import Talisman

from .db import Database
from .redis_store import RedisStore

database = Database()
redis_store = RedisStore()
migrate = Migrate()
cors = CORS()
talisman = Talisman()
