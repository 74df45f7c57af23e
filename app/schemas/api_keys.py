"""API keys: the creation request, a key as its tenant sees it, and the one-time key."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..principal import SCOPES
from .common import FullMatch

_SCOPE = fields.String(validate=validate.OneOf(sorted(SCOPES)))


class CreateKeySchema(Schema):
    name = fields.String(required=True, validate=FullMatch(r"^[^\x00-\x1f\x7f]{1,100}$"))
    scopes = fields.List(_SCOPE, required=True, validate=validate.Length(min=1, max=len(SCOPES)))


class ApiKeySchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    prefix = fields.String(required=True, metadata={"description": "enough to tell keys apart, never the key"})
    scopes = fields.List(_SCOPE, required=True)
    tenant_id = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(required=True, allow_none=True)
    revoked_at = fields.DateTime(required=True, allow_none=True)


class NewApiKeySchema(ApiKeySchema):
    key = fields.String(required=True, validate=FullMatch(r"^relay_sk_[A-Za-z0-9_-]{43,128}$"),
                        metadata={"description": "shown once"})  # fmt: skip


class ApiKeyListSchema(Schema):
    api_keys = fields.List(fields.Nested(ApiKeySchema), required=True)
    count = fields.Integer(required=True, validate=validate.Range(min=0))
