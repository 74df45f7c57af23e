"""The Alembic migrations are the schema: one head, they apply on SQLite and
PostgreSQL, and they match the SQLAlchemy models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from app.db import Base
from app.extensions import database
from tests.support import ROOT

MIGRATIONS = str(ROOT / "migrations")


def test_single_head():
    from alembic.config import Config

    config = Config(str(ROOT / "migrations" / "alembic.ini"))
    config.set_main_option("script_location", MIGRATIONS)
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrations.db'}"
    return request.getfixturevalue("postgres_url")


def test_migrations_apply_and_match_the_models(make_app, database_url):
    app = make_app(DATABASE_URL=database_url)  # make_app upgrades to head
    with app.app_context():
        with database.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
            tables = set(inspect(connection).get_table_names())
        assert differences == [], differences
        assert {"tenants", "users", "conversations", "messages", "streams"} <= tables
        downgrade(directory=MIGRATIONS, revision="base")
        with database.engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        upgrade(directory=MIGRATIONS)
