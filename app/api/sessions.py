"""Anonymous sessions and the model list."""

from __future__ import annotations

import time

from flask import Blueprint, current_app

from ..auth import anonymous
from ..limits import client_ip, limit
from ..schemas import json_body, load
from ..schemas.sessions import anon_session_schema

bp = Blueprint("sessions", __name__, url_prefix="/api/v1")


@bp.post("/anon_session")
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
def models():
    catalog = current_app.extensions["relay.streams"].catalog
    return {"models": catalog.describe()}
