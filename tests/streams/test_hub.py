"""The per-process pub/sub hub: one connection, confirmed subscriptions, fan-out,
bounded queues, and a resync for every reader after the connection comes back."""

from __future__ import annotations

import secrets
import time

import pytest
import redis

from app.streams.hub import RESYNC, HubUnavailable, PubSubHub
from app.streams.journal import Journal


@pytest.fixture
def hub(redis_url):
    name = f"relay-hub-test-{secrets.token_hex(3)}"
    hub = PubSubHub(lambda: redis.Redis.from_url(redis_url, decode_responses=True, client_name=name), queue_size=4)
    hub.client_name = name
    yield hub
    hub.stop()


@pytest.fixture
def journal(redis_client, key_prefix) -> Journal:
    return Journal(redis_client, key_prefix + "hub:", retention_s=60, maxlen=1000, orphan_grace_s=5)


def new_stream(journal: Journal) -> str:
    stream_id = secrets.token_urlsafe(12)
    journal.create(stream_id, {"owner": "anon:a", "model": "m"}, "stream", {})
    return stream_id


def hub_connections(redis_client, name: str) -> list[dict]:
    return [c for c in redis_client.client_list() if c.get("name") == name]


def test_readers_of_many_streams_share_one_connection(hub, journal, redis_client):
    streams = [new_stream(journal) for _ in range(20)]
    subs = [hub.subscribe(journal.channel(s)) for s in streams for _ in range(2)]
    for stream_id in streams:
        journal.append(stream_id, "message_chunk", {"content": stream_id})
    for sub in subs:
        event = sub.get(timeout=2)
        assert event is not None and event.id == 2
    assert len(hub_connections(redis_client, hub.client_name)) == 1
    assert hub.channel_count() == 20
    for sub in subs:
        hub.unsubscribe(sub)
    assert hub.channel_count() == 0


def test_a_full_reader_queue_becomes_a_resync_and_never_blocks_the_hub(hub, journal):
    slow, fast = new_stream(journal), new_stream(journal)
    slow_sub = hub.subscribe(journal.channel(slow))
    fast_sub = hub.subscribe(journal.channel(fast))
    for i in range(10):  # more than the queue holds
        journal.append(slow, "message_chunk", {"content": str(i)})
    journal.append(fast, "message_chunk", {"content": "still flowing"})
    assert fast_sub.get(timeout=2).payload()["content"] == "still flowing"
    drained = []
    while (item := slow_sub.get(timeout=0.5)) is not None:
        drained.append(item)
    assert RESYNC in drained and len(drained) <= 4


def test_every_reader_resyncs_after_the_connection_drops(hub, journal, redis_client):
    stream_id = new_stream(journal)
    sub = hub.subscribe(journal.channel(stream_id))
    for client in hub_connections(redis_client, hub.client_name):
        redis_client.client_kill_filter(_id=client["id"])
    journal.append(stream_id, "message_chunk", {"content": "published while we were away"})
    deadline = time.monotonic() + 10
    items = []
    while time.monotonic() < deadline and RESYNC not in items:
        item = sub.get(timeout=0.5)
        if item is not None:
            items.append(item)
    assert RESYNC in items
    journal.append(stream_id, "message_chunk", {"content": "after"})
    assert any(getattr(sub.get(timeout=2), "id", None) == 3 for _ in range(3))


def test_subscribe_fails_cleanly_when_redis_is_unreachable():
    hub = PubSubHub(lambda: redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), 4, confirm_timeout=0.5)
    try:
        with pytest.raises(HubUnavailable):
            hub.subscribe("nowhere")
        assert hub.channel_count() == 0
    finally:
        hub.stop()
