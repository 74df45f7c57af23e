"""GET /openapi.json: an OpenAPI 3 document generated from the marshmallow schemas.

Every route of the app is listed (a route without an entry in `_OPERATIONS`
still appears, with its path parameters and the error responses), so the
document never silently misses an endpoint; request bodies and query strings
come from the same schema classes the views load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app
from marshmallow import Schema

from .. import __version__
from ..schemas.common import ErrorSchema
from ..schemas.query import QUERY_SCHEMAS, VIEW_LOADED
from ..schemas.sessions import anon_session_schema
from ..schemas.stream import CONVERSATION_ID, STREAM_ID, stream_request_schema

bp = Blueprint("openapi", __name__)

_ERRORS = {
    "400": "Malformed JSON",
    "401": "Missing or invalid credentials",
    "403": "Forbidden or insufficient scope",
    "404": "Not found",
    "409": "Conflict",
    "413": "Body too large",
    "415": "Body is not JSON",
    "422": "Validation error (unknown fields included)",
    "429": "rate_limited, quota_exceeded or budget_exceeded, with Retry-After",
    "503": "dependency_unavailable, with Retry-After",
}
_PATH_PATTERNS = {"stream_id": STREAM_ID, "conversation_id": CONVERSATION_ID, "key_id": r"^[A-Za-z0-9_-]{1,64}$"}
_SKIP = frozenset({"static", "openapi.document", "widget.index"})


@dataclass(frozen=True)
class Operation:
    summary: str
    body: str | None = None  # name of a component schema (JSON body)
    query: str | None = None  # name of a component schema (query parameters)
    secured: bool = True
    event_stream: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("sessions.anon_session", "POST"): Operation("Mint an anonymous session token", body="AnonSession", secured=False),
    ("sessions.models", "GET"): Operation("The available models", secured=False),
    ("stream.start", "POST"): Operation("Start (or attach to) a stream", body="StreamRequest", event_stream=True),
    ("stream.start", "GET"): Operation("Start a stream; the fields as query parameters", query="StreamRequest",
                                       event_stream=True),
    ("stream.attach", "GET"): Operation("Attach to a stream; events after Last-Event-ID", event_stream=True),
    ("stream.cancel", "DELETE"): Operation("Cancel a stream"),
    ("conversations.list_all", "GET"): Operation("The caller's conversations"),
    ("conversations.read", "GET"): Operation("One conversation with its messages"),
    ("conversations.delete", "DELETE"): Operation("Delete a conversation"),
    ("api_keys.create", "POST"): Operation("Create an API key (shown once)", body="CreateKey"),
    ("api_keys.list_all", "GET"): Operation("The tenant's API keys"),
    ("api_keys.revoke", "DELETE"): Operation("Revoke an API key"),
    ("admin.audit_log", "GET"): Operation("The tenant's security events", query="AuditQuery"),
    ("usage.mine", "GET"): Operation("The caller's requests, quotas and spend today"),
    ("usage.tenant", "GET"): Operation("The tenant's requests, tokens and spend by day and model", query="AdminUsageQuery"),
    ("health.health", "GET"): Operation("Liveness", secured=False),
    ("health.ready", "GET"): Operation("Readiness of Redis, the database and workers", secured=False),
    ("metrics.metrics", "GET"): Operation("Prometheus metrics (Bearer METRICS_TOKEN when set)", secured=False),
}  # fmt: skip


def _component_schemas(app: Flask) -> dict[str, Schema | type[Schema]]:
    from .admin import AuditQuerySchema
    from .api_keys import CreateKeySchema
    from .usage import AdminUsageQuerySchema

    config = app.config
    schemas: dict[str, Schema | type[Schema]] = {
        "Error": ErrorSchema,
        "StreamRequest": stream_request_schema(config),
        "AnonSession": anon_session_schema(config["ANON_TOKEN_MAX_TTL"]),
        "CreateKey": CreateKeySchema,
        "AuditQuery": AuditQuerySchema,
        "AdminUsageQuery": AdminUsageQuerySchema,
    }
    for schema in QUERY_SCHEMAS.values():
        schemas.setdefault(schema.__name__.removesuffix("Schema"), schema)
    return schemas


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    names = re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule)
    path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)
    parameters = [
        {"in": "path", "name": name, "required": True,
         "schema": {"type": "string", "pattern": _PATH_PATTERNS.get(name, r"^[^/]+$")}}
        for name in names
    ]  # fmt: skip
    return path, parameters


def _operation(
    endpoint: str, method: str, parameters: list[dict[str, Any]], schemas: dict[str, Schema | type[Schema]]
) -> dict[str, Any]:
    known = _OPERATIONS.get((endpoint, method), Operation(endpoint))
    query = known.query
    if query is None and (endpoint, method) not in VIEW_LOADED and endpoint in QUERY_SCHEMAS:
        query = QUERY_SCHEMAS[endpoint].__name__.removesuffix("Schema")
    operation: dict[str, Any] = {"operationId": f"{endpoint}.{method.lower()}", "summary": known.summary}
    params = list(parameters)
    if query:
        params.append({"in": "query", "schema": schemas[query]})
    if endpoint == "stream.attach":
        params.append({"in": "header", "name": "Last-Event-ID", "schema": {"type": "string", "pattern": r"^\d{1,12}$"}})
    if params:
        operation["parameters"] = params
    if known.body:
        operation["requestBody"] = {"required": known.body != "AnonSession",
                                    "content": {"application/json": {"schema": schemas[known.body]}}}  # fmt: skip
    content = {"text/event-stream": {"schema": {"type": "string"}}} if known.event_stream else None
    success = {"description": "OK", **({"content": content} if content else {})}
    operation["responses"] = {"200": success, **{status: {"$ref": f"#/components/responses/{status}"}
                                                 for status in _ERRORS}}  # fmt: skip
    if known.secured:
        operation["security"] = [{"bearer": []}]
    return operation


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3 document of `app`'s routes."""
    spec = APISpec(
        title="Relay",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "A security-hardened streaming gateway for LLM chat (see API.md)."},
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    schemas = _component_schemas(app)
    for name, schema in schemas.items():
        spec.components.schema(name, schema=schema)
    for status, description in _ERRORS.items():
        spec.components.response(status, {"description": description,
                                           "content": {"application/json": {"schema": ErrorSchema}}})  # fmt: skip
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in _SKIP:
            continue
        path, parameters = _path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule.endpoint, method, parameters, schemas)
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@bp.get("/openapi.json")
def document():
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    cached = app.extensions.get("relay.openapi")
    if cached is None:
        cached = app.extensions["relay.openapi"] = build_document(app)
    return cached
