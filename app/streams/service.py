"""Starting, attaching to and cancelling streams: the logic behind the stream views."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy.exc import IntegrityError, OperationalError

from ..auth.principal import Principal
from ..db import Stream, queries
from ..errors import APIError, forbidden, not_found, unavailable
from .reader import stream_events
from .runtime import StreamRuntime


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
    """Create and enqueue a new stream, or attach to the caller's stream of that id."""
    spec = runtime.catalog.get(request.get("model") or runtime.catalog.default)
    if spec is None:
        raise APIError(422, "validation_error", "Unknown model.", {"model": ["Not an available model."]})
    conversation_id = request.get("conversation_id")
    if conversation_id:
        with runtime.database.session() as session:
            queries.get_owned_conversation(session, principal, conversation_id)

    stream_id = request.get("stream_id") or new_stream_id()
    owner = runtime.journal.create(stream_id, {"owner": principal.id, "model": spec.id})
    if owner is not None:
        if owner != principal.id:
            raise APIError(409, "stream_id_in_use", "This stream_id belongs to another stream.")
        return StreamStart(stream_id, 0)  # the caller's own stream: attach, never start twice

    try:
        with runtime.database.session() as session:
            if conversation_id:
                conversation = queries.get_owned_conversation(session, principal, conversation_id)
            else:
                conversation = queries.create_conversation(session, principal, request["message"])
            queries.add_message(session, conversation.id, "user", request["message"])
            session.add(
                Stream(
                    id=stream_id,
                    owner_id=principal.id,
                    tenant_id=principal.tenant_id,
                    conversation_id=conversation.id,
                    model=spec.id,
                )
            )
            session.flush()
            prompt = queries.recent_messages(session, conversation.id, runtime.settings["CONTEXT_MESSAGES"])
            conversation_id = conversation.id
    except IntegrityError:
        runtime.journal.discard(stream_id)
        raise APIError(409, "stream_id_in_use", "This stream_id was already used.") from None
    except OperationalError:
        runtime.journal.discard(stream_id)
        raise unavailable("database") from None
    except APIError:
        runtime.journal.discard(stream_id)
        raise

    runtime.journal.append(
        stream_id, "stream", {"stream_id": stream_id, "conversation_id": conversation_id, "model": spec.id}
    )
    runtime.enqueue(
        "workers.generate",
        queue=_queue_for(spec.provider),
        kwargs={
            "stream_id": stream_id,
            "model": spec.id,
            "messages": prompt,
            "max_tokens": request.get("max_tokens") or runtime.settings["MAX_TOKENS_PER_REQUEST"],
            "cost_cap_usd": request.get("cost_cap_usd") or runtime.settings["DEFAULT_COST_CAP_USD"],
        },
    )
    return StreamStart(stream_id, 0)


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
    return stream_events(stream_id, after, runtime.journal, runtime.hub, sub, runtime.timing)


def cancel_stream(runtime: StreamRuntime, principal: Principal, stream_id: str) -> None:
    check_attach(runtime, principal, stream_id, 0)
    runtime.journal.request_cancel(stream_id)


REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)
