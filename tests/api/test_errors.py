"""Every error, from every layer, has the contract's JSON shape."""

from __future__ import annotations

import pytest


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert error["message"] and "Traceback" not in error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error


def test_unknown_path_is_json_404(client):
    assert_error_shape(client.get("/no/such/thing"), 404, "not_found")


def test_wrong_method_is_json_405(client):
    response = client.put("/api/v1/models")
    assert_error_shape(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_oversized_body_is_413(client, anon_headers):
    body = '{"message": "' + "x" * 70_000 + '"}'
    response = client.post("/api/v1/stream", data=body, headers={**anon_headers, "Content-Type": "application/json"})
    assert_error_shape(response, 413, "payload_too_large")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_non_json_body_is_415(client, anon_headers, content_type):
    headers = dict(anon_headers)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/api/v1/stream", data='{"message": "hi"}', headers=headers)
    assert_error_shape(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("body", ['{"message": ', "not json", '{"message": "hi"', "\x00\x01"])
def test_malformed_json_is_400(client, anon_headers, body):
    response = client.post("/api/v1/stream", data=body, headers={**anon_headers, "Content-Type": "application/json"})
    assert_error_shape(response, 400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "message"),
        ({"message": ""}, "message"),
        ({"message": " \n\t "}, "message"),
        ({"message": "x" * 8193}, "message"),
        ({"message": "hi", "surprise": 1}, "surprise"),
        ({"message": "hi", "max_tokens": 0}, "max_tokens"),
        ({"message": "hi", "max_tokens": 2001}, "max_tokens"),
        ({"message": "hi", "max_tokens": "10"}, "max_tokens"),
        ({"message": "hi", "cost_cap_usd": 0}, "cost_cap_usd"),
        ({"message": "hi", "cost_cap_usd": 5.01}, "cost_cap_usd"),
        ({"message": "hi", "stream_id": "short"}, "stream_id"),
        ({"message": "hi", "stream_id": "has spaces in it"}, "stream_id"),
        ({"message": 42}, "message"),
    ],
)
def test_invalid_stream_requests_are_422(client, anon_headers, body, field):
    error = assert_error_shape(client.post("/api/v1/stream", json=body, headers=anon_headers), 422, "validation_error")
    assert field in error["details"]["fields"]


def test_unknown_model_is_422(client, anon_headers):
    response = client.post("/api/v1/stream", json={"message": "hi", "model": "gpt-9"}, headers=anon_headers)
    assert_error_shape(response, 422, "validation_error")


def test_json_array_body_is_422(client, anon_headers):
    response = client.post("/api/v1/stream", json=["hi"], headers=anon_headers)
    assert_error_shape(response, 422, "validation_error")


def test_request_id_is_echoed_when_sane_and_replaced_when_not(client):
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    replaced = client.get("/health", headers={"X-Request-ID": "bad id <script>" + "x" * 200}).headers["X-Request-ID"]
    assert replaced != "bad id" and len(replaced) == 32


def test_no_token_is_401_with_challenge(client):
    response = client.post("/api/v1/stream", json={"message": "hi"})
    assert_error_shape(response, 401, "missing_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="relay"'  # nothing sent: no error= (RFC 6750 3.1)
