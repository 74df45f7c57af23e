"""Database access: the engine holder and the queries that enforce ownership."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .models import ApiKey, AuditEvent, Base, Conversation, Message, Stream, Tenant, User

__all__ = ["ApiKey", "AuditEvent", "Base", "Conversation", "Database", "Message", "Stream", "Tenant", "User"]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers run beside the one writer; busy_timeout waits instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, no fsync per commit
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """Holds one engine and session factory per process; bound by `init()`."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self.url: str | None = None

    def init(self, url: str, pool_size: int = 10) -> None:
        """Create the engine for `url` unless this process already has it."""
        if self.engine is not None and self.url == url:
            return
        if self.engine is not None:
            self.engine.dispose()
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=5)
        self.engine, self.url = engine, url
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on any error."""
        if self._sessions is None:
            raise RuntimeError("Database.init() was not called")
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close pooled connections (after fork, at shutdown)."""
        if self.engine is not None:
            self.engine.dispose()
