"""A caller's conversations: list, read, delete (ownership enforced in db.queries)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from ..auth import current_principal, require_scopes
from ..db import queries
from ..extensions import database

bp = Blueprint("conversations", __name__, url_prefix="/api/v1/conversations")


@bp.get("")
@require_scopes("chat")
def list_all():
    with database.session() as session:
        rows = queries.list_conversations(session, current_principal(), request.args.get("user_id"))
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
