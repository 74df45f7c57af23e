"""POST /webhooks/relay: signed webhooks to Relay (Standard Webhooks; no bearer token, the signature is the credential)."""

from __future__ import annotations

from flask import Blueprint, current_app, request

from ..limits import client_ip, limit
from ..schemas import load
from ..schemas.query import NoQuerySchema
from ..webhooks import inbound

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.post("/relay")
@limit("webhooks_in", client_ip)
def relay():
    load(NoQuerySchema(), request.args)
    return inbound.receive(request.headers, request.get_data(cache=False), current_app.config)
