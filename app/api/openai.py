"""The OpenAI-compatible API (/v1): models and chat completions, on the /api/v1/stream pipeline.

Every error under /v1 is in OpenAI's shape (app/openai_compat/errors.py, through app/errors.py).
"""

from __future__ import annotations

import time
from contextlib import closing

from flask import Blueprint, Response, current_app, request

from .. import openai_compat
from ..auth import current_principal, require_scopes
from ..errors import register_dialect
from ..schemas import json_body
from ..schemas.openai import (
    CHUNK_EVENT,
    ChatCompletionSchema,
    ModelObjectListSchema,
    ModelObjectSchema,
    OpenAIErrorSchema,
    chat_request_schema,
)
from ..streams import service
from ..streams.sse import HEADERS
from ._doc import Content, doc

bp = Blueprint("openai", __name__, url_prefix="/v1")
bp.record_once(lambda state: register_dialect(state.app, bp.url_prefix or "/v1", openai_compat.openai_error))

_OPENAI = {"error_schema": OpenAIErrorSchema, "error_statuses": {422: 400}}
_COST_CAP = {
    "X-Relay-Cost-Cap": {"schema": {"type": "string", "pattern": r"^[0-9]{1,9}(\.[0-9]{1,12})?$"},
                         "description": "USD, above 0 and at most MAX_COST_CAP_USD (default DEFAULT_COST_CAP_USD)"},
}  # fmt: skip
_STREAM_ID = {"X-Stream-Id": {"required": True, "schema": {"type": "string"},
                              "description": "Resume a streaming answer: GET /api/v1/stream/{id}"}}  # fmt: skip


def _runtime():
    return current_app.extensions["relay.streams"]


def _catalog_models(config) -> tuple[str, ...]:
    from ..catalog import Catalog

    return tuple(Catalog(config).models)


@bp.get("/models")
@doc("The models of /api/v1/models as OpenAI model objects", {200: ModelObjectListSchema}, **_OPENAI)
@require_scopes("chat")
def models():
    return openai_compat.model_list(_runtime().catalog)


@bp.get("/models/<model_id>")
@doc("One model as an OpenAI model object (404 model_not_found)", {200: ModelObjectSchema}, errors=(404,), **_OPENAI)
@require_scopes("chat")
def model(model_id: str):
    return openai_compat.model_object(_runtime().catalog, model_id)


@bp.post("/chat/completions")
@doc(
    "A chat completion (stream false) or chat.completion.chunk events (stream true)",
    {
        200: Content(
            {"application/json": {"schema": ChatCompletionSchema}, "text/event-stream": {"itemSchema": CHUNK_EVENT}}
        )
    },
    body=lambda config: chat_request_schema(config, _catalog_models(config)),
    headers=_COST_CAP,
    response_headers={200: _STREAM_ID},
    errors=(404,),
    description="Unsupported parameters are refused by name (400 unsupported_parameter). Behind it: the "
    "limits, quotas, budgets and cost cap of /api/v1/stream; the messages are stored as a new conversation.",
    **_OPENAI,
)
@require_scopes("chat")
def chat_completions():
    runtime, created = _runtime(), int(time.time())
    chat = openai_compat.parse_chat(json_body(), request.headers.get("X-Relay-Cost-Cap"), runtime.catalog,
                                    current_app.config)  # fmt: skip
    stream_id = service.start_conversation(runtime, current_principal(), chat.new).stream_id
    headers = {"X-Stream-Id": stream_id}
    if not chat.stream:
        with closing(service.open_events(runtime, stream_id, 0, render=iter)) as items:
            return openai_compat.completion(items, stream_id, chat.model, created), 200, headers
    render = openai_compat.ChunkRenderer(stream_id, chat.model, created, chat.include_usage)
    events = service.open_events(runtime, stream_id, 0, render)
    try:
        return Response(events, status=200, mimetype="text/event-stream", headers={**HEADERS, **headers})
    except BaseException:
        events.close()  # the body will never be iterated: release its subscription now
        raise
