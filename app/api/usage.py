"""Usage: the caller's own (chat scope) and the tenant's (admin scope)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, current_app, request

from ..auth import current_principal, require_scopes
from ..db import usage as queries
from ..extensions import database
from ..schemas import load
from ..schemas.admin import MAX_USAGE_DAYS, TenantUsageQuerySchema, TenantUsageSchema, UsageSchema
from ._doc import doc

bp = Blueprint("usage", __name__)
MAX_DAYS = MAX_USAGE_DAYS  # app/reports.py reads it here


@bp.get("/api/v1/usage")
@doc("The caller's requests, quotas and spend today", {200: UsageSchema})
@require_scopes("chat")
def mine():
    with database.session() as session:
        return queries.usage_summary(session, current_principal(), current_app.config, datetime.now(UTC))


@bp.get("/admin/usage")
@doc("The tenant's requests, tokens and spend by day and model", {200: TenantUsageSchema},
     query=TenantUsageQuerySchema)  # fmt: skip
@require_scopes("admin")
def tenant():
    args = load(TenantUsageQuerySchema(), request.args)
    principal = current_principal()
    since = datetime.now(UTC) - timedelta(days=args["days"])
    with database.session() as session:
        rows = queries.tenant_usage(session, principal.tenant_id, since)
    return {"tenant_id": principal.tenant_id, "days": args["days"], "usage": rows}
