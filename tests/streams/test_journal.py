"""The journal's atomic rules, against the real Redis."""

from __future__ import annotations

import secrets

import pytest

from app.streams.journal import REJECTED_CANCELLED, REJECTED_ENDED, Journal


@pytest.fixture
def journal(redis_client, key_prefix) -> Journal:
    return Journal(redis_client, key_prefix + "journal:", retention_s=60, maxlen=1000, orphan_grace_s=5)


@pytest.fixture
def stream_id(journal) -> str:
    stream_id = secrets.token_urlsafe(12)
    assert journal.create(stream_id, {"owner": "anon:a", "model": "m"}, "stream", {"stream_id": stream_id}) is None
    return stream_id


def test_ids_are_sequential_and_replay_is_exact(journal, stream_id):
    ids = [journal.append(stream_id, "message_chunk", {"content": str(i), "index": i}) for i in range(5)]
    assert ids == [2, 3, 4, 5, 6]
    after_three = journal.read_after(stream_id, 3)
    assert [e.id for e in after_three] == [4, 5, 6]
    assert [e.payload()["content"] for e in after_three] == ["2", "3", "4"]
    assert journal.read_after(stream_id, 0)[0].event == "stream"


def test_create_is_idempotent_and_names_the_owner(journal, stream_id):
    assert journal.create(stream_id, {"owner": "anon:b", "model": "m"}, "stream", {}) == "anon:a"
    assert journal.meta(stream_id)["owner"] == "anon:a"
    assert [e.id for e in journal.read_after(stream_id, 0)] == [1]


def test_nothing_follows_a_terminal_event(journal, stream_id):
    journal.append(stream_id, "done", {"finish_reason": "stop"})
    assert journal.append(stream_id, "message_chunk", {"content": "late"}) == REJECTED_ENDED
    assert journal.append(stream_id, "error", {"error_code": "stalled"}) == REJECTED_ENDED
    assert [e.event for e in journal.read_after(stream_id, 0)] == ["stream", "done"]


def test_cancel_refuses_chunks_but_not_the_final_event(journal, stream_id):
    journal.request_cancel(stream_id)
    assert journal.should_stop_many([stream_id])[0]
    assert journal.append(stream_id, "message_chunk", {"content": "x"}) == REJECTED_CANCELLED
    assert journal.append(stream_id, "done", {"finish_reason": "cancelled"}) == 2


def test_a_stream_without_readers_refuses_chunks(journal, stream_id, redis_client):
    redis_client.delete(journal._key(stream_id, "readers"))
    assert journal.should_stop_many([stream_id])[0]
    assert journal.append(stream_id, "message_chunk", {"content": "x"}) == REJECTED_CANCELLED
    journal.touch_readers([stream_id])
    assert not journal.should_stop_many([stream_id])[0]
    assert journal.append(stream_id, "message_chunk", {"content": "x"}) == 2


def test_claim_once(journal, stream_id):
    assert journal.claim(stream_id, "worker-1") == 1
    assert journal.claim(stream_id, "worker-2") == 0


def test_claim_refused_after_the_stream_ended(journal, stream_id):
    journal.append(stream_id, "error", {"error_code": "no_worker"})
    assert journal.claim(stream_id, "late-worker") == 0


def test_unknown_stream_accepts_nothing(journal):
    assert journal.append("never-created", "message_chunk", {"content": "x"}) == REJECTED_ENDED
    assert journal.claim("never-created", "w") == 0
    assert journal.meta("never-created") == {}


def test_keys_expire_with_the_retention(journal, stream_id, redis_client):
    for part in ("meta", "events"):
        ttl = redis_client.ttl(journal._key(stream_id, part))
        assert 0 < ttl <= 60
