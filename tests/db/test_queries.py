"""Ownership lives in the queries, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from app.db import queries
from app.errors import APIError
from app.extensions import database
from app.principal import ANONYMOUS_SCOPES, Principal

ALICE = Principal(id="anon:anon_alice", kind="anonymous", subject="anon_alice", tenant_id=None, scopes=ANONYMOUS_SCOPES)
BOB = Principal(id="anon:anon_bob", kind="anonymous", subject="anon_bob", tenant_id=None, scopes=ANONYMOUS_SCOPES)


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request, make_app, tmp_path):
    if request.param == "sqlite":
        return make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'queries.db'}")
    return make_app(DATABASE_URL=request.getfixturevalue("postgres_url"))


def start(principal: Principal, conversation_id: str, stream_id: str, new: bool = True, text: str = "hello") -> None:
    with database.session() as session:
        queries.record_user_turn(
            session,
            principal,
            conversation_id=conversation_id,
            new_conversation=new,
            message=text,
            stream_id=stream_id,
            model="local-smollm2",
        )


def test_owner_reads_and_others_get_403_or_404(app):
    start(ALICE, "conv-alice", "stream-alice-1")
    start(ALICE, "conv-alice", "stream-alice-2", new=False, text="again")
    start(BOB, "conv-bob", "stream-bob-1")
    with database.session() as session:
        mine = queries.get_owned_conversation(session, ALICE, "conv-alice")
        assert [m.content for m in mine.messages] == ["hello", "again"]
        assert [m.seq for m in mine.messages] == [1, 2]
        with pytest.raises(APIError) as denied:
            queries.get_owned_conversation(session, BOB, "conv-alice")
        assert denied.value.code == 403 and denied.value.error_code == "forbidden"
        with pytest.raises(APIError) as missing:
            queries.get_owned_conversation(session, BOB, "conv-nobody")
        assert missing.value.code == 404
        with pytest.raises(APIError) as stream_denied:
            queries.get_owned_stream(session, BOB, "stream-alice-1")
        assert stream_denied.value.code == 403
        assert [row["id"] for row in queries.list_conversations(session, ALICE)] == ["conv-alice"]
        assert [row["message_count"] for row in queries.list_conversations(session, ALICE)] == [2]
        assert [row["id"] for row in queries.list_conversations(session, BOB)] == ["conv-bob"]


def test_finish_stream_records_the_reply_after_the_users_turn(app):
    start(ALICE, "conv-finish", "stream-finish")
    with database.session() as session:
        message_id = queries.finish_stream(
            session,
            "stream-finish",
            content="hi there",
            model="local-smollm2",
            prompt_tokens=5,
            completion_tokens=2,
            cost_usd=0.0,
            finish_reason="stop",
        )
    with database.session() as session:
        conversation = queries.get_owned_conversation(session, ALICE, "conv-finish")
        detail = queries.conversation_detail(conversation)
        stream = queries.get_owned_stream(session, ALICE, "stream-finish")
    assert [(m["role"], m["content"]) for m in detail["messages"]] == [("user", "hello"), ("assistant", "hi there")]
    assert detail["messages"][1]["id"] == message_id
    assert detail["messages"][1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "cost_usd": 0.0}
    assert stream.status == "finished" and stream.finish_reason == "stop" and stream.message_id == message_id


def test_finish_stream_without_a_row_is_a_lookup_error_and_writes_nothing(app):
    """The worker can finish before the API wrote the rows: it retries on LookupError."""
    start(ALICE, "conv-early", "stream-other")
    reply = {"content": "early", "model": "local-smollm2", "prompt_tokens": 1, "completion_tokens": 1}
    with pytest.raises(LookupError), database.session() as session:
        queries.finish_stream(session, "stream-not-yet", cost_usd=0.0, finish_reason="stop", **reply)
    with database.session() as session:
        detail = queries.conversation_detail(queries.get_owned_conversation(session, ALICE, "conv-early"))
    assert [m["content"] for m in detail["messages"]] == ["hello"]
