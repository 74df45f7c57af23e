"""Actions and deliveries: request bodies, the listing's query, and the response shapes (OpenAPI)."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from marshmallow import Schema, ValidationError, fields, post_load, validate

from ..db.actions import DELIVERY_STATUSES
from .common import FullMatch, QueryInteger

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
DELIVERY_ID = r"^[0-9a-f]{32}$"
MAX_DELIVERIES_PAGE = 100
_PRINTABLE = r"^[\x21-\x7e][\x20-\x7e]{0,199}$"


class CreateActionSchema(Schema):
    name = fields.String(required=True, validate=FullMatch(SLUG, error="A lower-case slug: a-z, 0-9, - and _."))
    url = fields.String(required=True, validate=validate.Length(min=1, max=2048))
    description = fields.String(load_default="", validate=FullMatch(r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]{0,500}$"))


class ExecuteSchema(Schema):
    action = fields.String(required=True, validate=FullMatch(SLUG))
    payload = fields.Dict(required=True, keys=fields.String())
    idempotency_key = fields.String(validate=FullMatch(_PRINTABLE, error="1 to 200 printable ASCII characters."))


def encode_cursor(created_at: str, delivery_id: str) -> str:
    """The opaque cursor after a row: its creation time and id."""
    return base64.urlsafe_b64encode(f"{created_at}|{delivery_id}".encode()).decode().rstrip("=")


class CursorField(fields.String):
    """Decodes the opaque cursor into (created_at, id)."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            at, _, delivery_id = raw.partition("|")
            when = datetime.fromisoformat(at.replace("Z", "+00:00"))
            FullMatch(DELIVERY_ID)(delivery_id)
        except (binascii.Error, UnicodeDecodeError, ValueError, ValidationError):
            raise ValidationError("Not a cursor this server gave out.") from None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)), delivery_id


class DeliveryListQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))
    action = fields.String(validate=FullMatch(SLUG))
    cursor = CursorField()
    limit = QueryInteger(load_default=50, validate=validate.Range(min=1, max=MAX_DELIVERIES_PAGE))

    @post_load
    def _none_for_missing(self, data, **_):
        return {"status": None, "action": None, "cursor": None, **data}


# -- response shapes (documentation) ---------------------------------------------------------
class ActionSchema(Schema):
    name = fields.String(required=True)
    url = fields.String(required=True)
    description = fields.String(required=True)
    created_at = fields.String(required=True)
    secret_rotated_at = fields.String(allow_none=True)
    previous_secret_expires_at = fields.String(allow_none=True)


class ActionCreatedSchema(ActionSchema):
    secret = fields.String(required=True, metadata={"description": "whsec_…, shown once"})


class ActionListSchema(Schema):
    actions = fields.List(fields.Nested(ActionSchema), required=True)
    count = fields.Integer(required=True)


class DeliveryQueuedSchema(Schema):
    delivery_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(DELIVERY_STATUSES))


class AttemptSchema(Schema):
    number = fields.Integer(required=True)
    at = fields.String(required=True)
    status_code = fields.Integer(allow_none=True)
    duration_ms = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    response_excerpt = fields.String(allow_none=True)


class DeliverySchema(DeliveryQueuedSchema):
    action = fields.String(required=True)
    payload = fields.Dict(required=True)
    idempotency_key = fields.String(allow_none=True)
    plan_id = fields.String(allow_none=True)
    attempt_count = fields.Integer(required=True)
    next_attempt_at = fields.String(allow_none=True)
    last_error = fields.String(allow_none=True)
    result = fields.Raw(allow_none=True)
    result_at = fields.String(allow_none=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    completed_at = fields.String(allow_none=True)
    attempts = fields.List(fields.Nested(AttemptSchema))


class DeliveryListSchema(Schema):
    deliveries = fields.List(fields.Nested(DeliverySchema), required=True)
    count = fields.Integer(required=True)
    next_cursor = fields.String(allow_none=True)
