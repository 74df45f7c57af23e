"""The row writer's failure path: a batch that fails is retried row by row, and every stream
whose rows cannot be written ends with an error event (its job is stopped) instead of hanging."""

from __future__ import annotations

import secrets

from sqlalchemy import text

from app.db import queries
from app.extensions import database
from app.principal import ANONYMOUS_SCOPES, Principal
from app.streams.rows import PendingRows
from tests.support import wait_until

ALICE = Principal("anon:alice-rows", "anonymous", "alice-rows", None, ANONYMOUS_SCOPES)


def pending(runtime, stream_id: str) -> PendingRows:
    """A stream as start_stream leaves it: its journal exists, its rows are still to be written."""
    conversation_id = secrets.token_hex(16)
    runtime.journal.create(stream_id, {"owner": ALICE.id, "model": "local-smollm2"}, "stream", {})
    rows = {
        "conversation_id": conversation_id,
        "new_conversation": True,
        "message": "hello",
        "stream_id": stream_id,
        "model": "local-smollm2",
    }
    return PendingRows(ALICE, rows)


def events(runtime, stream_id: str) -> list[tuple[str, dict]]:
    return [(e.event, e.payload()) for e in runtime.journal.read_after(stream_id, 0)]


def test_a_failing_batch_falls_back_row_by_row(app):
    runtime = app.extensions["relay.streams"]
    good, bad = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    batch = [pending(runtime, good), pending(runtime, bad)]
    with app.app_context():
        runtime.rows.write([pending(runtime, bad)])  # the bad stream's id is already taken in the database
        runtime.rows.write(batch)
        with database.session() as session:
            assert queries.get_stream(session, good) is not None
    assert [name for name, _ in events(runtime, good)] == ["stream"]  # the good stream goes on
    ended = events(runtime, bad)
    assert ended[-1][0] == "error" and ended[-1][1]["error_code"] == "internal"
    assert runtime.journal.meta(bad).get("cancel") == "1"  # its job is stopped


def test_when_the_database_refuses_every_row_each_stream_ends_with_an_error(app):
    runtime = app.extensions["relay.streams"]
    with app.app_context(), database.engine.begin() as connection:
        connection.execute(text("DROP TABLE messages"))
    ids = [secrets.token_urlsafe(12) for _ in range(3)]
    for stream_id in ids:
        item = pending(runtime, stream_id)
        runtime.rows.submit(item.principal, item.rows)
    for stream_id in ids:
        wait_until(lambda sid=stream_id: "ended" in runtime.journal.meta(sid), 10, "the stream to end")
        assert events(runtime, stream_id)[-1][0] == "error"
