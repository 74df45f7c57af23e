"""Usage: the caller's own (chat scope) and the tenant's (admin scope)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, current_app, request
from marshmallow import Schema, fields, validate

from ..auth import current_principal, require_scopes
from ..db import usage as queries
from ..extensions import database
from ..schemas import load

bp = Blueprint("usage", __name__)
MAX_DAYS = 90


class AdminUsageQuerySchema(Schema):
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=MAX_DAYS))


@bp.get("/api/v1/usage")
@require_scopes("chat")
def mine():
    with database.session() as session:
        return queries.usage_summary(session, current_principal(), current_app.config, datetime.now(UTC))


@bp.get("/admin/usage")
@require_scopes("admin")
def tenant():
    args = load(AdminUsageQuerySchema(), request.args)
    principal = current_principal()
    since = datetime.now(UTC) - timedelta(days=args["days"])
    with database.session() as session:
        rows = queries.tenant_usage(session, principal.tenant_id, since)
    return {"tenant_id": principal.tenant_id, "days": args["days"], "usage": rows}
