"""Query strings: one schema per endpoint; an unknown or malformed parameter is 422.

`validate_query` runs before every view. Endpoints named here are checked;
views that load their own query with a schema (GET /api/v1/stream,
/admin/audit) are left to do so; endpoints nobody has named yet are not
touched, so a new blueprint must add its query schema here (or load one itself).
"""

from __future__ import annotations

from flask import request
from marshmallow import Schema, fields, validate

from . import load
from .common import FullMatch


class NoQuerySchema(Schema):
    """An endpoint that takes no query parameters."""


class AttachQuerySchema(Schema):
    last_event_id = fields.String(validate=FullMatch(r"^[0-9]{1,12}$"))


class ConversationListQuerySchema(Schema):
    user_id = fields.String(validate=validate.Length(min=1, max=300))


# endpoint -> its query schema; a method listed in VIEW_LOADED loads its own.
QUERY_SCHEMAS: dict[str, type[Schema]] = {
    "stream.start": NoQuerySchema,  # POST; GET carries the request itself (stream_request_schema)
    "stream.attach": AttachQuerySchema,
    "stream.cancel": NoQuerySchema,
    "conversations.list_all": ConversationListQuerySchema,
    "conversations.read": NoQuerySchema,
    "conversations.delete": NoQuerySchema,
    "usage.mine": NoQuerySchema,
    "sessions.anon_session": NoQuerySchema,
    "sessions.models": NoQuerySchema,
    "api_keys.create": NoQuerySchema,
    "api_keys.list_all": NoQuerySchema,
    "api_keys.revoke": NoQuerySchema,
    "openai.models": NoQuerySchema,
    "openai.model": NoQuerySchema,
    "openai.chat_completions": NoQuerySchema,
}
VIEW_LOADED = frozenset({("stream.start", "GET"), ("admin.audit_log", "GET")})


def validate_query() -> None:
    """before_request: 422 for a query string the endpoint does not take."""
    endpoint, method = request.endpoint, "GET" if request.method == "HEAD" else request.method
    if endpoint is None or method == "OPTIONS" or (endpoint, method) in VIEW_LOADED:
        return  # a CORS preflight names the real request's URL: its query is not the preflight's
    schema = QUERY_SCHEMAS.get(endpoint)
    if schema is not None:
        load(schema(), request.args)
