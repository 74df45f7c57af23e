"""A caller's conversations: list, read, delete (ownership enforced in db.queries)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from ..auth import current_principal, require_scopes
from ..db import queries
from ..errors import APIError
from ..extensions import database

bp = Blueprint("conversations", __name__, url_prefix="/api/v1/conversations")


@bp.get("")
@require_scopes("chat")
def list_all():
    principal = current_principal()
    user_id = request.args.get("user_id")
    if user_id is not None and user_id not in (principal.id, principal.subject):
        raise APIError(403, "forbidden", "You do not have access to this user's conversations")
    with database.session() as session:
        rows = queries.list_conversations(session, principal)
    return {"conversations": rows, "count": len(rows)}


@bp.get("/<conversation_id>")
@require_scopes("chat")
def read(conversation_id: str):
    with database.session() as session:
        conversation = queries.get_owned_conversation(session, current_principal(), conversation_id)
        return queries.conversation_detail(conversation)


@bp.delete("/<conversation_id>")
@require_scopes("chat")
def delete(conversation_id: str):
    with database.session() as session:
        conversation = queries.get_owned_conversation(session, current_principal(), conversation_id)
        session.delete(conversation)
    return Response(status=204)
