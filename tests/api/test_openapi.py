"""GET /openapi.json, and schemathesis against it: no 5xx, and every error in the contract's shape."""

from __future__ import annotations

import json
import secrets

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from app.auth import anonymous

EXAMPLES = 20  # per operation and credential: bounded, the whole run stays well under a minute


def test_the_document_is_openapi_3_and_covers_every_route(app, client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "openapi.document", "widget.index"):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented
    stream = document["components"]["schemas"]["StreamRequest"]
    assert stream["additionalProperties"] is False and stream["required"] == ["message"]
    assert stream["properties"]["max_tokens"]["maximum"] == app.config["MAX_TOKENS_PER_REQUEST"]
    post = document["paths"]["/api/v1/stream"]["post"]
    assert post["security"] == [{"bearer": []}]
    assert "text/event-stream" in post["responses"]["200"]["content"]
    names = {p["name"] for p in document["paths"]["/api/v1/stream"]["get"]["parameters"]}
    assert names == set(stream["properties"])
    assert document["components"]["responses"]["429"]["content"]["application/json"]["schema"]


@pytest.fixture
def fuzzed_app(make_app, redis_client):
    # Admitted streams end quickly (no worker here): the fuzzer reads each body to its end. The
    # fuzzer's random tokens would trip auth_failures and turn every later answer into a 429.
    prefix = f"relayfuzz-{secrets.token_hex(4)}:"
    yield make_app(
        QUEUE_TIMEOUT_SECONDS="0.05", HEARTBEAT_SECONDS="0.05", LIMIT_AUTH_FAILURES="0", REDIS_KEY_PREFIX=prefix
    )
    for key in redis_client.scan_iter(match=prefix + "*", count=1000):
        redis_client.delete(key)


def check_response(case, response) -> None:
    where = f"{case.method} {case.formatted_path} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.content[:300]!r}"
    if response.status_code >= 400:
        body = json.loads(response.content)
        error = body["error"]
        assert set(body) == {"error"}, where
        assert set(error) == {"code", "message", "details", "request_id"}, where
        assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str), where
        assert isinstance(error["details"], dict), where
        if response.status_code in (429, 503):
            assert int(response.headers["retry-after"][0]) >= 1, where


@pytest.mark.parametrize("credential", ["none", "anonymous", "user"])
def test_schemathesis_finds_no_server_error_and_no_broken_error_shape(fuzzed_app, user_a_headers, credential):
    headers = {
        "none": {},
        "anonymous": {"Authorization": f"Bearer {anonymous.mint(fuzzed_app.config['SECRET_KEY'], 3600)[0]}"},
        "user": user_a_headers,
    }[credential]
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def fuzz(case) -> None:
            check_response(case, case.call(headers=headers))

        fuzz()
