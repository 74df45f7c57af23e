"""The HTTP surface: schemas for every body and query (422), 413, 415, CORS, security headers."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

LONG = "x" * 70_000


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    return error


# -- 422: bodies ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "message"),
        ({"message": None}, "message"),
        ({"message": 5}, "message"),
        ({"message": ""}, "message"),
        ({"message": " \n\t "}, "message"),
        ({"message": "x" * 8193}, "message"),
        ({"message": "hi", "unknown": 1}, "unknown"),
        ({"message": "hi", "model": ""}, "model"),
        ({"message": "hi", "model": "no-such-model"}, "model"),
        ({"message": "hi", "conversation_id": "../etc"}, "conversation_id"),
        ({"message": "hi", "stream_id": "short"}, "stream_id"),
        ({"message": "hi", "stream_id": "x" * 65}, "stream_id"),
        ({"message": "hi", "stream_id": "bad id with spaces"}, "stream_id"),
        ({"message": "hi", "cost_cap_usd": 0}, "cost_cap_usd"),
        ({"message": "hi", "cost_cap_usd": -1}, "cost_cap_usd"),
        ({"message": "hi", "cost_cap_usd": 5.01}, "cost_cap_usd"),
        ({"message": "hi", "cost_cap_usd": "0.1"}, "cost_cap_usd"),
        ({"message": "hi", "cost_cap_usd": True}, "cost_cap_usd"),
        ({"message": "hi", "max_tokens": 0}, "max_tokens"),
        ({"message": "hi", "max_tokens": 2001}, "max_tokens"),
        ({"message": "hi", "max_tokens": 1.5}, "max_tokens"),
        ({"message": "hi", "max_tokens": True}, "max_tokens"),
    ],
)
def test_stream_body_rules_are_422(client, anon_headers, body, field):
    error = assert_error(client.post("/api/v1/stream", json=body, headers=anon_headers), 422, "validation_error")
    assert field in error["details"]["fields"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "message"),
        ("message=", "message"),
        ("message=hi&max_tokens=abc", "max_tokens"),
        ("message=hi&max_tokens=99999", "max_tokens"),
        ("message=hi&cost_cap_usd=nan", "cost_cap_usd"),
        ("message=hi&surprise=1", "surprise"),
    ],
)
def test_stream_query_rules_are_422(client, anon_headers, query, field):
    error = assert_error(client.get(f"/api/v1/stream?{query}", headers=anon_headers), 422, "validation_error")
    assert field in error["details"]["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ttl_seconds": 59}, "ttl_seconds"),
        ({"ttl_seconds": 604801}, "ttl_seconds"),
        ({"ttl_seconds": "600"}, "ttl_seconds"),
        ({"ttl_seconds": 600, "admin": True}, "admin"),
    ],
)
def test_anon_session_body_rules_are_422(client, body, field):
    error = assert_error(client.post("/api/v1/anon_session", json=body), 422, "validation_error")
    assert field in error["details"]["fields"]


def test_a_body_that_is_not_an_object_is_422(client, anon_headers):
    assert_error(client.post("/api/v1/stream", json=["hi"], headers=anon_headers), 422, "validation_error")


# -- 422: query strings -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/models?debug=1"),
        ("POST", "/api/v1/anon_session?ttl_seconds=60"),
        ("GET", "/api/v1/conversations?page=2"),
        ("POST", "/api/v1/stream?model=gpt-4o"),
        ("GET", "/api/v1/stream/abcdefgh12?after=3"),
        ("GET", "/api/v1/stream/abcdefgh12?last_event_id=-1"),
        ("DELETE", "/api/v1/stream/abcdefgh12?force=1"),
    ],
)
def test_unknown_or_malformed_query_parameters_are_422(client, anon_headers, method, path):
    body = {"message": "hi"} if method == "POST" else None
    assert_error(client.open(path, method=method, json=body, headers=anon_headers), 422, "validation_error")


def test_known_query_parameters_pass(client, anon_headers):
    assert client.get("/api/v1/conversations?user_id=nobody", headers=anon_headers).status_code == 403
    assert client.get("/api/v1/stream/abcdefgh12?last_event_id=3", headers=anon_headers).status_code == 404


# -- 413 and 415 ----------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/stream", "/api/v1/anon_session"])
def test_oversized_bodies_are_413(client, anon_headers, path):
    body = '{"message": "' + LONG + '"}'
    response = client.post(path, data=body, headers={**anon_headers, "Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("path", ["/api/v1/stream", "/api/v1/anon_session"])
@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_bodies_that_are_not_json_are_415(client, anon_headers, path, content_type):
    headers = dict(anon_headers)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(path, data='{"message": "hi", "ttl_seconds": 600}', headers=headers)
    assert_error(response, 415, "unsupported_media_type")


# -- CORS -----------------------------------------------------------------------------------
ALLOWED = "https://app.example.com"


@pytest.fixture
def cors_client(make_app):
    return make_app(ALLOWED_ORIGINS=f"{ALLOWED},https://other.example.com").test_client()


def test_an_allowed_origin_is_answered_with_exposed_headers(cors_client):
    response = cors_client.get("/api/v1/models", headers={"Origin": ALLOWED})
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-request-id", "x-stream-id", "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining",
            "x-ratelimit-reset"} <= exposed  # fmt: skip
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" in response.headers["Vary"]


@pytest.mark.parametrize("origin", ["https://evil.example", "https://app.example.com.evil.example", "null"])
def test_a_disallowed_origin_gets_no_allow_origin(cors_client, origin):
    response = cors_client.get("/api/v1/models", headers={"Origin": origin})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = cors_client.options(
        "/api/v1/stream", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def preflight(client, path: str, request_headers: str):
    """A browser's CORS preflight from the allowed origin for a POST sending `request_headers`;
    the response and the headers it allows (lower case)."""
    response = client.options(
        path,
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": request_headers,
        },
    )
    allowed = {h.strip().lower() for h in response.headers.get("Access-Control-Allow-Headers", "").split(",")}
    return response, allowed


def test_a_preflight_from_an_allowed_origin_allows_the_api_headers_only(cors_client):
    headers = "authorization, content-type, last-event-id, x-evil"
    response, allowed = preflight(cors_client, "/api/v1/stream?message=hi", headers)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert {"authorization", "content-type", "last-event-id"} <= allowed and "x-evil" not in allowed
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "DELETE"} <= methods and not {"PUT", "PATCH"} & methods
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_a_browser_may_send_the_openai_endpoints_cost_cap(cors_client):
    _, allowed = preflight(cors_client, "/v1/chat/completions", "authorization, content-type, x-relay-cost-cap")
    assert {"authorization", "content-type", "x-relay-cost-cap"} <= allowed


def test_without_an_allowlist_no_origin_is_allowed(client):
    response = client.get("/api/v1/models", headers={"Origin": ALLOWED})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_wildcard_never_comes_with_credentials(make_app):
    response = make_app(ALLOWED_ORIGINS="*").test_client().get("/api/v1/models", headers={"Origin": ALLOWED})
    assert response.headers["Access-Control-Allow-Origin"] in ("*", ALLOWED)
    assert "Access-Control-Allow-Credentials" not in response.headers


# -- security headers -------------------------------------------------------------------------
def csp(response) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts if part[0]}


def assert_security_headers(response) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    policy = csp(response)
    assert policy["default-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    for directive in ("script-src", "style-src"):
        assert policy[directive] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no other origin
    assert "Strict-Transport-Security" not in response.headers  # HSTS only in production over HTTPS


@pytest.mark.parametrize("path", ["/api/v1/models", "/no/such/path", "/health"])
def test_api_responses_carry_the_security_headers(client, path):
    assert_security_headers(client.get(path))


def test_an_error_and_a_stream_carry_them_too(client, anon_headers):
    assert_security_headers(client.post("/api/v1/stream", json={}, headers=anon_headers))


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("<style> element")
        if "style" in names or any(name.startswith("on") for name in names):
            self.problems.append(f"inline attribute on <{tag}>")
        for name in ("src", "href"):
            if names.get(name) and re.match(r"^(https?:)?//", names[name]) and tag in ("script", "link"):
                self.problems.append(f"third-party {name} on <{tag}>")


def test_the_widget_page_has_the_headers_and_works_under_its_policy(client):
    response = client.get("/static/magic/index.html")
    assert response.status_code == 200
    assert_security_headers(response)
    parser = _Inline()
    parser.feed(response.get_data(as_text=True))
    assert parser.problems == []  # nothing the CSP would block: scripts and styles are same-origin files
    for asset in ("magic.js", "magic.css"):
        assert_security_headers(client.get(f"/static/magic/{asset}"))
    assert client.get("/").headers["Location"].endswith("/static/magic/index.html")


@pytest.fixture
def production_client(make_app):
    app = make_app(RELAY_ENV="production", TRUSTED_PROXY_COUNT="1", ALLOWED_ORIGINS=ALLOWED)
    return app.test_client()


def test_production_behind_a_proxy_redirects_http_and_sends_hsts(production_client):
    plain = production_client.get("/api/v1/models", headers={"X-Forwarded-Proto": "http"})
    assert plain.status_code in (301, 302) and plain.headers["Location"].startswith("https://")
    secure = production_client.get("/api/v1/models", headers={"X-Forwarded-Proto": "https"})
    assert secure.status_code == 200
    assert "max-age=" in secure.headers["Strict-Transport-Security"]
    assert "includeSubDomains" in secure.headers["Strict-Transport-Security"]
    # Probes inside the network stay plain HTTP.
    assert production_client.get("/health", headers={"X-Forwarded-Proto": "http"}).status_code == 200
