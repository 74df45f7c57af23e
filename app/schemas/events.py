"""What a stream sends: the `data` of each Server-Sent Event, and the cancel answer.

The document describes a `text/event-stream` body event by event (OpenAPI 3.2's
`itemSchema`): `event` names the kind, `id` counts from 1, and `data` is one line
of JSON of the schema below for that kind.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

FINISH_REASONS = ("stop", "length", "cost_cap", "cancelled")
_COUNT = validate.Range(min=0)


class StreamStartedSchema(Schema):
    stream_id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    model = fields.String(required=True)


class MessageChunkSchema(Schema):
    content = fields.String(required=True)
    index = fields.Integer(required=True, validate=_COUNT, metadata={"description": "from 0"})
    cost_usd = fields.Float(required=True, validate=_COUNT, metadata={"description": "cost so far"})


class TokenUsageSchema(Schema):
    prompt_tokens = fields.Integer(required=True, validate=_COUNT)
    completion_tokens = fields.Integer(required=True, validate=_COUNT)


class DoneSchema(Schema):
    finish_reason = fields.String(required=True, validate=validate.OneOf(FINISH_REASONS))
    usage = fields.Nested(TokenUsageSchema, required=True)
    cost_usd = fields.Float(required=True, validate=_COUNT)
    ttft_ms = fields.Integer(
        required=True, allow_none=True, validate=_COUNT, metadata={"description": "null: no chunk"}
    )
    duration_ms = fields.Integer(required=True, validate=_COUNT)
    message_id = fields.String(required=True, allow_none=True)


class StreamErrorSchema(Schema):
    error_code = fields.String(
        required=True,
        metadata={"description": "provider_error, stalled, no_worker, worker_lost, internal, dependency_unavailable…"},
    )
    detail = fields.String(required=True)
    retry_after = fields.Integer(required=True, allow_none=True, validate=_COUNT)


class HeartbeatSchema(Schema):
    ts = fields.Float(required=True, metadata={"description": "Unix time, seconds"})


# event name -> (its data, whether it carries an id: "always" | "never" | "optional")
EVENTS: dict[str, tuple[type[Schema], str]] = {
    "stream": (StreamStartedSchema, "always"),
    "message_chunk": (MessageChunkSchema, "always"),
    "done": (DoneSchema, "always"),
    # No id only when the API process lost the stream store mid-stream (it cannot know the next id).
    "error": (StreamErrorSchema, "optional"),
    "heartbeat": (HeartbeatSchema, "never"),
}


class CancelSchema(Schema):
    stream_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["cancelling"]))
