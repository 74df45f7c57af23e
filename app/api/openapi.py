"""GET /openapi.json: the OpenAPI 3.2 document of every route, from the marshmallow schemas.

Each operation's own part comes from its `@doc` (app/api/_doc.py): the schemas
its view loads and its answers. What every operation of a kind answers is
derived here from the route, so it cannot drift from the code that answers it:
`require_scopes` gives the bearer scheme with its scopes and 401/403/429/503; a
JSON body gives 400/413/415/422; a query schema (app/schemas/query.py or the
view's own) gives its parameters and 422; the global limit gives 429/503 and the
X-RateLimit-* headers everywhere but /health* and /metrics. Server-Sent Events
are described event by event (`itemSchema`, app/schemas/events.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app
from marshmallow import Schema, validate
from werkzeug.routing import Rule

from .. import __version__
from ..schemas.common import ErrorSchema
from ..schemas.events import EVENTS
from ..schemas.query import QUERY_SCHEMAS, VIEW_LOADED
from ._doc import EVENT_STREAM, Content, Doc, doc_of
from ._doc_external import external_docs

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.2.0"  # 3.2: `itemSchema` describes a text/event-stream event by event
SKIP = frozenset({"static", "openapi.document", "widget.index"})  # not API: files, this document, a redirect
_STATUS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Malformed JSON",
    401: "Missing or invalid credentials",
    403: "Forbidden: not yours, insufficient_scope or user_not_allowed",
    404: "Not found",
    409: "Conflict",
    413: "Body larger than MAX_CONTENT_LENGTH",
    414: "Request line longer than gunicorn's limit_request_line (a long message in the query string)",
    415: "Body is not JSON (Content-Type: application/json)",
    422: "Validation error (unknown fields and query parameters included)",
    429: "rate_limited, quota_exceeded or budget_exceeded; details.limit names the limit",
    502: "The model's provider failed, or its answer was no plan (provider_error, plan_unparseable)",
    503: "dependency_unavailable (Redis, the database or the broker)",
    504: "No worker's answer in time (plan_timeout)",
}
_DIGITS = {"type": "string", "pattern": "^[0-9]+$"}
_HEADERS = {
    "X-Request-ID": {"required": True, "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"},
                     "description": "The client's sane X-Request-ID, echoed, or a new one"},
    "Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
                    "description": "Whole seconds, at least 1"},
    "WWW-Authenticate": {"required": True, "schema": {"type": "string", "pattern": '^Bearer realm="relay"'},
                         "description": "RFC 6750"},
    "X-RateLimit-Limit": {"schema": _DIGITS, "description": "The most constraining limit that applied"},
    "X-RateLimit-Remaining": {"schema": _DIGITS, "description": "Requests left in its window"},
    "X-RateLimit-Reset": {"schema": _DIGITS, "description": "Unix time its window frees a request"},
}  # fmt: skip
_PATH_PATTERNS = {
    "stream_id": r"^[A-Za-z0-9_-]{8,64}$",
    "conversation_id": r"^[A-Za-z0-9_-]{1,64}$",
    "key_id": r"^[A-Za-z0-9_-]{1,64}$",
}
UNDOCUMENTED = "x-relay-undocumented"
_RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _limited(path: str) -> bool:
    """Whether the global limit applies (app/limits/_flask.py exempts /health, /health/* and /metrics)."""
    return not (path in ("/health", "/metrics") or path.startswith("/health/"))


def _exclusive_bounds(_converter: Any, field: Any, ret: dict[str, Any], **_: Any) -> dict[str, Any]:
    """apispec writes `minimum` for `Range(min_inclusive=False)`: make the bound exclusive."""
    extra: dict[str, Any] = {}
    for validator in field.validators:
        if isinstance(validator, validate.Range):
            if validator.min is not None and not validator.min_inclusive:
                ret.pop("minimum", None)
                extra["exclusiveMinimum"] = validator.min
            if validator.max is not None and not validator.max_inclusive:
                ret.pop("maximum", None)
                extra["exclusiveMaximum"] = validator.max
    return extra


def _schema(source: Any, config: Mapping[str, Any]) -> Schema | type[Schema] | dict[str, Any]:
    if isinstance(source, Schema | dict) or (isinstance(source, type) and issubclass(source, Schema)):
        return source
    return source(config)


def _event_item_schema() -> dict[str, Any]:
    """One Server-Sent Event as a client parses it: `event`, `id` (kept from the last one when absent), `data`."""
    variants = []
    for name, (schema, id_rule) in EVENTS.items():
        component = schema.__name__.removesuffix("Schema")
        data = {"type": "string", "contentMediaType": "application/json",
                "contentSchema": {"$ref": f"#/components/schemas/{component}"}}  # fmt: skip
        properties = {"event": {"const": name}, "id": {"type": "string", "pattern": "^[1-9][0-9]*$"}, "data": data}
        required = ["event", "data", *(["id"] if id_rule == "always" else [])]
        variants.append({"type": "object", "properties": properties, "required": required,
                         "additionalProperties": False})  # fmt: skip
    return {"oneOf": variants}


def _headers(status: int, limited: bool, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    names = ["X-Request-ID"]
    if status in (429, 503):
        names.append("Retry-After")
    if status == 401 and not (extra and "WWW-Authenticate" in extra):
        names.append("WWW-Authenticate")
    if limited:
        names += ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]
    return {**{name: {"$ref": f"#/components/headers/{name}"} for name in names}, **(extra or {})}


def _success(status: int, answer: Any, limited: bool, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _STATUS.get(status, "OK")}
    if answer == EVENT_STREAM:
        response["content"] = {EVENT_STREAM: {"itemSchema": {"$ref": "#/components/schemas/StreamEvent"}}}
        extra = {
            **(extra or {}),
            "X-Stream-Id": {"required": True, "schema": {"type": "string", "pattern": _PATH_PATTERNS["stream_id"]}},
            "Cache-Control": {"required": True, "schema": {"const": "no-cache"}},
            "X-Accel-Buffering": {"required": True, "schema": {"const": "no"}},
        }
    elif isinstance(answer, tuple):
        response["content"] = {answer[0]: {"schema": answer[1]}}
    elif isinstance(answer, Content):
        response["content"] = {media: dict(item) for media, item in answer.media.items()}
    elif answer is not None:
        response["content"] = {"application/json": {"schema": answer}}
    response["headers"] = _headers(status, limited, extra)
    return response


def _operation(app: Flask, rule: Rule, method: str, doc: Doc) -> dict[str, Any]:
    config, endpoint = app.config, rule.endpoint
    limited = _limited(rule.rule)
    scopes = getattr(app.view_functions[endpoint], "required_scopes", None)
    parameters: list[dict[str, Any]] = [
        {"in": "path", "name": name, "required": True,
         "schema": {"type": "string", "pattern": _PATH_PATTERNS.get(name, "^[^/]+$")}}
        for name in _RULE_ARGUMENT.findall(rule.rule)
    ]  # fmt: skip
    query = doc.query
    if query is None and (endpoint, method) not in VIEW_LOADED:
        query = QUERY_SCHEMAS.get(endpoint)
    if query is not None:
        parameters.append({"in": "query", "schema": _schema(query, config)})
    parameters += [{"in": "header", "name": name, **header} for name, header in doc.headers.items()]
    errors = set(doc.errors)
    if limited:
        errors |= {429, 503}
    if scopes is not None:
        errors |= {401, 403, 429, 503}
    if doc.body is not None:
        errors |= {400, 413, 415, 422}
    if query is not None:
        errors.add(422)
    errors = {doc.error_statuses.get(status, status) for status in errors}
    responses = {
        str(status): _success(status, answer, limited, doc.response_headers.get(status))
        for status, answer in doc.responses.items()
    }
    for status, links in doc.links.items():
        responses[str(status)]["links"] = dict(links)
    for status in sorted(errors):
        headers = _headers(status, limited, doc.response_headers.get(status))
        responses[str(status)] = {"description": _STATUS[status], "headers": headers,
                                  "content": {"application/json": {"schema": doc.error_schema or ErrorSchema}}}  # fmt: skip
    operation: dict[str, Any] = {
        "operationId": f"{endpoint}.{method.lower()}",
        "summary": doc.summary,
        "tags": [endpoint.split(".")[0]],
        "responses": dict(sorted(responses.items())),
    }
    if doc.description:
        operation["description"] = doc.description
    if parameters:
        operation["parameters"] = parameters
    if doc.body is not None:
        operation["requestBody"] = {"required": doc.body_required,
                                    "content": {"application/json": {"schema": _schema(doc.body, config)}}}  # fmt: skip
    if doc.security:
        operation["security"] = list(doc.security)
    if scopes is not None:
        # OpenAPI 3.1+ lets a requirement of any scheme name the roles it needs: here, Relay's scopes.
        operation["security"] = [{"bearer": sorted(scopes)}]
    return operation


def _documented(app: Flask, rule: Rule, method: str) -> Doc | None:
    return doc_of(app.view_functions[rule.endpoint], method) or external_docs(app.config).get((rule.endpoint, method))


def undocumented(app: Flask) -> list[str]:
    """Routes (endpoint and method) without a `@doc`: each must get one."""
    return sorted(
        f"{method} {rule.rule} ({rule.endpoint})"
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in SKIP
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
        if _documented(app, rule, method) is None
    )


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of `app`'s routes (its config decides limits, models and patterns)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Relay",
        version=__version__,
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": "A security-hardened streaming gateway for LLM chat. Errors: "
                             '{"error": {"code", "message", "details", "request_id"}}.'},
    )  # fmt: skip
    plugin.converter.add_attribute_function(_exclusive_bounds)
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "A user JWT, an anonymous token or an API key"}
    )
    if app.config["METRICS_TOKEN"]:
        spec.components.security_scheme("metrics", {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN"})
    for name, header in _HEADERS.items():
        spec.components.header(name, header)
    spec.components.schema("Error", schema=ErrorSchema)
    for schema, _ in EVENTS.values():
        spec.components.schema(schema.__name__.removesuffix("Schema"), schema=schema)
    spec.components.schema("StreamEvent", _event_item_schema())
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SKIP:
            continue
        path = _RULE_ARGUMENT.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            doc = _documented(app, rule, method)
            operation = _operation(app, rule, method, doc or Doc(f"{rule.endpoint}: not described yet", {}))
            if doc is None:
                operation[UNDOCUMENTED] = True  # listed, never silently missing; its view needs a @doc
            paths.setdefault(path, {})[method.lower()] = operation
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    _refine_stream_request(document, list(app.extensions["relay.streams"].catalog.models))
    return document


# `message` is 1..MAX_MESSAGE_CHARS characters, not only white space (str.strip()'s) and without C0
# controls but tab, newline and return: at least one character that is neither, and none of the
# controls. tests/api/test_openapi.py proves it agrees with the schema's validator, character by character.
_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f"
_NOT_BLANK = r"\x00-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
MESSAGE_PATTERN = f"^[^{_CONTROLS}]*[^{_NOT_BLANK}][^{_CONTROLS}]*$"


def _refine_stream_request(document: dict[str, Any], models: list[str]) -> None:
    """What the stream request's validators check beyond their fields: the catalog's models
    (app/streams/service.py answers 422 for others) and the message's characters."""
    refinements = {"model": {"enum": models}, "message": {"pattern": MESSAGE_PATTERN}}
    properties = document["components"]["schemas"]["StreamRequest"]["properties"]
    for name, extra in refinements.items():
        properties[name].update(extra)
    for parameter in document["paths"]["/api/v1/stream"]["get"].get("parameters", []):
        if parameter["in"] == "query" and parameter["name"] in refinements:
            parameter["schema"].update(refinements[parameter["name"]])


@bp.get("/openapi.json")
def document():
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    cached = app.extensions.get("relay.openapi")
    if cached is None:
        cached = app.extensions["relay.openapi"] = build_document(app)
    return cached
