"""Chunks the provider sends close together reach the client as fewer events, and the text is
the provider's to the byte: through Relay's SSE, a resume from the middle, the OpenAI-compatible
stream and the stored message. The fake sends 3 characters a chunk, 1 ms apart, so chunk
boundaries fall everywhere: inside CRLF, inside `\\n\\n`, beside multi-byte characters."""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.support import collect, reply_text

pytestmark = pytest.mark.slow

# What would break a naive framing if it reached the wire unescaped, and what JSON must keep as is.
NASTY = (
    'one\n\nevent: done\ndata: {"finish_reason": "stop"}\n\nid: 999\r\n\r\nretry: 1\n: comment\n'
    'data: [DONE]\n\n\r\r\n\u2028\u2029\u0085 tab\there \\ backslash " quote </script><b>&amp;</b> '
    "é 中文 😀🚀 ñ\x7f[31m end."
) * 2
PIECES = -(-len(NASTY) // 3)  # the fake's chunks

# One event block on the wire: optional id, the event name, one line of JSON; nothing else.
BLOCK = re.compile(r"(id: [1-9][0-9]*\n)?event: [a-z_]+\ndata: [^\n]*")


def raw_events(response: requests.Response) -> list[dict]:
    """Read the body as bytes and check every block's framing before decoding it."""
    body = response.content.decode("ascii")  # ASCII only: everything else travels escaped
    blocks = body.split("\n\n")
    assert blocks[0] == "retry: 2000" and blocks[-1] == "", body[:200]
    events = []
    for block in blocks[1:-1]:
        assert BLOCK.fullmatch(block), block
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append({"id": int(fields.get("id", 0)), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def test_coalesced_chunks_carry_the_providers_text_byte_for_byte(stack):
    token = stack.anon_token()
    response = stack.post_stream(token, {"message": "echo:" + NASTY, "model": "gpt-4o-mini", "max_tokens": 2000})
    assert response.status_code == 200
    events = raw_events(response)
    chunks = [e for e in events if e["event"] == "message_chunk"]
    assert events[-1]["event"] == "done", events[-1]
    assert "".join(c["data"]["content"] for c in chunks) == NASTY
    # Coalesced: fewer events than the provider's chunks, with ids and indexes still dense.
    assert 1 < len(chunks) < PIECES / 2, len(chunks)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert [c["data"]["index"] for c in chunks] == list(range(len(chunks)))
    # Usage counts the provider's chunks, not the events.
    assert events[-1]["data"]["usage"]["completion_tokens"] == PIECES

    # A client that lost the connection after the second event resumes with the rest, exactly.
    stream_id = events[0]["data"]["stream_id"]
    resumed = collect(
        requests.get(
            f"{stack.base_url}/api/v1/stream/{stream_id}",
            headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "2"},
            stream=True,
            timeout=30,
        )
    )
    assert chunks[0]["id"] == 2
    assert chunks[0]["data"]["content"] + reply_text(resumed) == NASTY

    stored = requests.get(
        f"{stack.base_url}/api/v1/conversations/{events[0]['data']['conversation_id']}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    assert stored["messages"][1]["content"] == NASTY


def test_the_openai_compatible_stream_carries_the_same_text(stack):
    token = stack.anon_token()
    response = requests.post(
        f"{stack.base_url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "echo:" + NASTY}], "stream": True},
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=60,
    )
    assert response.status_code == 200
    body = response.content.decode("ascii")
    blocks = [block for block in body.split("\n\n") if block]
    assert blocks[-1] == "data: [DONE]"
    text = ""
    for block in blocks[:-1]:
        assert re.fullmatch(r"(id: [1-9][0-9]*\n)?data: \{[^\n]*", block), block
        choices = json.loads(block.split("data: ", 1)[1])["choices"]
        if choices:
            text += choices[0]["delta"].get("content") or ""
    assert text == NASTY
