"""AUTHORIZED_USERS from the attacker's side: an email admits a token only when the provider vouches for it.

Decision where the two places disagree: `email_verified` must be the boolean
true at the top level or in Supabase's `user_metadata`, and a false in either
place refuses, whatever the other says. Matching by `sub` needs no email.
"""

from __future__ import annotations

import jwt
import pytest

from tests.auth.helpers import assert_error, claims
from tests.conftest import bearer

PROTECTED = "/api/v1/conversations"
ALLOWED_EMAIL = "alice@example.com"


@pytest.fixture
def client(make_app):
    return make_app(AUTHORIZED_USERS=f"{ALLOWED_EMAIL},sub-of-bob").test_client()


def get(client, base_env, **payload):
    token = jwt.encode(claims(**payload), base_env["JWT_SECRET"], algorithm="HS256")
    return client.get(PROTECTED, headers=bearer(token))


@pytest.mark.parametrize(
    "verification",
    [
        {"email_verified": True},
        {"user_metadata": {"email_verified": True}},
        {"email_verified": True, "user_metadata": {"email_verified": True}},
        {"email_verified": True, "user_metadata": {"name": "Alice"}},
    ],
    ids=["top-level", "user_metadata", "both", "top-level-other-metadata"],
)
def test_a_verified_email_on_the_list_is_admitted(client, base_env, verification):
    assert get(client, base_env, sub="alice-1", email="Alice@Example.com", **verification).status_code == 200


@pytest.mark.parametrize(
    "verification",
    [
        {},
        {"email_verified": False},
        {"email_verified": "true"},
        {"email_verified": 1},
        {"email_verified": None},
        {"user_metadata": {"email_verified": "true"}},
        {"user_metadata": {"email_verified": 1}},
        {"user_metadata": "email_verified"},
        {"user_metadata": [{"email_verified": True}]},
        {"email_verified": True, "user_metadata": {"email_verified": False}},
        {"email_verified": False, "user_metadata": {"email_verified": True}},
    ],
    ids=[
        "absent",
        "false",
        "string-true",
        "one",
        "null",
        "metadata-string-true",
        "metadata-one",
        "metadata-not-an-object",
        "metadata-a-list",
        "true-then-metadata-false",
        "false-then-metadata-true",
    ],
)
def test_an_unverified_email_on_the_list_is_refused(client, base_env, verification):
    assert_error(get(client, base_env, sub="mallory", email=ALLOWED_EMAIL, **verification), 403, "user_not_allowed")


def test_a_verified_email_off_the_list_is_refused(client, base_env):
    response = get(client, base_env, sub="mallory", email="mallory@example.com", email_verified=True)
    assert_error(response, 403, "user_not_allowed")


def test_subjects_match_as_before_whatever_the_email_says(client, base_env):
    """Matching by `sub` is unchanged: exact, and an unverified email beside it takes nothing away."""
    assert get(client, base_env, sub="sub-of-bob").status_code == 200
    assert get(client, base_env, sub="sub-of-bob", email="bob@example.com", email_verified=False).status_code == 200
    assert_error(get(client, base_env, sub="sub-of-bob-2"), 403, "user_not_allowed")
