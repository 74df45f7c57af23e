"""Actions (admin registry) and their deliveries: execute, read, list, redeliver."""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, request

from ..auth import current_principal, require_scopes
from ..db import actions as queries
from ..errors import not_found
from ..extensions import database
from ..limits import limit, tenant_key
from ..schemas import json_body, load
from ..schemas.actions import (
    DELIVERY_ID,
    SLUG,
    CreateActionSchema,
    DeliveryListQuerySchema,
    ExecuteSchema,
    encode_cursor,
)
from ..schemas.query import NoQuerySchema
from ..webhooks import deliveries, registry

bp = Blueprint("actions", __name__)
_SLUG, _DELIVERY_ID = re.compile(SLUG), re.compile(DELIVERY_ID)
_NO_STORE = {"Cache-Control": "no-store"}


@bp.before_request
def _no_unknown_query() -> None:
    if request.endpoint != "actions.list_deliveries" and request.method != "OPTIONS":
        load(NoQuerySchema(), request.args)


def _name(name: str) -> str:
    if not _SLUG.match(name):
        raise not_found("action")
    return name


def _delivery_id(delivery_id: str) -> str:
    if not _DELIVERY_ID.match(delivery_id):
        raise not_found("delivery")
    return delivery_id


@bp.post("/api/v1/actions")
@require_scopes("admin")
def create():
    body = load(CreateActionSchema(), json_body())
    listing, secret = registry.create_action(
        current_principal(), body["name"], body["url"], body["description"], current_app.config
    )
    return {**listing, "secret": secret}, 201, _NO_STORE


@bp.get("/api/v1/actions")
@require_scopes("admin")
def list_all():
    actions = registry.list_actions(current_principal())
    return {"actions": actions, "count": len(actions)}


@bp.delete("/api/v1/actions/<name>")
@require_scopes("admin")
def delete(name: str):
    registry.delete_action(current_principal(), _name(name))
    return Response(status=204)


@bp.post("/api/v1/actions/<name>/rotate_secret")
@require_scopes("admin")
def rotate_secret(name: str):
    return registry.rotate_secret(current_principal(), _name(name), current_app.config), 200, _NO_STORE


@bp.post("/actions/execute")
@require_scopes("actions:execute")
@limit("actions_execute", tenant_key)
def execute():
    body = load(ExecuteSchema(), json_body())
    queued = deliveries.execute(current_principal(), body["action"], body["payload"], body.get("idempotency_key"))
    return queued, 202


@bp.get("/actions/deliveries/<delivery_id>")
@require_scopes("actions:execute")
def read_delivery(delivery_id: str):
    with database.session() as session:
        delivery = queries.find_delivery(session, current_principal(), _delivery_id(delivery_id), attempts=True)
        return queries.delivery_dict(delivery, attempts=True)


@bp.get("/actions/deliveries")
@require_scopes("actions:execute")
def list_deliveries():
    args = load(DeliveryListQuerySchema(), request.args)
    query = queries.DeliveryFilter(args["status"], args["action"], args["cursor"], args["limit"])
    with database.session() as session:
        rows = queries.list_deliveries(session, current_principal(), query)
        page = [queries.delivery_dict(delivery) for delivery in rows[: query.limit]]
    last = page[-1] if len(rows) > query.limit else None
    next_cursor = encode_cursor(last["created_at"], last["delivery_id"]) if last else None
    return {"deliveries": page, "count": len(page), "next_cursor": next_cursor}


@bp.post("/actions/deliveries/<delivery_id>/redeliver")
@require_scopes("admin")
def redeliver(delivery_id: str):
    return deliveries.redeliver(current_principal(), _delivery_id(delivery_id)), 202
