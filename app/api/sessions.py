"""Anonymous sessions and the model list."""

from __future__ import annotations

import time

from flask import Blueprint, current_app

from ..auth import anonymous
from ..limits import client_ip, limit
from ..schemas import json_body, load
from ..schemas.sessions import AnonTokenSchema, ModelListSchema, anon_session_schema
from ._doc import doc

bp = Blueprint("sessions", __name__, url_prefix="/api/v1")


@bp.post("/anon_session")
@doc("Mint an anonymous session token (scope chat)", {200: AnonTokenSchema},
     body=lambda config: anon_session_schema(config["ANON_TOKEN_MAX_TTL"]), body_required=False)  # fmt: skip
@limit("anon_mint", client_ip)
def anon_session():
    config = current_app.config
    max_ttl = config["ANON_TOKEN_MAX_TTL"]
    body = load(anon_session_schema(max_ttl), json_body(optional=True))
    ttl = body.get("ttl_seconds", max_ttl)
    token, expires_at = anonymous.mint(config["SECRET_KEY"], ttl)
    return {
        "token": token,
        "token_type": "Bearer",
        "expires_at": expires_at,
        "expires_in": expires_at - int(time.time()),
    }


@bp.get("/models")
@doc("The models whose provider is configured (only these are accepted)", {200: ModelListSchema})
def models():
    catalog = current_app.extensions["relay.streams"].catalog
    return {"models": catalog.describe()}
