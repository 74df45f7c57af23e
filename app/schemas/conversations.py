"""Conversations: the list, one conversation with its messages."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class ConversationSummarySchema(Schema):
    id = fields.String(required=True)
    title = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    message_count = fields.Integer(required=True, validate=validate.Range(min=0))


class ConversationListSchema(Schema):
    conversations = fields.List(fields.Nested(ConversationSummarySchema), required=True)
    count = fields.Integer(required=True, validate=validate.Range(min=0))


class MessageUsageSchema(Schema):
    prompt_tokens = fields.Integer(required=True, allow_none=True)
    completion_tokens = fields.Integer(required=True, allow_none=True)
    cost_usd = fields.Float(required=True, allow_none=True)


class MessageSchema(Schema):
    id = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(["user", "assistant"]))
    content = fields.String(required=True)
    model = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    usage = fields.Nested(
        MessageUsageSchema, required=True, allow_none=True, metadata={"description": "assistant only"}
    )


class ConversationSchema(ConversationSummarySchema):
    messages = fields.List(fields.Nested(MessageSchema), required=True)
