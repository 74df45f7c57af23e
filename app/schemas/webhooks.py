"""POST /webhooks/relay: the answer's shape (OpenAPI). The body itself is whatever the sender signed."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class WebhookReceivedSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(("accepted", "duplicate")))
    id = fields.String(metadata={"description": "the webhook-id, when accepted"})
