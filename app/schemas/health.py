"""Liveness and readiness answers."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

_OK_FAILED = validate.OneOf(["ok", "failed"])


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))
    version = fields.String(required=True)
    uptime_s = fields.Float(required=True, validate=validate.Range(min=0))
    secured = fields.Boolean(required=True)
    jwt_enabled = fields.Boolean(required=True)


class ReadyChecksSchema(Schema):
    redis = fields.String(required=True, validate=_OK_FAILED)
    database = fields.String(required=True, validate=_OK_FAILED)
    workers = fields.String(required=True, validate=validate.OneOf(["ok", "none"]))
    local_model = fields.String(required=True, validate=validate.OneOf(["ok", "failed", "none"]))


class ReadySchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready", "unavailable"]))
    checks = fields.Nested(ReadyChecksSchema, required=True)
