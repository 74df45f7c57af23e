"""Malformed HTTP that gunicorn itself refuses still gets the contract's JSON error."""

from __future__ import annotations

import json
import socket

import pytest

pytestmark = pytest.mark.slow


def raw_request(base_url: str, payload: bytes) -> tuple[int, dict[str, str], dict]:
    host, port = base_url.removeprefix("http://").split(":")
    data = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:  # the server may answer and close before a huge request is all sent
            for start in range(0, len(payload), 16384):
                sock.sendall(payload[start : start + 16384])
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    assert data, "the server closed the connection without an answer"
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return status, headers, json.loads(body)


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431, "headers_too_large"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"NOT A REQUEST LINE\r\n\r\n", 400, "bad_request"),
        (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
    ],
)
def test_gunicorn_level_errors_are_json(stack, payload, status, code):
    got_status, headers, body = raw_request(stack.base_url, payload)
    assert got_status == status
    assert headers["Content-Type"] == "application/json"
    assert body["error"]["code"] == code
    assert set(body["error"]) == {"code", "message", "details", "request_id"}
    assert headers["X-Request-ID"] == body["error"]["request_id"]


def test_a_one_megabyte_token_is_refused_in_the_contract_shape(stack):
    payload = (
        b"GET /api/v1/conversations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + b"A" * 1_000_000
        + b"\r\nConnection: close\r\n\r\n"
    )
    got_status, headers, body = raw_request(stack.base_url, payload)
    assert got_status == 431 and body["error"]["code"] == "headers_too_large"
