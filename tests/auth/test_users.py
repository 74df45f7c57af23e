"""Users from the database: provisioning (once, even under a race), roles to scopes. SQLite and PostgreSQL."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import func, select

from app.db import Tenant, User
from app.extensions import database
from tests.auth.helpers import assert_error
from tests.conftest import bearer
from tests.support import at_once

PROTECTED = "/api/v1/conversations"


@pytest.fixture
def app(make_app, db_url):
    return make_app(DATABASE_URL=db_url)


def users_with(subject: str) -> list[User]:
    with database.session() as session:
        return list(session.scalars(select(User).where(User.subject == subject)))


def test_first_use_provisions_a_personal_tenant_once(client, user_token):
    subject = f"new-{secrets.token_hex(4)}"
    token = user_token(subject, "new@example.com")
    for _ in range(2):
        assert client.get(PROTECTED, headers=bearer(token)).status_code == 200
    [user] = users_with(subject)
    assert user.role == "admin" and user.email == "new@example.com"
    with database.session() as session:
        tenant = session.get(Tenant, user.tenant_id)
    assert tenant.name == "Personal: new@example.com"
    events = client.get("/admin/audit?type=user_provisioned", headers=bearer(token)).get_json()["events"]
    assert len(events) == 1 and events[0]["principal_id"] == f"user:{user.id}"


def test_concurrent_first_requests_make_one_user_and_one_tenant(app, user_token):
    subject = f"racer-{secrets.token_hex(4)}"
    token = user_token(subject)
    statuses = at_once(lambda: app.test_client().get(PROTECTED, headers=bearer(token)).status_code, 8)
    assert statuses == [200] * 8
    [user] = users_with(subject)
    with database.session() as session:
        named = session.scalar(select(func.count()).select_from(Tenant).where(Tenant.name == f"Personal: {subject}"))
    assert named == 1 and user.tenant_id


def test_email_follows_the_identity_provider(client, user_token):
    subject = f"mover-{secrets.token_hex(4)}"
    client.get(PROTECTED, headers=bearer(user_token(subject, "old@example.com")))
    client.get(PROTECTED, headers=bearer(user_token(subject, "new@example.com", ttl=3601)))
    assert users_with(subject)[0].email == "new@example.com"


@pytest.mark.parametrize(("role", "chat", "admin"), [("member", 200, 403), ("admin", 200, 200), ("owner?", 403, 403)])
def test_roles_map_to_scopes(client, user_token, role, chat, admin):
    subject = f"{role}-{secrets.token_hex(4)}"
    with database.session() as session:
        tenant = Tenant(name="Team")
        session.add(tenant)
        session.flush()
        session.add(User(tenant_id=tenant.id, subject=subject, role=role))
    token = user_token(subject)
    assert client.get(PROTECTED, headers=bearer(token)).status_code == chat
    assert client.get("/api/v1/api_keys", headers=bearer(token)).status_code == admin


def test_known_users_pass_without_provisioning(make_app, db_url, user_token):
    subject = f"known-{secrets.token_hex(4)}"
    open_app = make_app(DATABASE_URL=db_url)
    assert open_app.test_client().get(PROTECTED, headers=bearer(user_token(subject))).status_code == 200
    closed = make_app(DATABASE_URL=db_url, AUTO_PROVISION_USERS="false").test_client()
    assert closed.get(PROTECTED, headers=bearer(user_token(subject))).status_code == 200
    stranger = bearer(user_token(f"stranger-{secrets.token_hex(4)}"))
    assert_error(closed.get(PROTECTED, headers=stranger), 403, "user_not_allowed")
