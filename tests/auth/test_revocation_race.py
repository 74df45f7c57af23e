"""A verification that read a key before its revocation must not cache it after the revocation was seen.

The interleaving is driven deterministically: the real `_verify` runs (real
database lookup: the key is valid), then, before authentication stores its
answer, the key is revoked and this process learns of it. Without the check
at store time the revoked key would be served from the cache for up to
AUTH_CACHE_SECONDS.
"""

from __future__ import annotations

import secrets

import pytest

import app.auth as auth
from app.auth._state import auth_state
from tests.auth.helpers import assert_error
from tests.conftest import bearer

PROTECTED = "/api/v1/conversations"


def make_key(client, headers) -> tuple[str, str]:
    response = client.post("/api/v1/api_keys", json={"name": "race", "scopes": ["chat"]}, headers=headers)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    return body["id"], body["key"]


@pytest.mark.parametrize("where", ["another process", "this process"])
def test_a_key_revoked_during_its_verification_is_not_cached(make_app, monkeypatch, user_a_headers, where):
    prefix = f"race-{secrets.token_hex(4)}:"
    app = make_app(REDIS_KEY_PREFIX=prefix, AUTH_CACHE_SECONDS="60")
    other = make_app(REDIS_KEY_PREFIX=prefix)  # same database and Redis, its own auth state: another process
    client = app.test_client()
    key_id, key = make_key(client, user_a_headers)
    revoker = other.test_client() if where == "another process" else client
    real_verify = auth._verify
    interleaved = []

    def verify_then_revoke(token: str):
        answer = real_verify(token)  # the lookup: the key is not revoked yet
        if not interleaved:
            interleaved.append(token)
            # Revoked through the API while this verification is between its lookup and its store.
            assert revoker.delete(f"/api/v1/api_keys/{key_id}", headers=user_a_headers).status_code == 204
            state = auth_state()
            state.sync_epoch(*state.gate.check("198.51.100.200"))  # another request shows this process the epoch
        return answer

    monkeypatch.setattr(auth, "_verify", verify_then_revoke)
    assert client.get(PROTECTED, headers=bearer(key)).status_code == 200  # it read the key before the revocation
    assert interleaved == [key]
    assert_error(client.get(PROTECTED, headers=bearer(key)), 401, "invalid_token")
