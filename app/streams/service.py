"""Starting, attaching to and cancelling streams: the logic behind the stream views."""

from __future__ import annotations

import logging
import secrets
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..catalog import ModelSpec
from ..db import queries
from ..db.models import new_id
from ..errors import APIError, forbidden, not_found, validation_error
from ..limits import admit_stream
from ..limits.admission import StreamIdInUse
from ..principal import Principal
from ..tokens import count_prompt_tokens
from .job import GenerationJob, Sampling
from .reader import Item, as_sse, read_events
from .runtime import StreamRuntime

log = logging.getLogger("relay.streams")
# A start whose id another admission holds waits this long for that stream's journal.
ATTACH_WAIT_SECONDS = 2.0
ATTACH_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class StreamStart:
    stream_id: str
    after: int  # replay events after this id (0: from the start)


def new_stream_id() -> str:
    return secrets.token_urlsafe(16)


def _queue_for(provider: str) -> str:
    # The CPU-bound local model has its own queue and prefork workers.
    return "generate_local" if provider == "local" else "generate"


@dataclass(frozen=True)
class NewStream:
    """A stream to start: the whole prompt, what it adds to the conversation, and its bounds."""

    spec: ModelSpec
    messages: list[dict[str, str]]  # the prompt the provider gets, oldest first
    title: str  # the conversation's title when it is new
    conversation_id: str
    new_conversation: bool
    max_tokens: int
    cost_cap_usd: float
    turns: list[dict[str, str]] | None = None  # stored as given; None: just the new user message
    sampling: Sampling = field(default_factory=Sampling)
    cap_field: str = "cost_cap_usd"  # what a cap below the prompt's cost is reported against


def start_stream(runtime: StreamRuntime, principal: Principal, request: dict[str, Any]) -> StreamStart:
    """Create and enqueue a new stream, or attach to the caller's stream of that id.

    The job is enqueued as soon as the stream exists in Redis, and the database
    rows are written while the worker calls the provider: the rows cost the
    client no time to first chunk. The worker waits for them before it saves.
    """
    spec = runtime.catalog.get(request.get("model") or runtime.catalog.default)
    if spec is None:
        raise validation_error({"model": ["Not an available model."]}, "Unknown model.")
    chosen_id = request.get("stream_id")
    if chosen_id:
        existing = _existing_stream(runtime, principal, chosen_id)
        if existing is not None:
            return existing
    message = request["message"]
    conversation_id = request.get("conversation_id")
    history: list[dict[str, str]] = []
    if conversation_id:
        with runtime.database.session() as session:
            queries.get_owned_conversation(session, principal, conversation_id)
            history = queries.recent_messages(session, conversation_id, runtime.settings["CONTEXT_MESSAGES"] - 1)
    new = NewStream(
        spec=spec,
        messages=[*history, {"role": "user", "content": message}],
        title=message,
        conversation_id=conversation_id or new_id(),
        new_conversation=conversation_id is None,
        max_tokens=request.get("max_tokens") or runtime.settings["MAX_TOKENS_PER_REQUEST"],
        cost_cap_usd=request.get("cost_cap_usd") or runtime.settings["DEFAULT_COST_CAP_USD"],
    )
    return _start(runtime, principal, new, chosen_id or new_stream_id())


def start_conversation(runtime: StreamRuntime, principal: Principal, new: NewStream) -> StreamStart:
    """Start a stream whose whole prompt the caller gave (`new.turns`, stored as a new conversation)."""
    return _start(runtime, principal, new, new_stream_id())


def _start(runtime: StreamRuntime, principal: Principal, new: NewStream, stream_id: str) -> StreamStart:
    spec = new.spec
    prompt_usd = _prompt_cost(spec, new.messages, new.cost_cap_usd, new.cap_field)
    # Rate limits, quotas and the budget reservation (429 when refused); the worker settles it.
    try:
        admission = admit_stream(principal, spec, stream_id, new.messages, new.max_tokens, new.cost_cap_usd)
    except StreamIdInUse:
        return _attach_once_created(runtime, principal, stream_id)
    first = {"stream_id": stream_id, "conversation_id": new.conversation_id, "model": spec.id}
    fields = {"owner": principal.id, "model": spec.id, "prompt_usd": repr(prompt_usd)}
    job = GenerationJob(stream_id, spec.id, new.messages, new.max_tokens, new.cost_cap_usd, new.sampling)
    queue = _queue_for(spec.provider)
    try:
        owner, offered = runtime.create_stream(stream_id, fields, first, job, queue)
    except BaseException:
        admission.release()  # no stream was created: nothing will settle this reservation
        raise
    if owner is not None:  # another start took the id first: give back only what we reserved
        admission.release()
        return _attach_or_refuse(principal, stream_id, owner)

    # On refusal the stream already ended with an error: nothing will run or settle.
    runtime.dispatch(job, queue, offered, on_refused=admission.release)
    rows = {"conversation_id": new.conversation_id, "new_conversation": new.new_conversation, "message": new.title}
    if new.turns is not None:
        rows["turns"] = new.turns
    # The rows are written beside the response rather than before it: a failure
    # still ends the stream (error event) and stops the job, and costs no latency.
    runtime.rows.submit(principal, {**rows, "stream_id": stream_id, "model": spec.id})
    return StreamStart(stream_id, 0)


