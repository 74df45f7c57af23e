"""Docs of views that do not carry `@doc` yet (their modules are being reworked): move each
onto its view as `@doc(...)` and delete it here. app/api/openapi.py reads both."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ..schemas.events import CancelSchema
from ..schemas.health import HealthSchema, ReadySchema
from ..schemas.stream import stream_request_schema
from ._doc import EVENT_STREAM, NO_BODY, Doc

_LAST_EVENT_ID = {
    # Empty is absent (a client with no last id yet), as EventSource does it.
    "Last-Event-ID": {"schema": {"type": "string", "pattern": "^[0-9]{0,12}$"},
                      "description": "Send the events after this id (also the `last_event_id` query parameter)"},
}  # fmt: skip
_STREAM_LINKS = {
    200: {
        "attach": {"operationId": "stream.attach.get", "parameters": {"stream_id": "$response.header.X-Stream-Id"}},
        "cancel": {"operationId": "stream.cancel.delete", "parameters": {"stream_id": "$response.header.X-Stream-Id"}},
    }
}


def external_docs(config: Mapping[str, Any]) -> dict[tuple[str, str], Doc]:
    """(endpoint, method) -> Doc, for this config."""
    return _external_docs(bool(config["METRICS_TOKEN"]))


@lru_cache(maxsize=2)
def _external_docs(metrics_token: bool) -> dict[tuple[str, str], Doc]:
    start = {
        "responses": {200: EVENT_STREAM},
        "errors": (403, 404, 409, 422),
        "links": _STREAM_LINKS,
        "description": "403/404: conversation_id not yours / unknown; 409: stream_id in use; "
        "422 also for a model not in /api/v1/models and a cost cap below the prompt's cost.",
    }
    return {
        ("stream.start", "POST"): Doc("Start a stream (or attach to your own of that stream_id)",
                                      body=stream_request_schema, **start),
        ("stream.start", "GET"): Doc("Start a stream; the fields as query parameters", query=stream_request_schema,
                                     **{**start, "errors": (403, 404, 409, 414, 422)}),
        ("stream.attach", "GET"): Doc(
            "Attach to a stream: the events after Last-Event-ID, then live ones",
            {200: EVENT_STREAM, 204: NO_BODY},
            headers=_LAST_EVENT_ID,
            errors=(403, 404, 422),
            links=_STREAM_LINKS,
            description="204: a finished stream has nothing after Last-Event-ID; 422: Last-Event-ID past a live "
            "stream's last event, or not ASCII digits.",
        ),
        ("stream.cancel", "DELETE"): Doc("Cancel a stream: it ends with done, finish_reason cancelled",
                                         {202: CancelSchema}, errors=(403, 404)),
        ("health.health", "GET"): Doc("Liveness", {200: HealthSchema}),
        ("health.ready", "GET"): Doc("Readiness of Redis, the database, workers and the local model",
                                     {200: ReadySchema, 503: ReadySchema}),
        ("metrics.metrics", "GET"): Doc(
            "Prometheus metrics of every process" + (" (Bearer METRICS_TOKEN)" if metrics_token else ""),
            {200: ("text/plain", {"type": "string"})},
            errors=(401,) if metrics_token else (),
            security=({"metrics": []},) if metrics_token else (),
        ),
    }  # fmt: skip
