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


def _quota(name: str) -> int | None:
    count, _seconds = current_app.config[f"LIMIT_{name}"]
    return count or None


@bp.get("/api/v1/usage")
@require_scopes("chat")
def mine():
    principal = current_principal()
    config = current_app.config
    with database.session() as session:
        usage = queries.principal_usage(session, principal, datetime.now(UTC))
    anonymous = principal.is_anonymous
    return {
        "requests_this_hour": usage["requests_this_hour"],
        "hourly_quota": _quota("ANON_HOURLY") if anonymous else None,
        "lifetime_requests": usage["lifetime_requests"],
        "lifetime_quota": _quota("ANON_LIFETIME") if anonymous else None,
        "spend_today_usd": round(usage["spend_today_usd"], 8),
        # Anonymous traffic shares one budget that is nobody's own: none applies to the caller.
        "daily_budget_usd": None if anonymous or not principal.tenant_id else config["TENANT_DAILY_BUDGET_USD"],
    }


@bp.get("/admin/usage")
@require_scopes("admin")
def tenant():
    args = load(AdminUsageQuerySchema(), request.args)
    principal = current_principal()
    since = datetime.now(UTC) - timedelta(days=args["days"])
    with database.session() as session:
        rows = queries.tenant_usage(session, principal.tenant_id, since)
    return {"tenant_id": principal.tenant_id, "days": args["days"], "usage": rows}
