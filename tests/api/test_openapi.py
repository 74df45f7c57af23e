"""GET /openapi.json: every route, described exactly (tests/api/test_schemathesis.py proves it against a running Relay)."""

from __future__ import annotations

import re

import pytest

from app.api.openapi import MESSAGE_PATTERN, SKIP, undocumented
from app.auth import SCOPES
from app.schemas import load
from app.schemas.stream import stream_request_schema
from tests.auth.helpers import assert_error


@pytest.fixture
def document(client):
    return client.get("/openapi.json").get_json()


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method.upper(), operation


def test_the_document_covers_every_route(app, document):
    assert document["openapi"] == "3.2.0"
    documented = {(path, method) for path, method, _ in operations(document)}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SKIP:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented


def test_every_route_has_a_doc(app):
    # A new route: put @doc(...) (app/api/_doc.py) right under its route decorator.
    assert undocumented(app) == []


def test_sse_answers_are_event_streams_described_event_by_event(document):
    for path, method in [("/api/v1/stream", "post"), ("/api/v1/stream", "get"), ("/api/v1/stream/{stream_id}", "get")]:
        ok = document["paths"][path][method]["responses"]["200"]
        assert list(ok["content"]) == ["text/event-stream"]
        assert ok["content"]["text/event-stream"] == {"itemSchema": {"$ref": "#/components/schemas/StreamEvent"}}
        assert ok["headers"]["X-Stream-Id"]["required"] is True
    variants = document["components"]["schemas"]["StreamEvent"]["oneOf"]
    assert [v["properties"]["event"]["const"] for v in variants] == [
        "stream",
        "message_chunk",
        "done",
        "error",
        "heartbeat",
    ]
    done = variants[2]["properties"]["data"]
    assert done["contentMediaType"] == "application/json"
    assert done["contentSchema"] == {"$ref": "#/components/schemas/Done"}
    assert document["components"]["schemas"]["Done"]["properties"]["finish_reason"]["enum"] == [
        "stop", "length", "cost_cap", "cancelled"
    ]  # fmt: skip


def test_every_status_each_stream_operation_answers(document):
    def statuses(path, method):
        return sorted(document["paths"][path][method]["responses"])

    assert statuses("/api/v1/stream/{stream_id}", "delete") == ["202", "401", "403", "404", "422", "429", "503"]
    assert statuses("/api/v1/stream/{stream_id}", "get") == ["200", "204", "401", "403", "404", "422", "429", "503"]
    post = statuses("/api/v1/stream", "post")
    assert post == ["200", "400", "401", "403", "404", "409", "413", "415", "422", "429", "503"]
    assert statuses("/health", "get") == ["200"]
    assert statuses("/health/ready", "get") == ["200", "503"]


def test_constraints_are_in_the_schemas(app, document):
    schemas = document["components"]["schemas"]
    stream = schemas["StreamRequest"]
    assert stream["additionalProperties"] is False and stream["required"] == ["message"]
    assert stream["properties"]["model"]["enum"] == list(app.extensions["relay.streams"].catalog.models)
    assert stream["properties"]["max_tokens"]["maximum"] == app.config["MAX_TOKENS_PER_REQUEST"]
    cap = stream["properties"]["cost_cap_usd"]
    assert cap["exclusiveMinimum"] == 0 and "minimum" not in cap and cap["maximum"] == app.config["MAX_COST_CAP_USD"]
    assert schemas["CreateKey"]["properties"]["scopes"]["items"]["enum"] == sorted(SCOPES)
    ttl = schemas["AnonSession"]["properties"]["ttl_seconds"]
    assert (ttl["minimum"], ttl["maximum"]) == (60, app.config["ANON_TOKEN_MAX_TTL"])
    names = {p["name"] for p in document["paths"]["/api/v1/stream"]["get"]["parameters"] if p["in"] == "query"}
    assert names == set(stream["properties"])


def test_security_names_the_scopes_each_operation_needs(app, document):
    needed = {
        ("/api/v1/stream", "POST"): ["chat"],
        ("/api/v1/conversations", "GET"): ["chat"],
        ("/api/v1/api_keys", "POST"): ["admin"],
        ("/admin/audit", "GET"): ["admin"],
    }
    for (path, method), scopes in needed.items():
        assert document["paths"][path][method.lower()]["security"] == [{"bearer": scopes}]
    for path, method, operation in operations(document):
        if path == "/webhooks/relay":
            continue  # signed, not bearer: its 401s carry a Standard-Webhooks challenge
        view = app.view_functions[operation["operationId"].rsplit(".", 1)[0]]
        scopes = getattr(view, "required_scopes", None)
        assert ("401" in operation["responses"]) == (scopes is not None) == ("security" in operation), (path, method)
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "A user JWT, an anonymous token or an API key"
    }  # fmt: skip


def test_errors_have_the_contract_shape_and_headers(document):
    assert set(document["components"]["schemas"]["Error"]["properties"]) == {"error"}
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            assert "X-Request-ID" in response["headers"], (path, method, status)
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"], (path, method, status)
            if status == "401":
                assert "WWW-Authenticate" in response["headers"]
            limited = not path.startswith(("/health", "/metrics"))
            assert ("X-RateLimit-Remaining" in response["headers"]) == limited, (path, method, status)


def test_the_message_pattern_agrees_with_the_validator(app):
    schema = stream_request_schema(app.config)
    pattern = re.compile(MESSAGE_PATTERN)
    samples = [chr(c) for c in range(0x3100) if not 0xD800 <= c <= 0xDFFF] + ["\ufeff", "\U0001f600"]
    for character in samples:
        for message in (character, f"a{character}", f"{character}\t "):
            try:
                load(schema, {"message": message})
                valid = True
            except Exception:  # noqa: BLE001 - the 422
                valid = False
            assert valid == bool(pattern.fullmatch(message)), repr(message)


def test_a_json_integer_may_be_written_as_a_float(client):
    # JSON Schema's `integer` holds 3600.0: the document allows it, so the API must too (it was a 422).
    assert client.post("/api/v1/anon_session", json={"ttl_seconds": 3600.0}).status_code == 200
    assert_error(client.post("/api/v1/anon_session", json={"ttl_seconds": 3600.5}), 422, "validation_error")
    assert_error(client.post("/api/v1/anon_session", json={"ttl_seconds": "3600"}), 422, "validation_error")


@pytest.mark.parametrize("query", ["days=%D9%A3", "days=%205", "days=1_0", "days=%EF%BC%93"])
def test_query_integers_are_ascii_digits(client, user_a_headers, query):
    # int() takes Arabic-Indic and full-width digits, spaces and underscores; the document's integer does not.
    assert_error(client.get(f"/admin/usage?{query}", headers=user_a_headers), 422, "validation_error")


@pytest.mark.parametrize("query", ["type=api_key_created%0A", "cursor=12%0A"])
def test_query_patterns_match_the_whole_value(client, user_a_headers, query):
    # `$` also matches before a trailing newline; the document's pattern does not.
    assert_error(client.get(f"/admin/audit?{query}", headers=user_a_headers), 422, "validation_error")


def test_a_key_name_matches_whole(client, user_a_headers):
    body = {"name": "ci key\n", "scopes": ["chat"]}
    assert_error(client.post("/api/v1/api_keys", json=body, headers=user_a_headers), 422, "validation_error")
