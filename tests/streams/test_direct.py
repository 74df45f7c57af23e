"""The direct lane's rules, against the real Redis: an offer is written only while a worker
listens, a listener's mark expires on Redis's clock, jobs come out first in first out, and the
list is capped."""

from __future__ import annotations

import secrets
import threading

import pytest

from app.streams import direct
from app.streams.direct import DirectLane


@pytest.fixture
def lane(redis_client, key_prefix) -> DirectLane:
    return DirectLane(redis_client, f"{key_prefix}lane-{secrets.token_hex(4)}:", "generate")  # each test its own


def job(number: int) -> dict:
    return {"stream_id": f"s{number}", "model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_nobody_listening_means_no_offer(lane):
    assert lane.offer(job(1)) is False
    assert lane.client.exists(lane.jobs_key) == 0


def test_a_listener_takes_offers_in_order(lane):
    assert lane.take("worker-a", 1) is None  # listening from here on (the wait ended empty)
    assert lane.offer(job(1)) is True
    assert lane.offer(job(2)) is True
    assert lane.take("worker-a", 1) == job(1)
    assert lane.take("worker-a", 1) == job(2)
    assert lane.client.ttl(lane.jobs_key) <= direct.JOBS_TTL_S


def test_a_waiting_listener_gets_the_offer(lane):
    assert lane.take("worker-a", 1) is None
    taken: list = []
    waiter = threading.Thread(target=lambda: taken.append(lane.take("worker-a", 5)))
    waiter.start()
    assert lane.offer(job(7)) is True
    waiter.join(5)
    assert taken == [job(7)]


def test_a_listener_that_left_or_went_quiet_gets_no_offers(lane):
    lane.take("worker-a", 1)
    lane.leave("worker-a")
    assert lane.offer(job(1)) is False
    # A mark whose time passed (a worker that died listening) is swept by the next offer.
    lane.client.zadd(lane.listeners_key, {"worker-b": 1})
    assert lane.offer(job(1)) is False
    assert lane.client.zcard(lane.listeners_key) == 0


def test_the_lane_is_capped(lane, monkeypatch):
    monkeypatch.setattr(direct, "JOBS_CAP", 3)
    lane.take("worker-a", 1)
    for number in range(5):
        assert lane.offer(job(number)) is True
    # The newest offers stay; the older ones were dropped (the web's grace sends them through Celery).
    assert [lane.take("worker-a", 1)["stream_id"] for _ in range(3)] == ["s2", "s3", "s4"]


def test_something_not_a_job_on_the_lane_is_skipped(lane):
    lane.take("worker-a", 1)
    lane.client.lpush(lane.jobs_key, "[1, 2]", "not json")
    assert lane.take("worker-a", 1) is None
    assert lane.take("worker-a", 1) is None


# -- the offer made by the journal's create, in the round trip that creates the stream -------------
@pytest.fixture
def journal(redis_client, key_prefix):
    from app.streams.journal import Journal

    return Journal(redis_client, key_prefix + "journal:", retention_s=60, maxlen=1000, orphan_grace_s=5)


@pytest.fixture
def stream_id() -> str:
    return secrets.token_urlsafe(12)


def test_creating_a_stream_offers_its_job_when_a_worker_listens(journal, lane, stream_id):
    lane.take("worker-a", 1)
    owner, offered = journal.create_and_offer(stream_id, {"owner": "anon:a"}, "stream", {}, lane.offer_of(job(1)))
    assert (owner, offered) == (None, True)
    assert journal.meta(stream_id)["owner"] == "anon:a"
    assert lane.take("worker-a", 1) == job(1)


def test_a_stream_that_exists_is_neither_created_nor_offered_again(journal, lane, stream_id):
    lane.take("worker-a", 1)
    assert journal.create(stream_id, {"owner": "anon:a"}, "stream", {}) is None
    owner, offered = journal.create_and_offer(stream_id, {"owner": "anon:b"}, "stream", {}, lane.offer_of(job(2)))
    assert (owner, offered) == ("anon:a", False)
    assert lane.client.llen(lane.jobs_key) == 0  # another start's job never reaches a worker


def test_with_nobody_listening_the_stream_is_created_and_not_offered(journal, lane, stream_id):
    owner, offered = journal.create_and_offer(stream_id, {"owner": "anon:a"}, "stream", {}, lane.offer_of(job(1)))
    assert (owner, offered) == (None, False)
    assert journal.meta(stream_id)["owner"] == "anon:a"
    assert lane.client.exists(lane.jobs_key) == 0
