"""A tenant's API keys (admin): create (the key is shown once), list, revoke."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from marshmallow import Schema, ValidationError, fields, validate, validates

from ..auth import SCOPES, api_keys, current_principal, require_scopes
from ..schemas import json_body, load

bp = Blueprint("api_keys", __name__, url_prefix="/api/v1/api_keys")


class CreateKeySchema(Schema):
    name = fields.String(required=True, validate=validate.Regexp(r"^[^\x00-\x1f\x7f]{1,100}$"))
    scopes = fields.List(fields.String(), required=True, validate=validate.Length(min=1, max=len(SCOPES)))

    @validates("scopes")
    def _known(self, value: list[str], **_: object) -> None:
        unknown = set(value) - SCOPES
        if unknown:
            raise ValidationError(f"Unknown scopes: {', '.join(sorted(unknown))}.")


@bp.post("")
@require_scopes("admin")
def create():
    body = load(CreateKeySchema(), json_body())
    name = body["name"].strip() or body["name"]
    listing, key = api_keys.create_for(current_principal(), name, body["scopes"], current_app.config["SECRET_KEY"])
    return {**listing, "key": key}, 201, {"Cache-Control": "no-store"}


@bp.get("")
@require_scopes("admin")
def list_all():
    keys = api_keys.list_for(current_principal())
    return {"api_keys": keys, "count": len(keys)}


@bp.delete("/<key_id>")
@require_scopes("admin")
def revoke(key_id: str):
    api_keys.revoke_for(current_principal(), key_id)
    return Response(status=204)
