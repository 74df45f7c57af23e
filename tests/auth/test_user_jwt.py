"""User JWTs from the attacker's side: every forged, stale or misdirected token gets its exact answer."""

from __future__ import annotations

import secrets
import time

import jwt
import pytest

from tests.auth.helpers import SigningKey, assert_error, claims, forge
from tests.conftest import bearer

PROTECTED = "/api/v1/conversations"  # needs scope chat: any valid principal passes


@pytest.fixture
def secret(base_env) -> str:
    return base_env["JWT_SECRET"]


def hs256(secret: str, payload: dict, **headers) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


def test_valid_token_is_accepted(client, secret):
    assert client.get(PROTECTED, headers=bearer(hs256(secret, claims()))).status_code == 200


def test_no_token(client):
    assert_error(client.get(PROTECTED), 401, "missing_token")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30",
        "Bearer ....",
        "Bearer " + "\u00e9" * 10,
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Token abc",
    ],
)
def test_garbage(client, header):
    assert_error(client.get(PROTECTED, headers={"Authorization": header}), 401, "invalid_token")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"])
def test_alg_none_in_every_spelling(client, alg, signature):
    token = forge({"alg": alg, "typ": "JWT"}, claims(), signature=signature)
    assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")


def test_wrong_secret(client):
    token = hs256(secrets.token_urlsafe(48), claims())
    assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")


def test_tampered_payload_keeps_no_signature(client, secret):
    header, _, signature = hs256(secret, claims("someone")).split(".")
    other = forge({"alg": "HS256", "typ": "JWT"}, claims("someone-else")).split(".")[1]
    assert_error(client.get(PROTECTED, headers=bearer(f"{header}.{other}.{signature}")), 401, "invalid_token")


