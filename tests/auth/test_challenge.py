"""RFC 6750 challenges: a 401 without credentials names only the realm; with bad ones, invalid_token."""

from __future__ import annotations

import pytest

from tests.auth.helpers import assert_error
from tests.conftest import bearer

PROTECTED = "/api/v1/conversations"
BARE = 'Bearer realm="relay"'


@pytest.mark.parametrize("headers", [{}, {"Authorization": ""}], ids=["absent", "empty"])
def test_no_credentials_get_the_bare_challenge(client, headers):
    response = client.get(PROTECTED, headers=headers)
    assert_error(response, 401, "missing_token")
    assert response.headers["WWW-Authenticate"] == BARE


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer relay_sk_" + "x" * 43])
def test_bad_credentials_name_invalid_token(client, header):
    response = client.get(PROTECTED, headers={"Authorization": header})
    assert_error(response, 401, "invalid_token")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(BARE + ', error="invalid_token"'), challenge


def test_an_expired_token_is_invalid_token_in_the_challenge(client, user_token):
    response = client.get(PROTECTED, headers=bearer(user_token("expired-user", ttl=-3600)))
    assert_error(response, 401, "token_expired")
    assert response.headers["WWW-Authenticate"].startswith(BARE + ', error="invalid_token"')
