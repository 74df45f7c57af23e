"""Streaming checks: a reply to `done`, resume by Last-Event-ID, and 422s for bad input."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import requests

from ._target import FAIL, PASS, Result, Target, bearer, error_code, seen

MAX_MESSAGE = 8192  # the contract's longest message
STREAM_DEADLINE_S = 90.0  # a reply that has not ended by then fails the check


def _events(response: requests.Response, deadline: float) -> Iterator[tuple[int | None, str, dict]]:
    buffer = ""
    for piece in response.iter_content(chunk_size=None):
        buffer += piece.decode("utf-8")
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(line.partition(": ")[::2] for line in block.split("\n"))
            if "event" in fields:
                raw_id = fields.get("id")
                yield (int(raw_id) if raw_id else None, fields["event"], json.loads(fields.get("data", "{}")))
        if time.monotonic() > deadline:
            raise TimeoutError(f"no terminal event within {STREAM_DEADLINE_S:.0f} s")


def _collect(response: requests.Response) -> list[tuple[int | None, str, dict]]:
    events = []
    with response:
        for event in _events(response, time.monotonic() + STREAM_DEADLINE_S):
            if event[1] == "heartbeat":
                continue
            events.append(event)
            if event[1] in ("done", "error"):
                break
    return events


def check_stream_done(target: Target) -> Result:
    """A streamed reply: `stream` first, ids 1, 2, 3, …, `done` last."""
    if not target.anon_token:
        return Result("stream_done", FAIL, "no anonymous token to stream with")
    body = {"message": "Say hello in five words.", "max_tokens": 32}
    response = target.request("POST", "/api/v1/stream", json=body, headers=bearer(target.anon_token), stream=True)
    if response.status_code != 200 or not response.headers.get("Content-Type", "").startswith("text/event-stream"):
        return Result("stream_done", FAIL, f"POST /api/v1/stream: {seen(response)}")
    events = _collect(response)
    names = [name for _, name, _ in events]
    ids = [event_id for event_id, _, _ in events]
    target.events, target.stream_id = events, response.headers.get("X-Stream-Id")
    if not events or names[0] != "stream" or names[-1] != "done" or ids != list(range(1, len(events) + 1)):
        return Result("stream_done", FAIL, f"events {names[:3]}…{names[-2:]} with ids {ids[:3]}…{ids[-2:]}")
    reason = events[-1][2].get("finish_reason")
    return Result("stream_done", PASS, f"{len(events)} events, ids 1..{len(events)}, done ({reason})")


def check_resume(target: Target) -> Result:
    """Last-Event-ID k on GET /api/v1/stream/<id> returns exactly the events after k."""
    if not target.stream_id or len(target.events) < 2:
        return Result("resume", FAIL, "no finished stream to resume")
    after = len(target.events) // 2
    headers = {**bearer(target.anon_token or ""), "Last-Event-ID": str(after)}
    response = target.request("GET", f"/api/v1/stream/{target.stream_id}", headers=headers, stream=True)
    if response.status_code != 200:
        return Result("resume", FAIL, f"Last-Event-ID {after}: {seen(response)}")
    replayed = _collect(response)
    if replayed != target.events[after:]:
        return Result("resume", FAIL, f"Last-Event-ID {after}: ids {[e[0] for e in replayed]}, not the same events")
    return Result("resume", PASS, f"Last-Event-ID {after}: ids {after + 1}..{len(target.events)}, identical")


def _unprocessable(target: Target, name: str, body: dict) -> Result:
    response = target.request("POST", "/api/v1/stream", json=body, headers=bearer(target.anon_token or ""))
    response.close()
    status = PASS if response.status_code == 422 and error_code(response) else FAIL
    return Result(name, status, f"POST /api/v1/stream: {seen(response)}")


def check_message_too_long(target: Target) -> Result:
    """A message of 8193 characters: 422."""
    return _unprocessable(target, "message_too_long", {"message": "a" * (MAX_MESSAGE + 1)})


def check_unknown_model(target: Target) -> Result:
    """A model that is not in /api/v1/models: 422."""
    return _unprocessable(target, "unknown_model", {"message": "hi", "model": "relay-validate-no-such-model"})
