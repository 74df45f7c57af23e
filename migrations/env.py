"""Alembic environment: Relay's engine and metadata, online migrations only."""

from __future__ import annotations

from alembic import context
from flask import current_app

from app.db import Base
from app.extensions import database
from app.startup import refusing

config = context.config


def run_migrations_online() -> None:
    with refusing(current_app.config):  # a database that does not answer: one line, status 2
        connection = database.engine.connect()
    with connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Relay runs migrations online only: flask db upgrade")
run_migrations_online()
