"""Shapes and fields every resource shares: the error body, whole-string patterns, query integers."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

_QUERY_INT = re.compile(r"-?[0-9]{1,18}")


class FullMatch(validate.Regexp):
    """A Regexp (documented as its pattern) that the whole value must match: `$` alone
    also matches before a trailing newline, which the document's pattern does not."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class QueryInteger(fields.Integer):
    """An integer from a query string: ASCII digits only (int() would also take ' 5', '1_0' or '٣')."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, str) and not _QUERY_INT.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class JsonInteger(fields.Integer):
    """A JSON integer: 5 or 5.0 (JSON Schema's `integer` holds both), never "5", true or 5.5."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "snake_case, e.g. rate_limited"})
    message = fields.String(required=True, metadata={"description": "for a person"})
    details = fields.Dict(required=True)
    request_id = fields.String(required=True, allow_none=True)


class ErrorSchema(Schema):
    """`{"error": {"code", "message", "details", "request_id"}}`: every 4xx and 5xx."""

    error = fields.Nested(ErrorDetailSchema, required=True)
