"""POST /ai/plan and POST /ai/execute: request bodies and response shapes (OpenAPI)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from ..catalog import Catalog
from .actions import DeliveryQueuedSchema
from .common import FullMatch

PLAN_ID = r"^[0-9a-f]{32}$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # as in a chat message: tab, newline, return only
REJECTION_REASONS = ("unknown_action", "payload_not_object", "malformed", "too_many_actions")


@lru_cache(maxsize=4)
def _plan_schema(max_chars: int, models: tuple[str, ...]) -> type[Schema]:
    class PlanRequestSchema(Schema):
        prompt = fields.String(required=True, validate=validate.Length(min=1, max=max_chars))
        model = fields.String(validate=validate.OneOf(models, error="Not an available model."))

        @validates("prompt")
        def _readable(self, value: str, **_: Any) -> None:
            if not value.strip():
                raise ValidationError("Must not be only white space.")
            if _CONTROL.search(value):
                raise ValidationError("Must not contain control characters other than tab, newline and return.")

    return PlanRequestSchema


@lru_cache(maxsize=8)
def _available_models(models_file: str, openai: bool, anthropic: bool, default: str) -> tuple[str, ...]:
    settings = {"MODELS_FILE": models_file, "OPENAI_API_KEY": openai, "ANTHROPIC_API_KEY": anthropic,
                "DEFAULT_MODEL": default}  # fmt: skip
    return tuple(Catalog(settings).models)


def plan_request_schema(config: Mapping[str, Any]) -> Schema:
    """The body of POST /ai/plan: the prompt as long as a chat message may be; a model of /api/v1/models."""
    models = _available_models(
        config["MODELS_FILE"],
        bool(config["OPENAI_API_KEY"]),
        bool(config["ANTHROPIC_API_KEY"]),
        config["DEFAULT_MODEL"],
    )
    return _plan_schema(config["MAX_MESSAGE_CHARS"], models)()


class ExecutePlanSchema(Schema):
    plan_id = fields.String(required=True, validate=FullMatch(PLAN_ID))


# -- response shapes (documentation) ---------------------------------------------------------
class PlannedActionSchema(Schema):
    action = fields.String(required=True)
    payload = fields.Dict(required=True)


class RejectedActionSchema(Schema):
    action = fields.Raw(required=True, metadata={"description": "as the model proposed it (null when it named none)"})
    payload = fields.Raw(required=True, metadata={"description": "as the model proposed it"})
    reason = fields.String(required=True, validate=validate.OneOf(REJECTION_REASONS))


class PlanSchema(Schema):
    plan_id = fields.String(required=True)
    actions = fields.List(fields.Nested(PlannedActionSchema), required=True)
    rejected = fields.List(fields.Nested(RejectedActionSchema), required=True)
    model = fields.String(required=True)
    cost_usd = fields.Float(required=True)


class PlannedDeliverySchema(DeliveryQueuedSchema):
    action = fields.String(required=True)


class PlanExecutedSchema(Schema):
    plan_id = fields.String(required=True)
    deliveries = fields.List(fields.Nested(PlannedDeliverySchema), required=True)
    count = fields.Integer(required=True)
