"""JWKS against a real key server on loopback: rotation, floods of unknown kids, outages, pinning."""

from __future__ import annotations

import secrets

import pytest

from app.auth._jwks import JWKSClient
from app.auth._state import EXTENSION, AuthState
from tests.auth.helpers import SigningKey, assert_error, claims
from tests.conftest import bearer

PROTECTED = "/api/v1/conversations"


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def with_clock(app, clock: Clock):
    """The app, its JWKS timed by `clock` (the state a first request would build, built now)."""
    app.extensions[EXTENSION] = AuthState(app.config, clock=clock)
    return app


def ok(client, token: str) -> bool:
    return client.get(PROTECTED, headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("kind", ["RSA", "EC"])
def test_rs256_and_es256_tokens_verify(make_app, key_server, kind):
    key = SigningKey(kind)
    key_server.publish(key)
    client = make_app(JWKS_URL=key_server.url).test_client()
    assert ok(client, key.sign(claims()))


def test_rotation_to_a_new_kid_is_picked_up_once_the_interval_has_passed(make_app, key_server, rsa_key):
    clock = Clock()
    client = with_clock(make_app(JWKS_URL=key_server.url), clock).test_client()
    key_server.publish(rsa_key)
    assert ok(client, rsa_key.sign(claims()))
    rotated = SigningKey("EC")
    key_server.publish(rsa_key, rotated)
    clock.advance(59)  # JWKS_MIN_REFRESH_SECONDS (60) since the last fetch: the unknown kid may not refetch
    assert_error(client.get(PROTECTED, headers=bearer(rotated.sign(claims()))), 401, "invalid_token")
    assert key_server.fetches == 1
    clock.advance(1)
    assert ok(client, rotated.sign(claims()))
    assert key_server.fetches == 2


def test_a_flood_of_unknown_kids_fetches_at_most_once_per_interval(make_app, key_server, rsa_key):
    key_server.publish(rsa_key)
    client = make_app(JWKS_URL=key_server.url, LIMIT_AUTH_FAILURES="0").test_client()
    assert ok(client, rsa_key.sign(claims()))
    assert key_server.fetches == 1
    for _ in range(50):
        token = rsa_key.sign(claims(), kid=secrets.token_hex(8))
        assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")
    assert key_server.fetches == 1  # the first fetch was under a minute ago: none of the 50 refetched
    assert ok(client, rsa_key.sign(claims()))


def test_refetch_interval_is_respected_with_a_clock(key_server, rsa_key):
    now = [1000.0]
    client = JWKSClient(key_server.url, min_refresh_s=60, max_age_s=300, timeout_s=2, clock=lambda: now[0])
    key_server.publish(rsa_key)
    assert client.key(rsa_key.kid) is not None
    for second in range(0, 180):
        now[0] = 1000.0 + second
        assert client.key(f"unknown-{second}") is None
    # t=1000 (first fetch), then t=1060 and t=1120: one fetch per interval, not one per unknown kid.
    assert key_server.fetches == 3


def test_key_server_down_keeps_the_cached_keys(make_app, key_server, rsa_key):
    clock = Clock()
    client = with_clock(make_app(JWKS_URL=key_server.url), clock).test_client()
    key_server.publish(rsa_key)
    assert ok(client, rsa_key.sign(claims()))
    key_server.stop()
    clock.advance(301)  # past JWKS_CACHE_SECONDS (300): a refetch is tried, fails, and the keys stay
    assert ok(client, rsa_key.sign(claims()))
    assert ok(client, rsa_key.sign(claims(sub="another-user")))
    stranger = SigningKey("RSA")
    assert_error(client.get(PROTECTED, headers=bearer(stranger.sign(claims()))), 401, "invalid_token")


def test_no_keys_ever_fetched_is_503_not_401(make_app, key_server, rsa_key):
    key_server.stop()
    client = make_app(JWKS_URL=key_server.url).test_client()
    response = client.get(PROTECTED, headers=bearer(rsa_key.sign(claims())))
    assert_error(response, 503, "dependency_unavailable")
    assert int(response.headers["Retry-After"]) >= 1


def test_a_key_removed_from_the_set_stops_working_once_the_cache_ages(make_app, key_server, rsa_key):
    clock = Clock()
    client = with_clock(make_app(JWKS_URL=key_server.url), clock).test_client()
    successor = SigningKey("RSA")
    key_server.publish(rsa_key, successor)
    token = rsa_key.sign(claims())
    assert ok(client, token)
    key_server.publish(successor)  # rsa_key was compromised and withdrawn
    clock.advance(299)  # within JWKS_CACHE_SECONDS (300): the cached set still holds it, no refetch
    assert ok(client, token)
    assert key_server.fetches == 1
    clock.advance(1)
    assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")
    assert key_server.fetches == 2
    assert ok(client, successor.sign(claims()))


def test_keys_are_pinned_to_their_algorithm(make_app, key_server, rsa_key, ec_key):
    key_server.publish(rsa_key, ec_key)
    client = make_app(JWKS_URL=key_server.url).test_client()
    lying = [
        ec_key.sign(claims(), kid=rsa_key.kid),  # ES256 signature presented as the RSA key's
        rsa_key.sign(claims(), kid=ec_key.kid),
    ]
    for token in lying:
        assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")


def test_symmetric_and_weak_keys_in_the_set_are_ignored(make_app, key_server, rsa_key):
    import jwt

    shared = secrets.token_bytes(32)
    oct_jwk = {"kty": "oct", "kid": "shared", "k": jwt.utils.base64url_encode(shared).decode(), "alg": "HS256"}
    key_server.publish(rsa_key, extra=[oct_jwk])
    client = make_app(JWKS_URL=key_server.url, JWT_SECRET="").test_client()
    token = jwt.encode(claims(), shared, algorithm="HS256", headers={"kid": "shared"})
    assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")
    assert ok(client, rsa_key.sign(claims()))


def test_redirects_are_not_followed(make_app, key_server, rsa_key):
    from tests.auth.helpers import KeyServer

    elsewhere = KeyServer()
    elsewhere.publish(rsa_key)
    elsewhere.start()
    try:
        key_server.redirect_to = elsewhere.url
        client = make_app(JWKS_URL=key_server.url).test_client()
        assert_error(client.get(PROTECTED, headers=bearer(rsa_key.sign(claims()))), 503, "dependency_unavailable")
        assert elsewhere.fetches == 0
    finally:
        elsewhere.stop()


def test_plain_http_is_refused_off_loopback(make_app, rsa_key):
    client = make_app(JWKS_URL="http://jwks.example.com/.well-known/jwks.json").test_client()
    assert_error(client.get(PROTECTED, headers=bearer(rsa_key.sign(claims()))), 503, "dependency_unavailable")
