"""What a stream's reader sees, as OpenAI's answers: chat.completion.chunk events or one chat.completion.

Streaming: the `stream` event opens with the assistant's role, each `message_chunk` is a
chunk, `done` a last chunk with the finish reason (then, with include_usage, a chunk
with no choices and the usage), then `data: [DONE]`. Each chunk carries its journal id
(`id:`), so a client that loses the connection resumes after it through
GET /api/v1/stream/<id> (Relay's own events). A terminal `error` is an
`{"error": ...}` event, which the OpenAI SDKs raise. Heartbeats are SSE comments.

finish_reason is OpenAI's (`stop`, `length`); Relay's own (`cost_cap` reads as
`length`, `cancelled` as `stop`) is in `x_relay.finish_reason`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..catalog import Catalog
from ..errors import APIError
from ..streams.journal import Event, encode
from ..streams.reader import Item, LocalError
from .chat import invalid

DONE = "data: [DONE]\n\n"
KEEP_ALIVE = ": keep-alive\n\n"
_OPENAI_FINISH = {"stop": "stop", "length": "length", "cost_cap": "length", "cancelled": "stop"}
# A stream that ended with an error, answered to a non-streaming request.
_ERROR_STATUS = {"provider_error": 502, "internal": 500}


def completion_id(stream_id: str) -> str:
    return f"chatcmpl-{stream_id}"


def _extras(stream_id: str, conversation_id: str | None, done: dict[str, Any]) -> dict[str, Any]:
    return {
        "finish_reason": done["finish_reason"],
        "cost_usd": done["cost_usd"],
        "stream_id": stream_id,
        "conversation_id": conversation_id,
        "message_id": done.get("message_id"),
    }


def _usage(done: dict[str, Any]) -> dict[str, int]:
    usage = done["usage"]
    return {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}


def _error_object(code: str, detail: str) -> dict[str, Any]:
    return {"error": {"message": detail, "type": "server_error", "param": None, "code": code}}


class ChunkRenderer:
    """Renders one streaming answer: `render(items)` yields its SSE text."""

    def __init__(self, stream_id: str, model: str, created: int, include_usage: bool) -> None:
        self.stream_id = stream_id
        self.include_usage = include_usage
        self.conversation_id: str | None = None
        self._head = {"id": completion_id(stream_id), "object": "chat.completion.chunk", "created": created,
                      "model": model}  # fmt: skip

    def _chunk(self, event_id: int, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {**self._head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        if self.include_usage:
            body.setdefault("usage", None)
        return f"id: {event_id}\ndata: {encode(body)}\n\n"

    def __call__(self, items: Iterator[Item]) -> Iterator[str]:
        for item in items:
            if isinstance(item, LocalError):
                yield f"data: {encode(_error_object(item.code, item.detail))}\n\n{DONE}"
                return
            if not isinstance(item, Event):
                yield KEEP_ALIVE
                continue
            if item.event == "message_chunk":
                yield self._chunk(item.id, {"content": json.loads(item.data)["content"]})
            elif item.event == "stream":
                self.conversation_id = item.payload()["conversation_id"]
                yield self._chunk(item.id, {"role": "assistant", "content": ""})
            elif item.event == "done":
                yield from self._end(item.id, item.payload())
                return
            elif item.event == "error":
                error = item.payload()
                yield f"id: {item.id}\ndata: {encode(_error_object(error['error_code'], error['detail']))}\n\n{DONE}"
                return

    def _end(self, event_id: int, done: dict[str, Any]) -> Iterator[str]:
        extras = _extras(self.stream_id, self.conversation_id, done)
        yield self._chunk(event_id, {}, _OPENAI_FINISH[done["finish_reason"]], x_relay=extras)
        if self.include_usage:
            yield f"data: {encode({**self._head, 'choices': [], 'usage': _usage(done)})}\n\n"
        yield DONE


def completion(items: Iterator[Item], stream_id: str, model: str, created: int) -> dict[str, Any]:
    """The whole answer of a non-streaming request, once its stream ended; an APIError if it failed."""
    parts: list[str] = []
    conversation_id = None
    for item in items:
        if isinstance(item, LocalError):
            raise APIError(503, item.code, item.detail, headers={"Retry-After": str(item.retry_after or 5)})
        if not isinstance(item, Event):
            continue  # a heartbeat: nothing to tell a client that waits for the whole answer
        if item.event == "message_chunk":
            parts.append(json.loads(item.data)["content"])
        elif item.event == "stream":
            conversation_id = item.payload()["conversation_id"]
        elif item.event == "done":
            done = item.payload()
            choice = {"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                      "finish_reason": _OPENAI_FINISH[done["finish_reason"]]}  # fmt: skip
            return {"id": completion_id(stream_id), "object": "chat.completion", "created": created, "model": model,
                    "choices": [choice], "usage": _usage(done),
                    "x_relay": _extras(stream_id, conversation_id, done)}  # fmt: skip
        elif item.event == "error":
            error = item.payload()
            status = _ERROR_STATUS.get(error["error_code"], 503)
            headers = {"Retry-After": str(error.get("retry_after") or 5)} if status == 503 else None
            raise APIError(status, error["error_code"], error["detail"], headers=headers)
    raise APIError(503, "stalled", "The stream ended without an answer; try again.", headers={"Retry-After": "5"})


def model_object(catalog: Catalog, model_id: str) -> dict[str, Any]:
    """One OpenAI `model` object; 404 model_not_found for a model Relay does not offer."""
    spec = catalog.get(model_id)
    if spec is None:
        raise invalid("model", f"The model '{model_id}' does not exist or you do not have access to it.",
                      "model_not_found", 404)  # fmt: skip
    # Relay does not know when a model was made: 0 says so, as an integer every client can parse.
    return {"id": spec.id, "object": "model", "created": 0, "owned_by": spec.provider}


def model_list(catalog: Catalog) -> dict[str, Any]:
    """The models /api/v1/models lists, as an OpenAI list of `model` objects."""
    return {"object": "list", "data": [model_object(catalog, model_id) for model_id in catalog.models]}
