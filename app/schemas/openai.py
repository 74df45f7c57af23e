"""The OpenAI-compatible API (/v1): the chat completion request, its answers, its error shape.

The request schema is what app/openai_compat validates with (400 naming the
`param` at fault) and what the OpenAPI document shows; what only a parameter's
name decides (tools, n > 1, a non-text content part, ...) is refused before it,
as `unsupported_parameter`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from .common import JsonInteger
from .stream import StrictFloat

ROLES = ("system", "user", "assistant")
MAX_STOP_SEQUENCES = 4  # OpenAI's own bound on `stop`
# C0 controls but tab, newline and return: as in a stream's message (and PostgreSQL cannot store NUL).
TEXT_PATTERN = "^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"
_TEXT = validate.Regexp(TEXT_PATTERN)
FINISH_REASONS = ("stop", "length")
RELAY_FINISH_REASONS = ("stop", "length", "cost_cap", "cancelled")


class StrictBoolean(fields.Boolean):
    """A JSON boolean: "true", 1 or "yes" are refused, as OpenAI does."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictString(fields.String):
    """A JSON string within `max_chars` characters, without C0 controls but tab, newline and return."""

    def __init__(self, max_chars: int | None = None, **kwargs: Any) -> None:
        validators = [_TEXT] + ([validate.Length(max=max_chars)] if max_chars else [])
        super().__init__(validate=validators, **kwargs)


def _text_part(max_chars: int) -> dict[str, Any]:
    text = {"type": "string", "maxLength": max_chars, "pattern": TEXT_PATTERN}
    return {"type": "object", "required": ["type", "text"], "additionalProperties": False,
            "properties": {"type": {"type": "string", "enum": ["text"]}, "text": text}}  # fmt: skip


class MessageContent(fields.Field):
    """A message's content: a string, or a list of text parts (`{"type": "text", "text"}`),
    joined into one string with newlines."""

    def __init__(self, max_chars: int, **kwargs: Any) -> None:
        text = {"type": "string", "maxLength": max_chars, "pattern": TEXT_PATTERN}
        parts = {"type": "array", "items": _text_part(max_chars)}
        super().__init__(metadata={"oneOf": [text, parts]}, **kwargs)
        self.text = fields.String(validate=[_TEXT, validate.Length(max=max_chars)])

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, str):
            return self.text.deserialize(value)
        if not isinstance(value, list):
            raise ValidationError("Must be a string or a list of text parts.")
        texts = []
        for index, part in enumerate(value):
            if not isinstance(part, dict) or set(part) != {"type", "text"} or part["type"] != "text":
                raise ValidationError(f'Part {index} must be {{"type": "text", "text": "..."}}.')
            texts.append(self.text.deserialize(part["text"]))
        return "\n".join(texts)


class StopSequences(fields.Field):
    """`stop`: a string or up to four strings, none empty."""

    def __init__(self, **kwargs: Any) -> None:
        one = {"type": "string", "minLength": 1, "pattern": TEXT_PATTERN}
        many = {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_STOP_SEQUENCES}
        super().__init__(metadata={"oneOf": [one, many]}, **kwargs)
        self.one = fields.String(validate=[_TEXT, validate.Length(min=1)])

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[str, ...]:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_STOP_SEQUENCES:
            raise ValidationError(f"Must be a string or a list of 1 to {MAX_STOP_SEQUENCES} strings.")
        return tuple(self.one.deserialize(item) for item in values)


class StreamOptionsSchema(Schema):
    include_usage = StrictBoolean(allow_none=True, metadata={"description": "a last chunk with the usage"})


