"""A tenant's API keys (admin): create (the key is shown once), list, revoke."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from ..auth import api_keys, current_principal, require_scopes
from ..schemas import json_body, load
from ..schemas.api_keys import ApiKeyListSchema, CreateKeySchema, NewApiKeySchema
from ._doc import NO_BODY, doc

bp = Blueprint("api_keys", __name__, url_prefix="/api/v1/api_keys")
_NO_STORE = {"Cache-Control": {"required": True, "schema": {"const": "no-store"}}}
_REVOKE = {"operationId": "api_keys.revoke.delete", "parameters": {"key_id": "$response.body#/id"}}


@bp.post("")
@doc("Create an API key in the caller's tenant (the key is shown once)", {201: NewApiKeySchema},
     body=CreateKeySchema, links={201: {"revoke": _REVOKE}}, response_headers={201: _NO_STORE},
     description="403 insufficient_scope when a scope is one the caller lacks.")  # fmt: skip
@require_scopes("admin")
def create():
    body = load(CreateKeySchema(), json_body())
    name = body["name"].strip() or body["name"]
    listing, key = api_keys.create_for(current_principal(), name, body["scopes"], current_app.config["SECRET_KEY"])
    return {**listing, "key": key}, 201, {"Cache-Control": "no-store"}


@bp.get("")
@doc("The tenant's API keys, revoked ones included, newest first", {200: ApiKeyListSchema})
@require_scopes("admin")
def list_all():
    keys = api_keys.list_for(current_principal())
    return {"api_keys": keys, "count": len(keys)}


@bp.delete("/<key_id>")
@doc("Revoke an API key (it stops working at once); a revoked key is gone: 404", {204: NO_BODY}, errors=(404,))
@require_scopes("admin")
def revoke(key_id: str):
    api_keys.revoke_for(current_principal(), key_id)
    return Response(status=204)
