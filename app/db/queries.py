"""Queries over users' data. Every read of a user's rows takes the principal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from ..errors import APIError, forbidden, not_found
from ..principal import Principal
from .models import Conversation, Message, Stream, new_id, utcnow

TITLE_CHARS = 80
T = TypeVar("T")


def _get_owned(session: Session, model: type[T], principal: Principal, row_id: str, thing: str) -> T:
    """The caller's row; 404 when unknown, 403 (naming the thing) when another's."""
    row = session.get(model, row_id)
    if row is None:
        raise not_found(thing)
    if row.owner_id != principal.id:  # type: ignore[attr-defined] - every owned table has owner_id
        raise forbidden(thing)
    return row


def get_owned_conversation(session: Session, principal: Principal, conversation_id: str) -> Conversation:
    """The caller's conversation; 404 when unknown, 403 when another's."""
    return _get_owned(session, Conversation, principal, conversation_id, "conversation")


def record_user_turn(
    session: Session,
    principal: Principal,
    *,
    conversation_id: str,
    new_conversation: bool,
    message: str,
    stream_id: str,
    model: str,
    turns: list[dict[str, str]] | None = None,
) -> None:
    """Write what a new stream starts with, in few statements: the conversation
    (when new, titled after `message`), the user's message (or `turns`, every
    message the caller sent, stored as given) and the stream row. Core inserts:
    this is on the request path of every stream."""
    now = utcnow()
    if new_conversation:
        title = " ".join(message.split())[:TITLE_CHARS]
        session.execute(
            insert(Conversation).values(
                id=conversation_id,
                owner_id=principal.id,
                tenant_id=principal.tenant_id,
                title=title,
                created_at=now,
                updated_at=now,
            )
        )
        seq: Any = 1
    else:
        session.execute(update(Conversation).where(Conversation.id == conversation_id).values(updated_at=now))
        seq = _next_seq(conversation_id)
    for offset, turn in enumerate(turns or [{"role": "user", "content": message}]):
        session.execute(
            insert(Message).values(
                id=new_id(),
                conversation_id=conversation_id,
                seq=seq + offset if new_conversation else seq,  # the subquery counts the rows before it
                role=turn["role"],
                content=turn["content"],
                created_at=now,
            )
        )
    session.execute(
        insert(Stream).values(
            id=stream_id,
            owner_id=principal.id,
            tenant_id=principal.tenant_id,
            conversation_id=conversation_id,
            model=model,
            status="queued",
            created_at=now,
        )
    )


def _next_seq(conversation_id: str):
    return (
        select(func.coalesce(func.max(Message.seq), 0) + 1)
        .where(Message.conversation_id == conversation_id)
        .scalar_subquery()
    )


def recent_messages(session: Session, conversation_id: str, limit: int) -> list[dict[str, str]]:
    """The last `limit` messages as provider chat messages, oldest first."""
    rows = session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.seq.desc(), Message.created_at.desc())
        .limit(limit)
    ).all()
    return [{"role": row.role, "content": row.content} for row in reversed(rows)]


def list_conversations(session: Session, principal: Principal, user_id: str | None = None) -> list[dict[str, Any]]:
    """The caller's conversations; naming any user but the caller is 403."""
    if user_id is not None and user_id not in (principal.id, principal.subject):
        raise APIError(403, "forbidden", "You do not have access to this user's conversations")
    counts = (
        select(Message.conversation_id, func.count(Message.id).label("n")).group_by(Message.conversation_id).subquery()
    )
    rows = session.execute(
        select(Conversation, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.conversation_id == Conversation.id)
        .where(Conversation.owner_id == principal.id)
        .order_by(Conversation.updated_at.desc())
    ).all()
    return [conversation_summary(conversation, count) for conversation, count in rows]


def conversation_summary(conversation: Conversation, message_count: int) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "title": conversation.title,
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "message_count": message_count,
    }


def conversation_detail(conversation: Conversation) -> dict[str, Any]:
    messages = [message_dict(message) for message in conversation.messages]
    return {**conversation_summary(conversation, len(messages)), "messages": messages}


def message_dict(message: Message) -> dict[str, Any]:
    usage = None
    if message.role == "assistant":
        usage = {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "cost_usd": message.cost_usd,
        }
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "model": message.model,
        "created_at": _iso(message.created_at),
        "usage": usage,
    }


def get_stream(session: Session, stream_id: str) -> Stream | None:
    return session.get(Stream, stream_id)


def get_owned_stream(session: Session, principal: Principal, stream_id: str) -> Stream:
    """The caller's stream row; 404 when unknown, 403 when another's."""
    return _get_owned(session, Stream, principal, stream_id, "stream")


def finish_stream(
    session: Session,
    stream_id: str,
    *,
    content: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cost_usd: float,
    finish_reason: str | None,
    error_code: str | None = None,
) -> str | None:
    """Record the assistant's reply (when any) and the stream's end; the message id.
    LookupError when the stream has no row (yet: the API writes it while the worker runs).

    The usage is recorded on the stream row even when its conversation was
    deleted meanwhile (then there is no reply to save). Core statements: this
    ends every stream."""
    row = session.execute(select(Stream.conversation_id).where(Stream.id == stream_id)).first()
    if row is None:
        raise LookupError(f"stream {stream_id} has no database row")
    conversation_id = row.conversation_id
    message_id = None
    now = utcnow()
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "cost_usd": cost_usd}
    if conversation_id is not None and (content or error_code is None):
        # The conversation may have been deleted meanwhile: then it has no row to touch.
        touched = session.execute(update(Conversation).where(Conversation.id == conversation_id).values(updated_at=now))
        if touched.rowcount:
            message_id = new_id()
            session.execute(
                insert(Message).values(
                    id=message_id,
                    conversation_id=conversation_id,
                    seq=_next_seq(conversation_id),
                    role="assistant",
                    content=content,
                    model=model,
                    created_at=now,
                    **usage,
                )
            )
    session.execute(
        update(Stream)
        .where(Stream.id == stream_id)
        .values(
            status="failed" if error_code else "finished",
            finish_reason=finish_reason,
            error_code=error_code,
            message_id=message_id,
            finished_at=now,
            **usage,
        )
    )
    return message_id


def fail_unfinished_stream(session: Session, stream_id: str, error_code: str, cost_usd: float) -> bool:
    """End a stream whose worker is gone (no reply to save); False when it already ended."""
    result = session.execute(
        update(Stream)
        .where(Stream.id == stream_id, Stream.finished_at.is_(None))
        .values(status="failed", error_code=error_code, cost_usd=cost_usd, finished_at=datetime.now(UTC))
    )
    return bool(result.rowcount)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite returns naive datetimes; they were stored as UTC
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")