@pytest.mark.parametrize("configured_secret", [True, False])
def test_hs256_signed_with_the_jwks_public_key(make_app, key_server, rsa_key, configured_secret):
    """Key confusion: the attacker knows the public key and signs HS256 with it."""
    key_server.publish(rsa_key)
    app = make_app(JWKS_URL=key_server.url, JWT_SECRET=secrets.token_urlsafe(40) if configured_secret else "")
    client = app.test_client()
    assert client.get(PROTECTED, headers=bearer(rsa_key.sign(claims()))).status_code == 200
    for pem in (rsa_key.public_pem(), rsa_key.public_pem().strip()):
        token = forge({"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}, claims(), hmac_key=pem)
        assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")


def test_rs256_token_when_only_hs256_is_configured(client, rsa_key):
    assert_error(client.get(PROTECTED, headers=bearer(rsa_key.sign(claims()))), 401, "invalid_token")


def test_hs256_token_when_only_jwks_is_configured(make_app, key_server, rsa_key, secret):
    key_server.publish(rsa_key)
    client = make_app(JWKS_URL=key_server.url, JWT_SECRET="").test_client()
    assert client.get(PROTECTED, headers=bearer(rsa_key.sign(claims()))).status_code == 200
    assert_error(client.get(PROTECTED, headers=bearer(hs256(secret, claims()))), 401, "invalid_token")


def test_unknown_kid(make_app, key_server, rsa_key):
    key_server.publish(rsa_key)
    client = make_app(JWKS_URL=key_server.url).test_client()
    stranger = SigningKey("RSA")
    for token in (stranger.sign(claims()), stranger.sign(claims(), kid=rsa_key.kid)):
        assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")


def test_expired(client, secret):
    old = int(time.time()) - 3600
    token = hs256(secret, claims(iat=old, exp=old + 60))
    assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "token_expired")


def test_expiry_within_the_leeway_is_accepted(client, secret):
    now = int(time.time())
    assert client.get(PROTECTED, headers=bearer(hs256(secret, claims(iat=now - 60, exp=now - 5)))).status_code == 200


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_yet_valid(client, secret, claim):
    token = hs256(secret, claims(**{claim: int(time.time()) + 3600}))
    assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize("missing", ["exp", "sub", "iat", "aud"])
def test_missing_required_claim(client, secret, missing):
    payload = claims()
    del payload[missing]
    assert_error(client.get(PROTECTED, headers=bearer(hs256(secret, payload))), 401, "invalid_token")


@pytest.mark.parametrize("sub", ["", 42, None, "x" * 256])
def test_unusable_subject(client, secret, sub):
    payload = {**claims(), "sub": sub}
    token = forge({"alg": "HS256", "typ": "JWT"}, payload, hmac_key=secret.encode())
    assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize("aud", ["anon", "service_role", "relay:anonymous", ["other"], "AUTHENTICATED"])
def test_wrong_audience(client, secret, aud):
    assert_error(client.get(PROTECTED, headers=bearer(hs256(secret, claims(aud=aud)))), 401, "invalid_token")


def test_issuer_is_checked_when_configured(make_app, secret):
    client = make_app(JWT_ISSUER="https://idp.example.com/auth/v1").test_client()
    good = hs256(secret, claims(iss="https://idp.example.com/auth/v1"))
    assert client.get(PROTECTED, headers=bearer(good)).status_code == 200
    for payload in (claims(iss="https://evil.example.com/auth/v1"), claims()):
        assert_error(client.get(PROTECTED, headers=bearer(hs256(secret, payload))), 401, "invalid_token")


def test_anonymous_relay_issuer_cannot_be_claimed_by_a_user_token(client, secret):
    """A token signed with JWT_SECRET that claims Relay's anonymous issuer is verified as anonymous, and fails."""
    token = hs256(secret, claims(iss="relay", aud="relay:anonymous", anon=True, sub="anon_x"))
    assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize(
    "payload",
    [
        # Supabase's project keys as issued: no sub, no aud.
        {"iss": "supabase", "ref": "abcdefghijklmnop", "role": "anon", "iat": 1700000000, "exp": 4100000000},
        {"iss": "supabase", "ref": "abcdefghijklmnop", "role": "service_role", "iat": 1700000000, "exp": 4100000000},
        # Even dressed up as a user token.
        claims(role="anon"),
        claims(role="service_role"),
    ],
)
def test_supabase_project_keys_are_never_users(client, secret, payload):
    assert_error(client.get(PROTECTED, headers=bearer(hs256(secret, payload))), 401, "invalid_token")


def test_supabase_anonymous_sign_in_is_an_anonymous_principal(client, secret):
    token = hs256(secret, claims(sub="6b0c1d7e-anon", is_anonymous=True))
    assert client.get(PROTECTED, headers=bearer(token)).status_code == 200
    assert_error(client.get("/api/v1/api_keys", headers=bearer(token)), 403, "insufficient_scope")


@pytest.mark.parametrize("size", [8193, 64 * 1024, 1024 * 1024])
def test_oversized_token_is_a_clean_401(client, size):
    token = "eyJ" + "A" * (size - 3)
    assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")


def test_allowlist_refuses_everyone_else(make_app, secret):
    client = make_app(AUTHORIZED_USERS="alice@example.com,sub-of-bob").test_client()
    assert (
        client.get(
            PROTECTED, headers=bearer(hs256(secret, claims("a1", email="Alice@Example.com", email_verified=True)))
        ).status_code
        == 200
    )
    assert client.get(PROTECTED, headers=bearer(hs256(secret, claims("sub-of-bob")))).status_code == 200
    for payload in (
        claims("mallory", email="mallory@example.com"),
        claims("a2", email="alice@example.com", email_verified=False),
        claims("sub-of-bob-2"),
    ):
        assert_error(client.get(PROTECTED, headers=bearer(hs256(secret, payload))), 403, "user_not_allowed")


def test_no_provisioning_refuses_unknown_users(make_app, secret):
    client = make_app(AUTO_PROVISION_USERS="false").test_client()
    assert_error(client.get(PROTECTED, headers=bearer(hs256(secret, claims("newcomer")))), 403, "user_not_allowed")


def test_claims_never_grant_a_tenant_or_role(client, secret, user_a_headers, user_b_headers):
    """Role, tenant and app_metadata claims are ignored: tenant and role come from the database."""
    key_a = client.post("/api/v1/api_keys", json={"name": "a", "scopes": ["chat"]}, headers=user_a_headers)
    tenant_a = key_a.get_json()["tenant_id"]
    member = hs256(
        secret,
        claims(
            f"mallory-{secrets.token_hex(3)}",
            role="admin",
            tenant_id=tenant_a,
            app_metadata={"tenant_id": tenant_a, "role": "admin"},
        ),
    )
    listed = client.get("/api/v1/api_keys", headers=bearer(member)).get_json()["api_keys"]
    assert listed == []  # provisioned into a personal tenant of its own, never tenant A


def test_key_urls_in_the_token_header_are_never_fetched(make_app, key_server, rsa_key):
    """jku, x5u, jwk and kid are never used to fetch or read anything."""
    trap = SigningKey("RSA")
    key_server.publish(rsa_key)
    from tests.auth.helpers import KeyServer

    attacker = KeyServer()
    attacker.publish(trap)
    attacker.start()
    try:
        client = make_app(JWKS_URL=key_server.url, JWKS_MIN_REFRESH_SECONDS=0).test_client()
        headers = [
            {"jku": attacker.url},
            {"x5u": attacker.url},
            {"jwk": trap.jwk()},
            {"kid": attacker.url},
            {"kid": "../../../../etc/passwd"},
            {"kid": "file:///etc/passwd"},
        ]
        for extra in headers:
            token = trap.sign(claims(), **extra)
            assert_error(client.get(PROTECTED, headers=bearer(token)), 401, "invalid_token")
        assert attacker.fetches == 0
        assert all(path == "/jwks.json" for path in key_server.paths)
    finally:
        attacker.stop()
