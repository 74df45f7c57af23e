"""Tokens shaped to crash a parser: odd types in the header and claims, deep nesting, odd JWKS entries.
Every one is a clean 401 (or, for the key set, an ignored key), never a 500."""

from __future__ import annotations

import pytest

from tests.auth.helpers import SigningKey, assert_error, b64url, claims, forge
from tests.conftest import bearer

PROTECTED = "/api/v1/conversations"
ODD = [None, 1, 1.5, True, [], ["x"], {}, {"a": 1}, "", "\x00"]


@pytest.mark.parametrize("value", ODD, ids=repr)
@pytest.mark.parametrize("field", ["alg", "kid", "typ", "crit", "jku", "x5u", "jwk", "x5c"])
def test_odd_header_values(client, base_env, field, value):
    """Validly signed with JWT_SECRET, yet a header Relay does not understand: refused all the same."""
    header = {"alg": "HS256", "typ": "JWT", field: value}
    token = forge(header, claims(), hmac_key=base_env["JWT_SECRET"].encode())
    assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("crit", ["exp"]),  # an extension Relay does not implement: RFC 7515 says reject
        ("crit", ["b64"]),
        ("typ", "JWS"),
        ("kid", "k" * 256),
    ],
)
def test_plausible_but_unsupported_headers_are_refused(client, base_env, field, value):
    header = {"alg": "HS256", "typ": "JWT", field: value}
    token = forge(header, claims(), hmac_key=base_env["JWT_SECRET"].encode())
    assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize("extra", [{}, {"typ": "jwt"}, {"typ": "at+jwt"}, {"kid": "supabase-legacy-1"}])
def test_ordinary_headers_still_pass(client, base_env, extra):
    """The refusals above are not a blanket one: the headers identity providers really send are fine."""
    token = forge({"alg": "HS256", "typ": "JWT", **extra}, claims(), hmac_key=base_env["JWT_SECRET"].encode())
    assert client.get(PROTECTED, headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("field", ["jku", "x5u"])
def test_a_key_url_in_the_token_is_never_fetched(make_app, key_server, rsa_key, field):
    """A token naming where its key lives (even the configured key server) is refused without a fetch there."""
    key_server.publish(rsa_key)
    client = make_app(JWKS_URL=key_server.url).test_client()
    assert client.get(PROTECTED, headers=bearer(rsa_key.sign(claims()))).status_code == 200
    planted = key_server.url.replace("/jwks.json", "/attacker.json")
    token = rsa_key.sign(claims(), **{field: planted})
    assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")
    assert key_server.paths == ["/jwks.json"]


@pytest.mark.parametrize("value", ODD, ids=repr)
@pytest.mark.parametrize("field", ["sub", "exp", "iat", "nbf", "aud", "iss", "role", "is_anonymous", "email", "jti"])
def test_odd_claim_values(client, base_env, field, value):
    token = forge({"alg": "HS256", "typ": "JWT"}, {**claims(), field: value}, hmac_key=base_env["JWT_SECRET"].encode())
    response = client.get(PROTECTED, headers=bearer(token))
    assert response.status_code in (200, 401), response.get_data(as_text=True)
    if response.status_code == 401:
        code = "token_expired" if field == "exp" and value in (1, 1.5, True) else "invalid_token"
        assert_error(response, 401, code)


@pytest.mark.parametrize(
    "segment",
    [
        b64url(b"[" * 3000 + b"]" * 3000),
        b64url(b'{"a":' * 2000 + b"1" + b"}" * 2000),
        b64url(b"\xff\xfe\x00"),
        b64url(b'"just a string"'),
        "!!!not-base64!!!",
    ],
)
def test_unparseable_segments(client, segment):
    for token in (f"{segment}.{segment}.sig", f"eyJhbGciOiJIUzI1NiJ9.{segment}.sig"):
        assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")


def test_odd_jwks_entries_are_ignored(make_app, key_server, rsa_key):
    odd = [
        {"kty": ["RSA"], "kid": "a"},
        {"kty": "EC", "crv": {"x": 1}, "kid": "b"},
        {"kty": "RSA", "kid": ["c"]},
        {"kty": "RSA", "kid": "d", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-521", "kid": "e"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "f", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        "not an object",
        None,
    ]
    weak = SigningKey("RSA")
    key_server.publish(rsa_key, extra=odd)
    client = make_app(JWKS_URL=key_server.url).test_client()
    assert client.get(PROTECTED, headers=bearer(rsa_key.sign(claims()))).status_code == 200
    assert_error(client.get(PROTECTED, headers=bearer(weak.sign(claims(), kid="d"))), 401, "invalid_token")


@pytest.mark.parametrize(("field", "status"), [("sub", 401), ("email", 200)])
def test_control_characters_never_reach_the_database(make_app, db_url, base_env, field, status):
    """PostgreSQL refuses NUL in text: a signed token carrying one must not become a 500."""
    client = make_app(DATABASE_URL=db_url).test_client()
    payload = {**claims("nul-test"), field: "bad\x00value"}
    token = forge({"alg": "HS256", "typ": "JWT"}, payload, hmac_key=base_env["JWT_SECRET"].encode())
    response = client.get(PROTECTED, headers=bearer(token))
    assert response.status_code == status, response.get_data(as_text=True)
