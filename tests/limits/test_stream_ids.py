"""A client-chosen stream_id can never buy a stream outside the limits and budgets.

Attaching is decided by the live journal and its owner; a reservation record
left behind by a dead stream is no licence to start or attach; an id that was
ever used never starts a new stream, even after its conversation is deleted.
"""

from __future__ import annotations

import pytest
import redis

from app.db import Stream, queries
from app.extensions import database
from app.limits import budget
from app.streams import StreamRuntime
from tests.limits.conftest import anon_token, auth, post_stream
from tests.support import wait_until

OPENAI = {"OPENAI_API_KEY": "sk-test-not-a-real-key", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}


def runtime(app) -> StreamRuntime:
    return app.extensions["relay.streams"]


def spent(app) -> float:
    with app.app_context():
        return budget.spent_today_usd("global")


def stream_limit_hits(app, redis_client: redis.Redis) -> int:
    """Entries of every stream_user window under this app's prefix (one per admitted stream)."""
    prefix = app.config["REDIS_KEY_PREFIX"]
    return sum(redis_client.llen(key) for key in redis_client.scan_iter(match=f"{prefix}limits:stream_user:*"))


def expire_journal(app, stream_id: str) -> None:
    """What STREAM_RETENTION_SECONDS does to a stream's journal, now."""
    journal = runtime(app).journal
    journal.client.delete(*(journal._key(stream_id, part) for part in ("meta", "events", "readers")))


def stream_row(app, stream_id: str):
    with app.app_context(), database.session() as session:
        return queries.get_stream(session, stream_id)


def row_written(app, stream_id: str) -> bool:
    return stream_row(app, stream_id) is not None


def delete_row(app, stream_id: str) -> None:
    with app.app_context(), database.session() as session:
        session.query(Stream).filter_by(id=stream_id).delete()


@pytest.mark.parametrize("same_principal", [True, False])
def test_a_reservation_left_behind_is_no_licence(limits_app, redis_client, same_principal):
    """The stream died unsettled (no_worker, a crash): its reservation record remains. Neither
    its owner nor anyone else may use that id to skip the limits or the reservation: 409."""
    app = limits_app(**OPENAI)
    client = app.test_client()
    token = anon_token(app)
    stream_id = "left-behind-0001"
    assert post_stream(client, token, model="gpt-4o", cost_cap_usd=0.02, stream_id=stream_id).status_code == 200
    wait_until(lambda: row_written(app, stream_id), 10, "the stream's row")
    # The journal expired and no row refuses the id: only the unsettled reservation record is left.
    expire_journal(app, stream_id)
    delete_row(app, stream_id)
    assert redis_client.exists(app.config["REDIS_KEY_PREFIX"] + f"budget:res:{stream_id}")
    spent_before, hits_before = spent(app), stream_limit_hits(app, redis_client)

    again = post_stream(client, token if same_principal else anon_token(app), model="gpt-4o", stream_id=stream_id)
    assert again.status_code == 409, again.get_data(as_text=True)
    assert again.get_json()["error"]["code"] == "stream_id_in_use"
    assert runtime(app).journal.meta(stream_id) == {}  # no stream was started
    assert spent(app) == pytest.approx(spent_before) and stream_limit_hits(app, redis_client) == hits_before


def test_an_id_stays_refused_after_its_conversation_is_deleted(limits_app):
    app = limits_app(**OPENAI)
    client = app.test_client()
    token = anon_token(app)
    stream_id = "deleted-conv-0001"
    assert post_stream(client, token, model="gpt-4o", stream_id=stream_id).status_code == 200
    wait_until(lambda: row_written(app, stream_id), 10, "the stream's row")
    conversation_id = stream_row(app, stream_id).conversation_id
    assert client.delete(f"/api/v1/conversations/{conversation_id}", headers=auth(token)).status_code == 204
    expire_journal(app, stream_id)
    for who in (token, anon_token(app)):
        again = post_stream(client, who, model="gpt-4o", stream_id=stream_id)
        assert again.status_code == 409 and again.get_json()["error"]["code"] == "stream_id_in_use"
    assert runtime(app).journal.meta(stream_id) == {}


def test_the_owner_attaches_to_a_retained_stream_without_a_second_charge(limits_app, redis_client):
    app = limits_app(**OPENAI)
    client = app.test_client()
    token = anon_token(app)
    stream_id = "retained-0001"
    assert post_stream(client, token, model="gpt-4o", cost_cap_usd=0.02, stream_id=stream_id).status_code == 200
    runtime(app).journal.append(stream_id, "error", {"error_code": "no_worker", "detail": "x", "retry_after": 5})
    hits = stream_limit_hits(app, redis_client)
    replay = client.post(
        "/api/v1/stream", json={"message": "hello", "model": "gpt-4o", "stream_id": stream_id}, headers=auth(token)
    )
    body = replay.get_data(as_text=True)
    assert replay.status_code == 200 and "event: stream" in body and "no_worker" in body
    assert spent(app) == pytest.approx(0.02) and stream_limit_hits(app, redis_client) == hits