@lru_cache(maxsize=8)
def _chat_schema(max_chars: int, token_limit: int, models: tuple[str, ...]) -> type[Schema]:
    tokens = validate.Range(min=1, max=token_limit)

    class ChatMessageSchema(Schema):
        role = fields.String(required=True, validate=validate.OneOf(ROLES))
        content = MessageContent(max_chars, required=True)

    class ChatCompletionRequestSchema(Schema):
        model = fields.String(required=True, validate=validate.Length(min=1, max=100), metadata={"enum": list(models)})
        messages = fields.List(fields.Nested(ChatMessageSchema), required=True, validate=validate.Length(min=1))
        stream = StrictBoolean(allow_none=True)
        stream_options = fields.Nested(StreamOptionsSchema, allow_none=True)
        max_tokens = JsonInteger(allow_none=True, validate=tokens)
        max_completion_tokens = JsonInteger(allow_none=True, validate=tokens)
        temperature = StrictFloat(allow_none=True, allow_nan=False, validate=validate.Range(min=0, max=2))
        top_p = StrictFloat(allow_none=True, allow_nan=False, validate=validate.Range(min=0, max=1))
        stop = StopSequences(allow_none=True)
        user = StrictString(allow_none=True, metadata={"description": "accepted; the credential names the caller"})
        n = JsonInteger(allow_none=True, validate=validate.Range(min=1, max=1), metadata={"description": "1 only"})

    return ChatCompletionRequestSchema


def chat_request_schema(config: Mapping[str, Any], models: tuple[str, ...] = ()) -> Schema:
    """The request of POST /v1/chat/completions; `models` only documents the model names."""
    return _chat_schema(config["MAX_MESSAGE_CHARS"], config["MAX_TOKENS_PER_REQUEST"], models)()


# -- answers ------------------------------------------------------------------------------
class ModelObjectSchema(Schema):
    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.OneOf(["model"]))
    created = fields.Integer(required=True, metadata={"description": "Unix time; 0: not known"})
    owned_by = fields.String(required=True, metadata={"description": "the provider: local, openai or anthropic"})


class ModelObjectListSchema(Schema):
    object = fields.String(required=True, validate=validate.OneOf(["list"]))
    data = fields.List(fields.Nested(ModelObjectSchema), required=True)


class CompletionUsageSchema(Schema):
    prompt_tokens = fields.Integer(required=True, validate=validate.Range(min=0))
    completion_tokens = fields.Integer(required=True, validate=validate.Range(min=0))
    total_tokens = fields.Integer(required=True, validate=validate.Range(min=0))


class CompletionMessageSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(["assistant"]))
    content = fields.String(required=True)


class CompletionChoiceSchema(Schema):
    index = fields.Integer(required=True, validate=validate.OneOf([0]))
    message = fields.Nested(CompletionMessageSchema, required=True)
    finish_reason = fields.String(required=True, validate=validate.OneOf(FINISH_REASONS))


class RelayExtrasSchema(Schema):
    finish_reason = fields.String(required=True, validate=validate.OneOf(RELAY_FINISH_REASONS),
                                  metadata={"description": "Relay's own: cost_cap and cancelled too"})  # fmt: skip
    cost_usd = fields.Float(required=True, validate=validate.Range(min=0))
    stream_id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    message_id = fields.String(required=True, allow_none=True)


class ChatCompletionSchema(Schema):
    id = fields.String(required=True, metadata={"description": "chatcmpl-<stream id>"})
    object = fields.String(required=True, validate=validate.OneOf(["chat.completion"]))
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    choices = fields.List(fields.Nested(CompletionChoiceSchema), required=True)
    usage = fields.Nested(CompletionUsageSchema, required=True)
    x_relay = fields.Nested(RelayExtrasSchema, required=True)


# One event of a streaming answer: `data:` a chat.completion.chunk (or an error object), then `data: [DONE]`.
CHUNK_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[1-9][0-9]*$", "description": "resume after it: GET /api/v1/stream/{id}"},
        "data": {"type": "string", "description": "JSON of a chat.completion.chunk or an error; last: [DONE]"},
    },
}


class OpenAIErrorDetailSchema(Schema):
    message = fields.String(required=True)
    type = fields.String(required=True, metadata={"description": "e.g. invalid_request_error"})
    param = fields.String(required=True, allow_none=True, metadata={"description": "the parameter at fault"})
    code = fields.String(required=True, allow_none=True, metadata={"description": "e.g. unsupported_parameter"})


class OpenAIErrorSchema(Schema):
    """`{"error": {"message", "type", "param", "code"}}`: every error under /v1."""

    error = fields.Nested(OpenAIErrorDetailSchema, required=True)
