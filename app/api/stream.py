"""Streaming: start or attach (POST/GET /stream), resume (GET /stream/<id>), cancel (DELETE)."""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, request

from ..auth import current_principal, require_scopes
from ..errors import not_found, validation_error
from ..schemas import json_body, load
from ..schemas.stream import STREAM_ID, from_query, stream_request_schema
from ..streams import service
from ..streams.sse import HEADERS

bp = Blueprint("stream", __name__, url_prefix="/api/v1")
_STREAM_ID = re.compile(STREAM_ID)
_EVENT_ID = re.compile(r"[0-9]{1,12}")


def _runtime():
    return current_app.extensions["relay.streams"]


def _sse(stream_id: str, after: int) -> Response:
    headers = {**HEADERS, "X-Stream-Id": stream_id}
    events = service.open_events(_runtime(), stream_id, after)
    try:
        return Response(events, status=200, mimetype="text/event-stream", headers=headers)
    except BaseException:
        events.close()  # the body will never be iterated: release its subscription now
        raise


@bp.route("/stream", methods=["POST", "GET"])
@require_scopes("chat")
def start():
    data = json_body() if request.method == "POST" else from_query(request.args)
    body = load(stream_request_schema(current_app.config), data)
    started = service.start_stream(_runtime(), current_principal(), body)
    return _sse(started.stream_id, started.after)


def _last_event_id() -> int:
    """The client's last event id: ASCII digits only (str.isdigit() would take '²' or '٣'), else 422."""
    field, raw = "Last-Event-ID", request.headers.get("Last-Event-ID")
    if not raw:
        field, raw = "last_event_id", request.args.get("last_event_id") or "0"
    if not _EVENT_ID.fullmatch(raw):
        message = "Last-Event-ID must be a non-negative integer of ASCII digits."
        raise validation_error({field: [message]}, message)
    return int(raw)


def _checked_id(stream_id: str) -> str:
    if not _STREAM_ID.fullmatch(stream_id):  # the whole id: `$` alone would let a trailing newline in
        raise not_found("stream")
    return stream_id


@bp.get("/stream/<stream_id>")
@require_scopes("chat")
def attach(stream_id: str):
    after = _last_event_id()
    if not service.check_attach(_runtime(), current_principal(), _checked_id(stream_id), after):
        return Response(status=204)
    return _sse(stream_id, after)


@bp.delete("/stream/<stream_id>")
@require_scopes("chat")
def cancel(stream_id: str):
    service.cancel_stream(_runtime(), current_principal(), _checked_id(stream_id))
    return {"stream_id": stream_id, "status": "cancelling"}, 202
