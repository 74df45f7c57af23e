"""Graceful shutdown: SIGTERM to a web process or a worker loses no stream and leaves none silent.

A Relay of this module's own: a gunicorn instance that stays up (`web-b`), a web
process per test that is sent SIGTERM, workers started per test, and a fake
provider that streams slowly (40 ms a piece) so replies are mid-flight when
the signal comes.
"""

from __future__ import annotations

import secrets
import signal
import threading
import time

import pytest
import requests

from tests.conftest import Stack, stack_env
from tests.support import collect, fake_server, iter_sse, reply_text, wait_until

pytestmark = pytest.mark.slow

REPLY = " ".join(f"word{i:03d}" for i in range(60))  # 480 characters: 160 pieces, about 6 s
STREAMS = 20
GRACEFUL_TIMEOUT = 15
SETTINGS = {
    "GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
    "QUEUE_TIMEOUT_SECONDS": "10",
    "STREAM_STALL_SECONDS": "30",
    "WORKER_LOST_SECONDS": "3",
    "HEARTBEAT_SECONDS": "1",
}


@pytest.fixture(scope="module")
def slow_provider(tmp_path_factory):
    with fake_server("openai", tmp_path_factory.mktemp("shutdown-openai"), token_ms=40) as base:
        yield base


@pytest.fixture(scope="module")
def relay(tmp_path_factory, base_env, slow_provider):
    log_dir = tmp_path_factory.mktemp("shutdown")
    prefix = f"{base_env['REDIS_KEY_PREFIX']}shut-{secrets.token_hex(2)}:"
    running = Stack(stack_env(base_env, slow_provider + "/v1", log_dir, REDIS_KEY_PREFIX=prefix, **SETTINGS), log_dir)
    try:
        running.other_url = running.start_web("web-b", port=int(running.env["PORT"]))
        yield running
    finally:
        running.stop()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def read_until(events_iter, stop: tuple[str, ...]) -> list:
    """Non-heartbeat events up to and including the first of `stop`, or to the end of the body."""
    events = []
    try:
        for event in events_iter:
            if event.event != "heartbeat":
                events.append(event)
            if event.event in stop:
                break
    except requests.exceptions.ChunkedEncodingError:
        pass  # a body cut short: the client resumes like any other
    return events


def resume_elsewhere(url: str, token: str, stream_id: str, events: list) -> list:
    """Resume on another process with Last-Event-ID until the terminal event."""
    while not events or events[-1].event not in ("done", "error"):
        response = requests.get(
            f"{url}/api/v1/stream/{stream_id}",
            headers={**auth(token), "Last-Event-ID": str(events[-1].id)},
            stream=True,
            timeout=60,
        )
        assert response.status_code == 200, response.text
        events = events + collect(response)
    return events


def test_sigterm_to_a_web_process_moves_its_20_streams_elsewhere_losing_nothing(relay):
    relay.start_worker("worker-web-test", "gevent", "generate", 100)
    try:
        draining = relay.start_web("web-a")
        process = relay.processes["web-a"]
        token = relay.anon_token(relay.other_url)
        results: dict[int, dict] = {}
        first_chunk = threading.Barrier(STREAMS + 1, timeout=30)

        def client(n: int) -> None:
            response = relay.post_stream(token, {"message": f"echo:{REPLY}", "model": "gpt-4o-mini"}, draining)
            events_iter = iter_sse(response)
            events = read_until(events_iter, ("message_chunk",))
            first_chunk.wait()
            events += read_until(events_iter, ("done", "error"))  # until web-a closes the body
            response.close()
            cut = events[-1].event not in ("done", "error")
            results[n] = {"read_on_a": len(events)}
            stream_id = response.headers["X-Stream-Id"]
            results[n].update(cut=cut, events=resume_elsewhere(relay.other_url, token, stream_id, events))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(STREAMS)]
        for thread in threads:
            thread.start()
        first_chunk.wait()  # every stream is open and mid-reply on web-a
        signalled = time.monotonic()
        process.signal(signal.SIGTERM)
        process.popen.wait(GRACEFUL_TIMEOUT + 5)
        exited_after = time.monotonic() - signalled
        for thread in threads:
            thread.join(60)
    finally:
        relay.processes.pop("worker-web-test").stop()

    assert exited_after < GRACEFUL_TIMEOUT, f"web-a took {exited_after:.1f}s to exit"
    assert len(results) == STREAMS
    assert all(result["cut"] for result in results.values()), "every stream was mid-reply at SIGTERM"
    for result in results.values():
        events = result["events"]
        assert 2 <= result["read_on_a"] < len(events) - 1, "web-a streamed, then closed mid-reply"
        assert [e.id for e in events] == list(range(1, len(events) + 1)), "an event was lost or repeated"
        assert reply_text(events) == REPLY
        assert events[-1].event == "done" and events[-1].data["finish_reason"] == "stop"
    print(f"\nweb process exited {exited_after:.2f}s after SIGTERM with {STREAMS} open streams")


