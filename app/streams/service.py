"""Starting, attaching to and cancelling streams: the logic behind the stream views."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..db import queries
from ..db.models import new_id
from ..errors import APIError, forbidden, not_found
from ..limits import admit_stream
from ..principal import Principal
from .reader import stream_events
from .runtime import StreamRuntime

log = logging.getLogger("relay.streams")


@dataclass(frozen=True)
class StreamStart:
    stream_id: str
    after: int  # replay events after this id (0: from the start)


def new_stream_id() -> str:
    return secrets.token_urlsafe(16)


def _queue_for(provider: str) -> str:
    # The CPU-bound local model has its own queue and prefork workers.
    return "generate_local" if provider == "local" else "generate"


def start_stream(runtime: StreamRuntime, principal: Principal, request: dict[str, Any]) -> StreamStart:
    """Create and enqueue a new stream, or attach to the caller's stream of that id.

    The job is enqueued as soon as the stream exists in Redis, and the database
    rows are written while the worker calls the provider: the rows cost the
    client no time to first chunk. The worker waits for them before it saves.
    """
    spec = runtime.catalog.get(request.get("model") or runtime.catalog.default)
    if spec is None:
        raise APIError(422, "validation_error", "Unknown model.", {"fields": {"model": ["Not an available model."]}})
    message = request["message"]
    conversation_id = request.get("conversation_id")
    history: list[dict[str, str]] = []
    if conversation_id:
        with runtime.database.session() as session:
            queries.get_owned_conversation(session, principal, conversation_id)
            history = queries.recent_messages(session, conversation_id, runtime.settings["CONTEXT_MESSAGES"] - 1)
    new_conversation = conversation_id is None
    conversation_id = conversation_id or new_id()

    stream_id = request.get("stream_id") or new_stream_id()
    messages = [*history, {"role": "user", "content": message}]
    max_tokens = request.get("max_tokens") or runtime.settings["MAX_TOKENS_PER_REQUEST"]
    cost_cap_usd = request.get("cost_cap_usd") or runtime.settings["DEFAULT_COST_CAP_USD"]
    # Rate limits, quotas and the budget reservation (429 when refused); the worker settles it.
    admission = admit_stream(principal, spec, stream_id, messages, max_tokens, cost_cap_usd)
    first = {"stream_id": stream_id, "conversation_id": conversation_id, "model": spec.id}
    try:
        owner = runtime.journal.create(stream_id, {"owner": principal.id, "model": spec.id}, "stream", first)
        if owner is not None:
            if owner != principal.id:
                raise APIError(409, "stream_id_in_use", "This stream_id belongs to another stream.")
            admission.release()
            return StreamStart(stream_id, 0)  # the caller's own stream: attach, never start twice
        if request.get("stream_id") and _used_before(runtime, stream_id):
            runtime.journal.discard(stream_id)
            raise APIError(409, "stream_id_in_use", "This stream_id was already used.")
    except BaseException:
        admission.release()  # no stream was created: nothing will settle this reservation
        raise

    enqueued = runtime.enqueue(
        "workers.generate",
        queue=_queue_for(spec.provider),
        kwargs={
            "stream_id": stream_id,
            "model": spec.id,
            "messages": messages,
            "max_tokens": max_tokens,
            "cost_cap_usd": cost_cap_usd,
        },
    )
    if not enqueued:
        admission.release()  # the stream already ended with an error; nothing will run or settle
    rows = {
        "conversation_id": conversation_id,
        "new_conversation": new_conversation,
        "message": message,
        "stream_id": stream_id,
        "model": spec.id,
    }
    # The rows are written beside the response rather than before it: a failure
    # still ends the stream (error event) and stops the job, and costs no latency.
    runtime.rows.submit(principal, rows)
    return StreamStart(stream_id, 0)


def _used_before(runtime: StreamRuntime, stream_id: str) -> bool:
    """A client-chosen id whose journal expired but whose row remains is not reusable."""
    with runtime.database.session() as session:
        return queries.get_stream(session, stream_id) is not None


def check_attach(runtime: StreamRuntime, principal: Principal, stream_id: str, after: int) -> bool:
    """Whether there is anything after `after` (else 204); 403 another's, 404 unknown or expired."""
    meta = runtime.journal.meta(stream_id)
    if not meta:
        with runtime.database.session() as session:
            row = queries.get_stream(session, stream_id)
        if row is not None and row.owner_id != principal.id:
            raise forbidden("stream")
        raise not_found("stream")
    if meta.get("owner") != principal.id:
        raise forbidden("stream")
    ended = meta.get("ended")
    return not (ended is not None and after >= int(ended))


def open_events(runtime: StreamRuntime, stream_id: str, after: int) -> Iterator[str]:
    """Subscribe (confirmed) now, so errors surface before the response starts."""
    sub = runtime.subscribe(stream_id)
    return stream_events(stream_id, after, runtime.journal, runtime.hub, sub, runtime.timing, runtime.presence)


def cancel_stream(runtime: StreamRuntime, principal: Principal, stream_id: str) -> None:
    check_attach(runtime, principal, stream_id, 0)
    runtime.journal.request_cancel(stream_id)
