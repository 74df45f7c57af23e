"""The generation task through a real Relay (gunicorn, Celery workers, Redis, SQLite and
PostgreSQL): what it counts, what it stores, and how it ends on its edges."""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import requests
from sqlalchemy import create_engine, text

from app import tokens
from app.catalog import BUILT_IN
from tests.conftest import POSTGRES_URL, Stack, stack_env
from tests.support import collect, reply_text

pytestmark = pytest.mark.slow

MODELS = {spec.id: spec for spec in BUILT_IN}
BAD_CHARS_STORED = "nul\ufffd lone\ufffd end"  # tests/fakes: "nul\x00", " lone\ud800", " end"


def conversation(relay: Stack, token: str, conversation_id: str) -> dict:
    response = requests.get(
        f"{relay.base_url}/api/v1/conversations/{conversation_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200
    return response.json()


def stream_row(relay: Stack, stream_id: str) -> dict:
    engine = create_engine(relay.env["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT status, finish_reason, error_code, cost_usd FROM streams WHERE id = :id"),
                {"id": stream_id},
            )
            return dict(row.mappings().one())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg_relay(tmp_path_factory, base_env, fake_openai) -> Iterator[Stack]:
    """A Relay on a PostgreSQL schema of its own, whose worker's MODELS_FILE lacks gpt-4o
    (which the API offers): web + a gevent worker."""
    schema = f"relay_gen_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    log_dir = tmp_path_factory.mktemp("pg-relay")
    models_file = Path(log_dir) / "worker-models.json"
    models_file.write_text(json.dumps([{"id": "gpt-4o-mini", "provider": "openai", "price_in_per_mtok": 0.15,
                                        "price_out_per_mtok": 0.6}, {"id": "local-smollm2", "provider": "local"}]))  # fmt: skip
    env = stack_env(
        base_env,
        fake_openai,
        log_dir,
        DATABASE_URL=f"{POSTGRES_URL}?options={quote(f'-csearch_path={schema}')}",
        REDIS_KEY_PREFIX=base_env["REDIS_KEY_PREFIX"] + "pg:",
        STREAM_STALL_SECONDS="10",
    )
    running = Stack(env, log_dir)
    try:
        running.start_web(name="pg-web", port=int(env["PORT"]))
        running.start_worker("pg-worker", "gevent", "generate", 20, MODELS_FILE=str(models_file))
        yield running
    finally:
        running.stop()
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def relay(request) -> Stack:
    return request.getfixturevalue("stack" if request.param == "sqlite" else "pg_relay")


# -- item 11: what the client sees is what the database holds ----------------------------------
def test_nul_and_lone_surrogates_reach_client_and_database_alike(relay):
    token = relay.anon_token()
    events = collect(relay.post_stream(token, {"message": "tell me #bad_chars=1", "model": "gpt-4o-mini"}))
    assert events[-1].event == "done", events[-1].data
    assert reply_text(events) == BAD_CHARS_STORED
    stored = conversation(relay, token, events[0].data["conversation_id"])
    assert stored["messages"][1]["content"] == BAD_CHARS_STORED
    assert stored["messages"][1]["id"] == events[-1].data["message_id"]


# -- item 14: a model this worker's catalog lacks ------------------------------------------------
def test_a_model_missing_from_the_workers_catalog_ends_provider_error_and_settles(pg_relay):
    token = pg_relay.anon_token()
    response = pg_relay.post_stream(token, {"message": "hello", "model": "gpt-4o"})
    assert response.status_code == 200, response.text
    stream_id = response.headers["X-Stream-Id"]
    started = time.monotonic()
    events = collect(response)
    assert events[-1].event == "error" and events[-1].data["error_code"] == "provider_error", events[-1].data
    assert time.monotonic() - started < 5  # at once, not after the stall timeout
    store = redis.Redis.from_url(pg_relay.env["REDIS_URL"], decode_responses=True)
    prefix = pg_relay.env["REDIS_KEY_PREFIX"]
    assert not store.exists(f"{prefix}budget:res:{stream_id}"), "the reservation was never settled"
    assert store.zscore(f"{prefix}budget:res", stream_id) is None
    row = stream_row(pg_relay, stream_id)
    assert row["status"] == "failed" and row["error_code"] == "provider_error" and float(row["cost_usd"]) == 0


# -- item 6: the prompt counted by the model's tokenizer when the provider reports no usage ----
def test_prompt_without_provider_usage_is_counted_by_the_tokenizer(stack):
    rng = random.Random(6)
    message = "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(8000)) + " #no_usage=1"
    token = stack.anon_token()
    events = collect(stack.post_stream(token, {"message": message, "model": "gpt-4o-mini", "max_tokens": 20}))
    done = events[-1]
    assert done.event == "done", done.data
    counted = tokens.count_text_tokens(MODELS["gpt-4o-mini"], message)
    assert counted > 3 * len(message) // 4  # several times the characters/4 estimate
    assert done.data["usage"]["prompt_tokens"] >= counted
    chunks = [e for e in events if e.event == "message_chunk"]
    assert done.data["usage"]["completion_tokens"] >= len(chunks) > 0
    spec = MODELS["gpt-4o-mini"]
    assert done.data["cost_usd"] == pytest.approx(spec.cost(**done.data["usage"]), abs=1e-8)
    stored = conversation(stack, token, events[0].data["conversation_id"])["messages"][1]
    assert stored["usage"]["prompt_tokens"] == done.data["usage"]["prompt_tokens"]


# -- Relay's own max_tokens guard, against a provider that ignores max_tokens ---------------------
def test_relay_stops_a_provider_that_ignores_max_tokens(stack):
    token = stack.anon_token()
    body = {"message": "echo:abcdefghijklmnopqrstuvwxyz #ignore_max_tokens=1", "model": "gpt-4o-mini", "max_tokens": 3}
    events = collect(stack.post_stream(token, body))
    # Three of the provider's chunks (however many events carry them), and not a character more.
    assert reply_text(events) == "abcdefghi"
    assert events[-1].event == "done" and events[-1].data["finish_reason"] == "length"
    assert events[-1].data["usage"]["completion_tokens"] == 3
    stored = conversation(stack, token, events[0].data["conversation_id"])["messages"][1]
    assert stored["content"] == "abcdefghi"


# -- ttft_ms measures the first token ----------------------------------------------------------
def test_ttft_ms_covers_the_providers_first_token_delay(stack):
    token = stack.anon_token()
    started = time.monotonic()
    events = collect(stack.post_stream(token, {"message": "echo:slow start #ttft=400", "model": "gpt-4o-mini"}))
    wall_ms = (time.monotonic() - started) * 1000
    done = events[-1].data
    assert events[-1].event == "done", done
    # The fake waits 400 ms before its first chunk; the worker cannot have seen it sooner,
    # and what it reports fits inside the whole stream as the client timed it.
    assert 400 <= done["ttft_ms"] <= done["duration_ms"] <= wall_ms


# -- item 14: each prefork child claims under its own id -------------------------------------------
def test_prefork_child_claims_under_its_own_id_and_keeps_it_alive(stack):
    token = stack.anon_token()
    response = stack.post_stream(token, {"message": "Say hi.", "model": "local-smollm2", "max_tokens": 4})
    stream_id = response.headers["X-Stream-Id"]
    assert collect(response)[-1].event == "done"
    store = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    prefix = stack.env["REDIS_KEY_PREFIX"]
    started = store.hget(f"{prefix}stream:{{{stream_id}}}:meta", "started")
    host, _, pid = started.rpartition(":")
    parent = stack.processes["local-worker"].popen.pid
    assert int(pid) != parent, "the child claimed under its parent's pid"
    assert _ppid(int(pid)) == parent
    assert store.pttl(f"{prefix}worker:{started}:alive") > 0


def _ppid(pid: int) -> int:
    """The parent of a live process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])