def start_streams(relay, count: int) -> list[tuple[str, requests.Response]]:
    token = relay.anon_token(relay.other_url)
    started = []
    for _ in range(count):
        response = relay.post_stream(token, {"message": f"echo:{REPLY}", "model": "gpt-4o-mini"}, relay.other_url)
        assert response.status_code == 200
        started.append((token, response))
    return started


def wait_for_chunks(streams) -> list[tuple]:
    """Read each stream up to its first chunk (generation is under way everywhere); returns each
    stream's events so far and the iterator of the rest."""
    seen = []
    for _, response in streams:
        events_iter = iter_sse(response)
        seen.append((read_until(events_iter, ("message_chunk",)), events_iter))
    return seen


@pytest.mark.parametrize("grace", [30, 1])
def test_sigterm_to_a_worker_mid_generation_completes_or_ends_its_streams(relay, grace):
    """A grace long enough: every reply completes. A short one: every stream ends worker_lost,
    with a retry_after, soon after the grace; never silence."""
    name = f"worker-grace-{grace}"
    worker = relay.start_worker(name, "gevent", "generate", 100, WORKER_SHUTDOWN_GRACE_SECONDS=str(grace))
    try:
        streams = start_streams(relay, 5)
        seen = wait_for_chunks(streams)
        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        finished = [events + read_until(rest, ("done", "error")) for events, rest in seen]
        ended_after = time.monotonic() - signalled
        wait_until(lambda: not worker.alive(), 15, "the worker to exit after its grace")
    finally:
        relay.processes.pop(name).stop()

    for events in finished:
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        last = events[-1]
        if grace == 30:
            assert last.event == "done" and reply_text(events) == REPLY, last
        else:
            assert last.event == "error" and last.data["error_code"] == "worker_lost", last
            assert last.data["retry_after"] >= 1
            assert REPLY.startswith(reply_text(events))
    if grace == 1:
        assert ended_after < grace + 3, f"streams ended {ended_after:.1f}s after SIGTERM"
    log = worker.log_path.read_text(errors="replace")
    assert "Warm shutdown" in log or "warm shutdown" in log
    assert "Traceback" not in log
    if grace == 1:  # the worker itself ended them when its grace ran out (not a reader noticing it gone)
        assert "grace over, 5 unfinished generations ended worker_lost" in log


def test_gunicorn_takes_its_graceful_timeout_from_the_setting(monkeypatch):
    """gunicorn.conf.py reads the environment itself (no app import before gevent patches):
    its defaults must be app/config.py's."""
    import runpy

    from app.config import SETTINGS_BY_NAME
    from tests.support import ROOT

    monkeypatch.delenv("GRACEFUL_TIMEOUT", raising=False)
    assert (
        runpy.run_path(str(ROOT / "gunicorn.conf.py"))["graceful_timeout"]
        == SETTINGS_BY_NAME["GRACEFUL_TIMEOUT"].default
    )
    monkeypatch.setenv("GRACEFUL_TIMEOUT", "7")
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["graceful_timeout"] == 7
