"""Anonymous sessions and the model list: requests and responses."""

from __future__ import annotations

from functools import lru_cache

from marshmallow import Schema, fields, validate

from .common import JsonInteger


@lru_cache(maxsize=4)
def _anon_session_schema(max_ttl: int) -> type[Schema]:
    class AnonSessionSchema(Schema):
        ttl_seconds = JsonInteger(validate=validate.Range(min=60, max=max_ttl))

    return AnonSessionSchema


def anon_session_schema(max_ttl: int) -> Schema:
    return _anon_session_schema(max_ttl)()


class AnonTokenSchema(Schema):
    token = fields.String(required=True)
    token_type = fields.String(required=True, validate=validate.OneOf(["Bearer"]))
    expires_at = fields.Integer(required=True, metadata={"description": "Unix time, seconds"})
    expires_in = fields.Integer(required=True, validate=validate.Range(min=0), metadata={"description": "seconds"})


class ModelSchema(Schema):
    id = fields.String(required=True)
    provider = fields.String(required=True, validate=validate.OneOf(["local", "openai", "anthropic"]))
    default = fields.Boolean(required=True)
    price_in_per_mtok = fields.Float(required=True, validate=validate.Range(min=0))
    price_out_per_mtok = fields.Float(required=True, validate=validate.Range(min=0))


class ModelListSchema(Schema):
    models = fields.List(fields.Nested(ModelSchema), required=True)