def _prompt_cost(spec: ModelSpec, messages: list[dict[str, str]], cost_cap_usd: float, cap_field: str) -> float:
    """The prompt's own cost at the model's input price; a cap below it is a 422 (the provider
    bills the prompt whatever the cap)."""
    if not spec.price_in_per_mtok:
        return 0.0  # a free prompt: no tokenizer needed (the local model's would load its weights)
    prompt_usd = spec.cost(count_prompt_tokens(spec, messages), 0)
    if cost_cap_usd < prompt_usd:
        message = f"Below this prompt's own cost ({prompt_usd:.8f} USD at {spec.id}'s input price)."
        raise validation_error({cap_field: [message]}, f"{cap_field} is below the prompt's cost.")
    return prompt_usd


def _attach_or_refuse(principal: Principal, stream_id: str, owner: str) -> StreamStart:
    """The journal's owner decides: the caller's own stream is attached to, never started twice."""
    if owner != principal.id:
        raise APIError(409, "stream_id_in_use", "This stream_id belongs to another stream.")
    return StreamStart(stream_id, 0)


def _existing_stream(runtime: StreamRuntime, principal: Principal, stream_id: str) -> StreamStart | None:
    """A client-chosen id: attach to the caller's live or retained stream; 409 for another's,
    and for an id ever used before (its row outlives the journal and the conversation)."""
    owner = runtime.journal.meta(stream_id).get("owner")
    if owner is not None:
        return _attach_or_refuse(principal, stream_id, owner)
    with runtime.database.session() as session:
        if queries.get_stream(session, stream_id) is not None:
            raise APIError(409, "stream_id_in_use", "This stream_id was already used.")
    return None


def _attach_once_created(runtime: StreamRuntime, principal: Principal, stream_id: str) -> StreamStart:
    """Another admission holds this id: a concurrent start creates its journal within
    moments (then its owner decides); a record left behind by a dead stream is a 409."""
    deadline = time.monotonic() + ATTACH_WAIT_SECONDS
    while True:
        owner = runtime.journal.meta(stream_id).get("owner")
        if owner is not None:
            return _attach_or_refuse(principal, stream_id, owner)
        if time.monotonic() >= deadline:
            raise APIError(409, "stream_id_in_use", "This stream_id was already used.")
        time.sleep(ATTACH_POLL_SECONDS)


def check_attach(runtime: StreamRuntime, principal: Principal, stream_id: str, after: int) -> bool:
    """Whether there is anything after `after` (else 204); 403 another's, 404 unknown or expired,
    422 past the last event of a live stream."""
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
    if ended is not None:
        return after < int(ended)
    if after > int(meta.get("seq", 0)):
        raise validation_error(
            {"Last-Event-ID": ["Past this stream's last event."]}, "Last-Event-ID is past the stream's last event."
        )
    return True


class EventStream:
    """The body of one response: what a reader sees, rendered (Relay's SSE by default). Its
    subscription is released exactly once: when the items end, when the response is closed
    (even if never iterated), or at the latest when the body is garbage-collected after a
    failure before streaming."""

    def __init__(
        self, runtime: StreamRuntime, stream_id: str, after: int, render: Callable[[Iterator[Item]], Iterator[Any]]
    ) -> None:
        sub = runtime.subscribe(stream_id)  # confirmed now, so errors surface before the response starts
        self._release = weakref.finalize(self, runtime.hub.unsubscribe, sub)
        self._items = read_events(stream_id, after, runtime.journal, sub, runtime.timing, runtime.watchers)
        self._events = render(self._items)

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._events)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """End the rendering and the items (their own cleanup runs if they started), and release
        the subscription."""
        try:
            for part in (self._events, self._items):
                close = getattr(part, "close", None)
                if close is not None:
                    close()
        finally:
            self._release()


def open_events(
    runtime: StreamRuntime,
    stream_id: str,
    after: int,
    render: Callable[[Iterator[Item]], Iterator[Any]] = as_sse,
) -> EventStream:
    """Subscribe (confirmed) now, so errors surface before the response starts; `render` turns
    what the reader sees into the body (Relay's SSE unless told otherwise)."""
    return EventStream(runtime, stream_id, after, render)


def cancel_stream(runtime: StreamRuntime, principal: Principal, stream_id: str) -> None:
    check_attach(runtime, principal, stream_id, 0)
    runtime.journal.request_cancel(stream_id)
