"""marshmallow schemas, one module per resource; `load()` turns errors into 422."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import BadRequest

from ..errors import APIError


def load(schema: Schema, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `data`; unknown fields, bad types and out-of-range values are 422."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise APIError(422, "validation_error", "The request is not valid.", {"fields": exc.messages}) from None


def json_body(optional: bool = False) -> Mapping[str, Any]:
    """The request's JSON object: 415 without a JSON content type, 400 when malformed."""
    if optional and not request.get_data(cache=True):
        return {}
    if not request.is_json:
        raise APIError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    try:
        body = request.get_json()
    except BadRequest:
        raise APIError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise APIError(
            422, "validation_error", "The body must be a JSON object.", {"fields": {"_schema": ["Expected an object."]}}
        )
    return body


def init_app(app: Flask) -> None:
    """Check every request's query string against its endpoint's schema (app/schemas/query.py)."""
    from .query import validate_query

    app.before_request(validate_query)
