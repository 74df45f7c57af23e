"""Every error under /v1 in OpenAI's shape, whatever layer raised it; Relay's own shape elsewhere."""

from __future__ import annotations

import pytest

from tests.conftest import bearer

OPENAI_KEYS = {"message", "type", "param", "code"}
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def v1_app(make_app):
    return make_app(OPENAI_API_KEY="sk-test-not-used")  # gpt-4o is on offer (its prompt has a price)


@pytest.fixture
def v1(v1_app):
    return v1_app.test_client()


@pytest.fixture
def key(v1, user_token) -> dict[str, str]:
    admin = bearer(user_token("openai-errors-admin"))
    response = v1.post("/api/v1/api_keys", json={"name": "k", "scopes": ["chat"]}, headers=admin)
    return bearer(response.get_json()["key"])


def error_of(response, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert set(error) == OPENAI_KEYS
    assert (error["code"], error["param"]) == (code, param)
    assert response.headers["X-Request-ID"]
    return error


def test_auth_failures_are_invalid_api_key(v1):
    for headers in ({}, bearer("relay_sk_" + "x" * 43), bearer("not-a-jwt")):
        response = v1.get("/v1/models", headers={**headers, "X-Request-ID": "req-123"})
        error = error_of(response, 401, "invalid_api_key")
        assert error["type"] == "invalid_request_error"
        assert response.headers["X-Request-ID"] == "req-123"
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="relay"')


def test_werkzeug_errors_are_in_openai_shape(v1, key):
    error_of(v1.get("/v1/nothing-here", headers=key), 404, "not_found")
    response = v1.delete("/v1/models", headers=key)
    error_of(response, 405, "method_not_allowed")
    error_of(v1.post("/v1/chat/completions", data="{}", headers=key), 415, "unsupported_media_type")
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 70_000}]}
    error_of(v1.post("/v1/chat/completions", json=big, headers=key), 413, "payload_too_large")
    malformed = v1.post("/v1/chat/completions", data="{", content_type="application/json", headers=key)
    error_of(malformed, 400, "invalid_request_error")
    error_of(v1.get("/v1/models?limit=3", headers=key), 400, "invalid_request_error", "limit")


def test_relays_own_api_keeps_its_shape(v1):
    error = v1.get("/api/v1/conversations").get_json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}


def test_the_global_limit_answers_in_openai_shape(make_app, key):
    app = make_app(LIMIT_GLOBAL_IP="2/60", REDIS_KEY_PREFIX="relaytest-v1-global-" + key["Authorization"][-8:] + ":")
    client = app.test_client()
    statuses = [client.get("/v1/models").status_code for _ in range(3)]
    assert statuses[:2] == [401, 401]
    response = client.get("/v1/models")
    error = error_of(response, 429, "rate_limit_exceeded")
    assert error["type"] == "requests" and "global_ip" in error["message"]
    assert int(response.headers["Retry-After"]) >= 1 and response.headers["X-RateLimit-Limit"] == "2"


CASES = [
    ({"messages": USER}, "invalid_request_error", "model"),
    ({"model": "gpt-4o-mini"}, "invalid_request_error", "messages"),
    ({"model": "gpt-4o-mini", "messages": []}, "invalid_request_error", "messages"),
    ({"model": "gpt-4o-mini", "messages": USER, "temperature": 2.5}, "invalid_request_error", "temperature"),
    ({"model": "gpt-4o-mini", "messages": USER, "temperature": "0.5"}, "invalid_request_error", "temperature"),
    ({"model": "gpt-4o-mini", "messages": USER, "top_p": 1.5}, "invalid_request_error", "top_p"),
    ({"model": "gpt-4o-mini", "messages": USER, "stream": "yes"}, "invalid_request_error", "stream"),
    ({"model": "gpt-4o-mini", "messages": USER, "max_tokens": 0}, "invalid_request_error", "max_tokens"),
    ({"model": "gpt-4o-mini", "messages": USER, "max_completion_tokens": 2001}, "invalid_request_error",
     "max_completion_tokens"),
    ({"model": "gpt-4o-mini", "messages": USER, "stop": ["a", "b", "c", "d", "e"]}, "invalid_request_error", "stop"),
    ({"model": "gpt-4o-mini", "messages": USER, "stop": ""}, "invalid_request_error", "stop"),
    ({"model": "gpt-4o-mini", "messages": USER, "n": 0}, "invalid_request_error", "n"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a\x00b"}]}, "invalid_request_error",
     "messages[0].content"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user"}]}, "invalid_request_error", "messages[0].content"),
    ({"model": "gpt-4o-mini", "messages": ["hello"]}, "invalid_request_error", "messages[0]"),
    ({"model": "gpt-4o-mini", "messages": USER, "n": 2}, "unsupported_parameter", "n"),
    ({"model": "gpt-4o-mini", "messages": USER, "tool_choice": "auto"}, "unsupported_parameter", "tool_choice"),
    ({"model": "gpt-4o-mini", "messages": USER, "functions": []}, "unsupported_parameter", "functions"),
    ({"model": "gpt-4o-mini", "messages": USER, "audio": {}}, "unsupported_parameter", "audio"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "tool", "content": "x"}]}, "unsupported_parameter",
     "messages[0].role"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x", "name": "bob"}]},
     "unsupported_parameter", "messages[0].name"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
     "unsupported_parameter", "messages[0].content[1].type"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "code", "param"), CASES)
def test_bad_requests_name_the_parameter(v1, key, body, code, param):
    error_of(v1.post("/v1/chat/completions", json=body, headers=key), 400, code, param)


@pytest.mark.parametrize("cap", ["abc", "0", "0.000", "5.01", "-1", "1e-3", " 1", "nan"])
def test_the_cost_cap_header_is_checked_like_cost_cap_usd(v1, key, cap):
    body = {"model": "gpt-4o-mini", "messages": USER}
    response = v1.post("/v1/chat/completions", json=body, headers={**key, "X-Relay-Cost-Cap": cap})
    error_of(response, 400, "invalid_request_error", "X-Relay-Cost-Cap")


def test_a_cap_below_the_prompts_cost_is_refused(v1, key):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "word " * 1600}]}
    response = v1.post("/v1/chat/completions", json=body, headers={**key, "X-Relay-Cost-Cap": "0.000001"})
    error = error_of(response, 400, "invalid_request_error", "X-Relay-Cost-Cap")
    assert "prompt" in error["message"]


def test_an_unknown_model_is_404(v1, key):
    response = v1.post("/v1/chat/completions", json={"model": "nope", "messages": USER}, headers=key)
    error_of(response, 404, "model_not_found", "model")
    error_of(v1.get("/v1/models/nope", headers=key), 404, "model_not_found", "model")
