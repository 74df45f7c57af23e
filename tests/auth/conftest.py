"""Auth fixtures: a Redis prefix per test (failure counters), signing keys, a local JWKS server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.auth.helpers import KeyServer, SigningKey


@pytest.fixture
def make_app(make_app, key_prefix):
    """The shared factory, with a Redis prefix of this test's own: failure counts never leak between tests."""
    prefix = f"{key_prefix}{secrets.token_hex(4)}:"

    def factory(**overrides: object):
        return make_app(**{"REDIS_KEY_PREFIX": prefix, **overrides})

    return factory


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def rsa_key() -> SigningKey:
    return SigningKey("RSA")


@pytest.fixture
def ec_key() -> SigningKey:
    return SigningKey("EC")
