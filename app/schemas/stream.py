"""Stream requests: POST body or GET query, one set of rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from .common import FullMatch, JsonInteger

# Matched whole (FullMatch): `$` alone also matches before a trailing newline.
STREAM_ID = r"^[A-Za-z0-9_-]{8,64}$"
CONVERSATION_ID = r"^[A-Za-z0-9_-]{1,64}$"
# C0 controls but tab, newline and carriage return: no place in a chat message.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class StrictFloat(fields.Float):
    """A JSON number: a string or a boolean that would convert is still 422."""

    def _validated(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._validated(value)


@lru_cache(maxsize=8)
def _stream_schema(max_chars: int, max_cost: float, token_limit: int) -> type[Schema]:
    class StreamRequestSchema(Schema):
        message = fields.String(required=True, validate=validate.Length(min=1, max=max_chars))
        model = fields.String(validate=validate.Length(min=1, max=100))
        conversation_id = fields.String(validate=FullMatch(CONVERSATION_ID))
        stream_id = fields.String(validate=FullMatch(STREAM_ID))
        cost_cap_usd = StrictFloat(allow_nan=False, validate=validate.Range(min=0, max=max_cost, min_inclusive=False))
        max_tokens = JsonInteger(validate=validate.Range(min=1, max=token_limit))

        @validates("message")
        def not_blank(self, value: str, **_: Any) -> None:
            if not value.strip():
                raise ValidationError("Must not be only white space.")
            if _CONTROL.search(value):
                raise ValidationError("Must not contain control characters other than tab, newline and return.")

    return StreamRequestSchema


def stream_request_schema(config: Mapping[str, Any]) -> Schema:
    return _stream_schema(config["MAX_MESSAGE_CHARS"], config["MAX_COST_CAP_USD"], config["MAX_TOKENS_PER_REQUEST"])()


# Query numbers are ASCII only: int() and float() would also take " 5", "1_0", "٣" or "1e-1 ".
_QUERY_NUMBERS = {
    "max_tokens": (re.compile(r"[0-9]{1,18}"), int),
    "cost_cap_usd": (re.compile(r"[0-9]{1,18}(\.[0-9]{1,18})?([eE][-+]?[0-9]{1,3})?"), float),
}


def from_query(args: Mapping[str, str]) -> dict[str, Any]:
    """Query parameters with numeric fields converted; what does not convert stays a string (422)."""
    data: dict[str, Any] = dict(args.items())
    for name, (pattern, kind) in _QUERY_NUMBERS.items():
        if name in data and pattern.fullmatch(data[name]):
            data[name] = kind(data[name])
    return data
