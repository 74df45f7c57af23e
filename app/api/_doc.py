"""`@doc(...)`: what an operation takes and answers, declared next to its view.

Put it right under the route decorator (one per method when a view serves
several). It names the schemas the view loads and its own answers; what every
operation of a kind answers is added by app/api/openapi.py from the route
itself: 401/403/429/503 and the bearer scopes from `require_scopes`,
400/413/415/422 from a JSON body, 422 from a query schema, 429/503 and the
X-RateLimit-* headers from the global limit. A route without `@doc` fails
tests/api/test_openapi.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from marshmallow import Schema

F = TypeVar("F", bound=Callable[..., Any])
EVENT_STREAM = "text/event-stream"  # a response value: the stream's events (app/schemas/events.py)
NO_BODY = None  # a response value: no body (204)


@dataclass(frozen=True)
class Content:
    """A response value of several media types: {media type: its OpenAPI media type object}."""

    media: Mapping[str, dict[str, Any]]


# A schema class or instance, a function of the app's config that returns one, or plain JSON Schema.
SchemaSource = type[Schema] | Schema | Callable[[Mapping[str, Any]], Schema] | dict[str, Any]


@dataclass(frozen=True)
class Doc:
    """One operation: `responses` maps each success status to a schema, EVENT_STREAM, NO_BODY
    or (media type, JSON Schema); `errors` are the view's own error statuses (403 not yours,
    404, 409, ...); `links` maps a status to OpenAPI links (for schemathesis' stateful phase)."""

    summary: str
    responses: Mapping[int, Any]
    body: SchemaSource | None = None
    body_required: bool = True
    query: SchemaSource | None = None
    headers: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # request headers the view reads
    response_headers: Mapping[int, Mapping[str, dict[str, Any]]] = field(default_factory=dict)  # beyond the usual
    errors: tuple[int, ...] = ()
    links: Mapping[int, Mapping[str, dict[str, Any]]] = field(default_factory=dict)
    security: tuple[dict[str, list[str]], ...] = ()  # only for credentials `require_scopes` does not check
    description: str = ""
    error_schema: SchemaSource | None = None  # the errors' shape when not the contract's (/v1: OpenAI's)
    error_statuses: Mapping[int, int] = field(default_factory=dict)  # a status answered as another (/v1: 422 as 400)


def doc(summary: str, responses: Mapping[int, Any], *, method: str | None = None, **options: Any) -> Callable[[F], F]:
    """Attach a Doc to a view (for `method` only when the view serves several)."""

    def decorator(view: F) -> F:
        docs = view.__dict__.setdefault("openapi", {})
        docs[method.upper() if method else "*"] = Doc(summary, responses, **options)
        return view

    return decorator


def doc_of(view: Callable[..., Any], method: str) -> Doc | None:
    """The Doc a view declared for `method`."""
    docs = getattr(view, "openapi", {})
    return docs.get(method) or docs.get("*")
