"""The auth_failures limit: after N failed authentications from one IP, 429 before any token is parsed."""

from __future__ import annotations

import time

import jwt

from tests.auth.helpers import assert_error, claims
from tests.conftest import bearer
from tests.support import free_port

PROTECTED = "/api/v1/conversations"


def fail(client, times: int, **environ) -> None:
    for _ in range(times):
        assert_error(client.get(PROTECTED, headers=bearer("garbage"), environ_base=environ), 401, "invalid_token")


def test_default_is_20_failures_per_300_seconds(client, user_a_headers):
    fail(client, 20)
    response = client.get(PROTECTED, headers=user_a_headers)  # a valid token: refused all the same
    error = assert_error(response, 429, "rate_limited")
    assert error["details"]["limit"] == "auth_failures"
    assert 290 <= int(response.headers["Retry-After"]) <= 300
    assert response.headers["X-RateLimit-Limit"] == "20"
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_checked_before_the_token_is_parsed(make_app, redis_client):
    app = make_app(LIMIT_AUTH_FAILURES="3/60")
    client = app.test_client()
    fail(client, 3)
    for header in ("garbage", "relay_sk_" + "x" * 43, "A" * 1_000_000):
        response = client.get(PROTECTED, headers=bearer(header))
        assert_error(response, 429, "rate_limited")
    keys = list(redis_client.scan_iter(match=app.config["REDIS_KEY_PREFIX"] + "auth:*failures*"))
    assert len(keys) == 1 and redis_client.llen(keys[0]) == 3  # refusals did not count as more failures


def test_other_ips_and_requests_without_credentials_are_unaffected(make_app, user_a_headers):
    client = make_app(LIMIT_AUTH_FAILURES="3/60").test_client()
    fail(client, 3)
    assert_error(client.get(PROTECTED), 401, "missing_token")
    assert client.get(PROTECTED, headers=user_a_headers, environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200
    assert client.get("/health").status_code == 200


def test_x_forwarded_for_is_not_trusted_by_default(make_app, user_a_headers):
    client = make_app(LIMIT_AUTH_FAILURES="3/60").test_client()
    for n in range(3):
        response = client.get(PROTECTED, headers={**bearer("garbage"), "X-Forwarded-For": f"198.51.100.{n}"})
        assert_error(response, 401, "invalid_token")
    spoofed = {**user_a_headers, "X-Forwarded-For": "198.51.100.77"}
    assert_error(client.get(PROTECTED, headers=spoofed), 429, "rate_limited")


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(make_app, user_a_headers):
    client = make_app(LIMIT_AUTH_FAILURES="3/60", TRUSTED_PROXY_COUNT=1).test_client()
    for _ in range(3):
        response = client.get(PROTECTED, headers={**bearer("garbage"), "X-Forwarded-For": "198.51.100.1"})
        assert_error(response, 401, "invalid_token")
    blocked = {**user_a_headers, "X-Forwarded-For": "198.51.100.1"}
    assert_error(client.get(PROTECTED, headers=blocked), 429, "rate_limited")
    other = {**user_a_headers, "X-Forwarded-For": "198.51.100.2"}
    assert client.get(PROTECTED, headers=other).status_code == 200


def test_the_window_ends(make_app, user_a_headers):
    client = make_app(LIMIT_AUTH_FAILURES="2/1").test_client()
    fail(client, 2)
    assert_error(client.get(PROTECTED, headers=user_a_headers), 429, "rate_limited")
    time.sleep(1.2)
    assert client.get(PROTECTED, headers=user_a_headers).status_code == 200


def test_expired_tokens_do_not_count(make_app, base_env):
    """An expired token had a valid signature: nothing was guessed."""
    client = make_app(LIMIT_AUTH_FAILURES="2/60").test_client()
    old = int(time.time()) - 3600
    expired = jwt.encode(claims(iat=old, exp=old + 60), base_env["JWT_SECRET"], algorithm="HS256")
    for _ in range(5):
        assert_error(client.get(PROTECTED, headers=bearer(expired)), 401, "token_expired")


def test_zero_turns_the_limit_off(make_app):
    client = make_app(LIMIT_AUTH_FAILURES="0").test_client()
    fail(client, 30)


def test_redis_down_is_503_never_401_or_500(make_app, user_a_headers):
    client = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/15").test_client()
    response = client.get(PROTECTED, headers=user_a_headers)
    assert_error(response, 503, "dependency_unavailable")
    assert int(response.headers["Retry-After"]) >= 1


def test_reaching_the_limit_is_audited_once(make_app):
    from app.db import AuditEvent
    from app.extensions import database

    client = make_app(LIMIT_AUTH_FAILURES="2/60").test_client()
    fail(client, 2)
    for _ in range(3):
        assert_error(client.get(PROTECTED, headers=bearer("garbage")), 429, "rate_limited")
    with database.session() as session:
        types = [event.type for event in session.query(AuditEvent)]
    assert types.count("rate_limited") == 1 and types.count("auth_failure") == 2


def test_a_second_process_grants_at_most_one_more_guess(make_app, user_a_headers):
    """Checks are reused for AUTH_CHECK_CACHE_SECONDS, but every failure is counted in Redis at once
    and its count blocks the IP in that process: spreading guesses over processes gains one each."""
    one = make_app(LIMIT_AUTH_FAILURES="3/60", AUTH_CHECK_CACHE_SECONDS=30).test_client()
    two = make_app(LIMIT_AUTH_FAILURES="3/60", AUTH_CHECK_CACHE_SECONDS=30).test_client()
    assert one.get(PROTECTED, headers=user_a_headers).status_code == 200  # one remembers: not blocked
    fail(two, 3)
    assert_error(two.get(PROTECTED, headers=user_a_headers), 429, "rate_limited")
    fail(one, 1)  # the one extra guess; its count tells `one` the IP is blocked
    assert_error(one.get(PROTECTED, headers=bearer("garbage")), 429, "rate_limited")
    assert_error(one.get(PROTECTED, headers=user_a_headers), 429, "rate_limited")


def test_the_window_moves_so_no_burst_gets_through_at_its_boundary(make_app):
    """A fixed window would allow 3 failures just before its end and 3 more just after."""
    client = make_app(LIMIT_AUTH_FAILURES="3/2", AUTH_CHECK_CACHE_SECONDS="0").test_client()
    fail(client, 2)
    time.sleep(1.5)
    fail(client, 1)  # three inside the last two seconds: blocked
    assert_error(client.get(PROTECTED, headers=bearer("garbage")), 429, "rate_limited")
    time.sleep(0.7)  # the first two have left the window; the third has not
    fail(client, 2)
    refused = client.get(PROTECTED, headers=bearer("garbage"))
    assert_error(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 2
