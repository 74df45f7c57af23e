"""Deleting a conversation keeps its streams' usage, spend and id tombstones, on both databases."""

from __future__ import annotations

import secrets

import pytest

from app.auth import authenticate
from app.db import Stream, queries
from app.extensions import database


@pytest.fixture
def app(make_app, db_url):
    return make_app(DATABASE_URL=db_url)


def principal_of(app, headers):
    with app.test_request_context(headers=headers):
        return authenticate()


def finished_stream(principal, conversation_id: str, new: bool, cost: float, tokens: tuple[int, int]) -> str:
    """A stream as the API and the worker record it (rows, then the finish)."""
    stream_id = secrets.token_urlsafe(12)
    with database.session() as session:
        queries.record_user_turn(
            session,
            principal,
            conversation_id=conversation_id,
            new_conversation=new,
            message="hello",
            stream_id=stream_id,
            model="gpt-4o-mini",
        )
    with database.session() as session:
        queries.finish_stream(
            session,
            stream_id,
            content="hi",
            model="gpt-4o-mini",
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
            cost_usd=cost,
            finish_reason="stop",
        )
    return stream_id


def test_deleting_a_conversation_keeps_usage_spend_and_used_ids(app, client, user_a_headers):
    me = principal_of(app, user_a_headers)
    conversation_id = secrets.token_hex(16)
    ids = [finished_stream(me, conversation_id, n == 0, 0.004, (11, 7)) for n in range(2)]
    kept = finished_stream(me, secrets.token_hex(16), True, 0.001, (3, 2))
    usage_before = client.get("/api/v1/usage", headers=user_a_headers).get_json()
    admin_before = client.get("/admin/usage", headers=user_a_headers).get_json()
    assert usage_before["lifetime_requests"] == 3 and usage_before["spend_today_usd"] == pytest.approx(0.009)
    assert admin_before["usage"][0]["prompt_tokens"] == 25

    assert client.delete(f"/api/v1/conversations/{conversation_id}", headers=user_a_headers).status_code == 204
    assert client.get(f"/api/v1/conversations/{conversation_id}", headers=user_a_headers).status_code == 404

    assert client.get("/api/v1/usage", headers=user_a_headers).get_json() == usage_before
    assert client.get("/admin/usage", headers=user_a_headers).get_json() == admin_before
    with database.session() as session:
        rows = {row.id: row for row in session.query(Stream).filter(Stream.id.in_([*ids, kept]))}
    assert set(rows) == {*ids, kept}  # the tombstones of the used ids
    assert [rows[i].conversation_id for i in ids] == [None, None] and rows[kept].conversation_id is not None


def test_a_stream_finishing_after_its_conversation_was_deleted_still_records_its_usage(app, user_a_headers):
    me = principal_of(app, user_a_headers)
    conversation_id = secrets.token_hex(16)
    stream_id = secrets.token_urlsafe(12)
    with database.session() as session:
        queries.record_user_turn(
            session,
            me,
            conversation_id=conversation_id,
            new_conversation=True,
            message="hello",
            stream_id=stream_id,
            model="gpt-4o-mini",
        )
    with database.session() as session:
        session.delete(queries.get_owned_conversation(session, me, conversation_id))
    with database.session() as session:
        message_id = queries.finish_stream(
            session,
            stream_id,
            content="late reply",
            model="gpt-4o-mini",
            prompt_tokens=5,
            completion_tokens=2,
            cost_usd=0.0002,
            finish_reason="stop",
        )
    assert message_id is None  # no conversation to hold the reply
    with database.session() as session:
        row = queries.get_stream(session, stream_id)
        assert (row.status, row.cost_usd, row.prompt_tokens, row.completion_tokens) == ("finished", 0.0002, 5, 2)
