"""Anonymous session requests."""

from __future__ import annotations

from functools import lru_cache

from marshmallow import Schema, fields, validate


@lru_cache(maxsize=4)
def _anon_session_schema(max_ttl: int) -> type[Schema]:
    class AnonSessionSchema(Schema):
        ttl_seconds = fields.Integer(strict=True, validate=validate.Range(min=60, max=max_ttl))

    return AnonSessionSchema


def anon_session_schema(max_ttl: int) -> Schema:
    return _anon_session_schema(max_ttl)()
