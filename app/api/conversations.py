"""A caller's conversations: list, read, delete (ownership enforced in db.queries)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from ..auth import current_principal, require_scopes
from ..db import queries
from ..extensions import database
from ..schemas.conversations import ConversationListSchema, ConversationSchema
from ._doc import NO_BODY, doc

bp = Blueprint("conversations", __name__, url_prefix="/api/v1/conversations")
_ITEM = {
    "operationId": "conversations.read.get",
    "parameters": {"conversation_id": "$response.body#/conversations/0/id"},
}
_DELETE = {
    "operationId": "conversations.delete.delete",
    "parameters": {"conversation_id": "$response.body#/conversations/0/id"},
}


@bp.get("")
@doc("The caller's conversations, newest first", {200: ConversationListSchema},
     links={200: {"read": _ITEM, "delete": _DELETE}},
     description="403 when `user_id` names anyone but the caller.")  # fmt: skip
@require_scopes("chat")
def list_all():
    with database.session() as session:
        rows = queries.list_conversations(session, current_principal(), request.args.get("user_id"))
    return {"conversations": rows, "count": len(rows)}


@bp.get("/<conversation_id>")
@doc("One conversation with its messages", {200: ConversationSchema}, errors=(404,))
@require_scopes("chat")
def read(conversation_id: str):
    with database.session() as session:
        conversation = queries.get_owned_conversation(session, current_principal(), conversation_id)
        return queries.conversation_detail(conversation)


@bp.delete("/<conversation_id>")
@doc("Delete a conversation (its usage stays)", {204: NO_BODY}, errors=(404,))
@require_scopes("chat")
def delete(conversation_id: str):
    with database.session() as session:
        conversation = queries.get_owned_conversation(session, current_principal(), conversation_id)
        session.delete(conversation)
    return Response(status=204)
