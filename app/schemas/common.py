"""Shapes every endpoint shares: the error body, for the OpenAPI document."""

from __future__ import annotations

from marshmallow import Schema, fields


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "snake_case, e.g. rate_limited"})
    message = fields.String(required=True, metadata={"description": "for a person"})
    details = fields.Dict(required=True)
    request_id = fields.String(required=True, allow_none=True)


class ErrorSchema(Schema):
    """`{"error": {"code", "message", "details", "request_id"}}`: every 4xx and 5xx."""

    error = fields.Nested(ErrorDetailSchema, required=True)
