"""Tenant administration (admin scope): the audit log."""

from __future__ import annotations

from flask import Blueprint, request

from ..auth import current_principal, require_scopes
from ..db import audit as queries
from ..extensions import database
from ..schemas import load
from ..schemas.admin import AuditPageSchema, AuditQuerySchema
from ._doc import doc

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/audit")
@doc("The tenant's security events, newest first", {200: AuditPageSchema}, query=AuditQuerySchema,
     description="403 when `user_id` names no one in the caller's tenant.")  # fmt: skip
@require_scopes("admin")
def audit_log():
    args = load(AuditQuerySchema(), request.args)
    principal = current_principal()
    with database.session() as session:
        principal_ids = queries.tenant_principal_ids(session, principal, args["user_id"]) if "user_id" in args else ()
        query = queries.AuditFilter.from_query(args, principal_ids)
        rows = queries.list_events(session, principal, query)
        events = [queries.event_dict(event) for event in rows[: query.limit]]
    next_cursor = events[-1]["id"] if len(rows) > query.limit else None
    return {"events": events, "count": len(events), "next_cursor": next_cursor}
