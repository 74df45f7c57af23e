"""Docs of views that do not carry `@doc` yet (their modules belong to other work in flight):
move each onto its view as `@doc(...)` and delete it here. app/api/openapi.py reads both."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ..schemas.actions import (
    ActionCreatedSchema,
    ActionListSchema,
    CreateActionSchema,
    DeliveryListQuerySchema,
    DeliveryListSchema,
    DeliveryQueuedSchema,
    DeliverySchema,
    ExecuteSchema,
)
from ..schemas.events import CancelSchema
from ..schemas.health import HealthSchema, ReadySchema
from ..schemas.query import NoQuerySchema
from ..schemas.stream import stream_request_schema
from ..schemas.webhooks import WebhookReceivedSchema
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


_NO_STORE = {"Cache-Control": {"required": True, "schema": {"const": "no-store"}}}
_ACTION_LINKS = {
    "delete": {"operationId": "actions.delete.delete", "parameters": {"name": "$response.body#/name"}},
    "rotate_secret": {"operationId": "actions.rotate_secret.post", "parameters": {"name": "$response.body#/name"}},
}
_DELIVERY_LINKS = {
    "read": {"operationId": "actions.read_delivery.get", "parameters": {"delivery_id": "$response.body#/delivery_id"}},
    "redeliver": {"operationId": "actions.redeliver.post",
                  "parameters": {"delivery_id": "$response.body#/delivery_id"}},
}  # fmt: skip
_SIGNATURE = {
    "webhook-id": {"schema": {"type": "string"}, "description": "Standard Webhooks"},
    "webhook-timestamp": {"schema": {"type": "string"}, "description": "Unix time, seconds"},
    "webhook-signature": {"schema": {"type": "string"}, "description": "v1,<base64 HMAC-SHA256>, space-separated"},
}
_WEBHOOK_CHALLENGE = {"WWW-Authenticate": {"required": True, "schema": {"const": 'Standard-Webhooks realm="relay"'}}}


def _actions() -> dict[tuple[str, str], Doc]:
    return {
        ("actions.create", "POST"): Doc("Register an action (a webhook receiver); its secret is shown once",
                                        {201: ActionCreatedSchema}, body=CreateActionSchema, errors=(409,),
                                        response_headers={201: _NO_STORE}, links={201: _ACTION_LINKS},
                                        description="409 action_exists; 422 also for a URL Relay may not deliver to."),
        ("actions.list_all", "GET"): Doc("The tenant's actions", {200: ActionListSchema}, query=NoQuerySchema),
        ("actions.delete", "DELETE"): Doc("Delete an action (its deliveries stay listed)", {204: NO_BODY},
                                          query=NoQuerySchema, errors=(404,)),
        ("actions.rotate_secret", "POST"): Doc("A new secret (the old one signs for SECRET_ROTATION_SECONDS)",
                                               {200: ActionCreatedSchema}, query=NoQuerySchema, errors=(404,),
                                               response_headers={200: _NO_STORE}),
        ("actions.execute", "POST"): Doc("Queue a signed delivery of an action", {202: DeliveryQueuedSchema},
                                         body=ExecuteSchema, errors=(404, 409), links={202: _DELIVERY_LINKS},
                                         description="404: no such action; 409: the idempotency key named "
                                         "another action or payload."),
        ("actions.read_delivery", "GET"): Doc("A delivery with its attempts", {200: DeliverySchema},
                                              query=NoQuerySchema, errors=(404,)),
        ("actions.list_deliveries", "GET"): Doc("The tenant's deliveries, newest first", {200: DeliveryListSchema},
                                                query=DeliveryListQuerySchema),
        ("actions.redeliver", "POST"): Doc("Queue a failed or dead delivery again", {202: DeliveryQueuedSchema},
                                           query=NoQuerySchema, errors=(404, 409)),
        ("webhooks.relay", "POST"): Doc(
            "A signed webhook to Relay (Standard Webhooks; the signature is the credential)",
            {200: WebhookReceivedSchema},
            body={"type": "object"},
            query=NoQuerySchema,
            headers=_SIGNATURE,
            errors=(400, 401, 413, 422, 503),
            response_headers={401: _WEBHOOK_CHALLENGE},
            description="401 missing_signature, invalid_signature or stale_timestamp; 503 webhook_not_configured "
            "without WEBHOOK_SIGNING_SECRET; 200 status duplicate for a webhook-id seen before.",
        ),
    }  # fmt: skip


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
        **_actions(),
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
