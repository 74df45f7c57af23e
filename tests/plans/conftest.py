"""Fixtures of the plan tests: an app on a Redis prefix of its own, tenants, plans put in place as a worker leaves them."""

from __future__ import annotations

import secrets

import jwt
import pytest
import redis

from app.db import User
from app.db.models import Plan, new_id
from app.extensions import database
from tests.webhooks.conftest import receiver  # noqa: F401 - a fixture of these tests too


@pytest.fixture
def plan_app(make_app, redis_url):
    """An app (private webhook targets allowed, the OpenAI models listed) whose Redis prefix, and so
    Celery queues, no worker of another test reads: a job sent here is never taken."""
    prefixes: list[str] = []

    def factory(**overrides: object):
        prefix = f"relayplans-{secrets.token_hex(4)}:"
        prefixes.append(prefix)
        settings = {"ALLOW_PRIVATE_WEBHOOK_TARGETS": "true", "REDIS_KEY_PREFIX": prefix,
                    "OPENAI_API_KEY": "sk-test-not-a-real-key", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}  # fmt: skip
        return make_app(**{**settings, **overrides})

    yield factory
    client = redis.Redis.from_url(redis_url)
    for prefix in prefixes:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)


def tenant_of(app, headers: dict[str, str]) -> str:
    """The tenant of a user token's subject (the user exists after its first request)."""
    subject = jwt.decode(headers["Authorization"].split()[1], options={"verify_signature": False})["sub"]
    with app.app_context(), database.session() as session:
        return session.query(User).filter_by(subject=subject).one().tenant_id


def seed_plan(app, tenant_id: str, actions: list[dict], status: str = "ready") -> str:
    """A plan as the worker stores it once made."""
    plan_id = new_id()
    with app.app_context(), database.session() as session:
        session.add(Plan(id=plan_id, tenant_id=tenant_id, created_by="test", prompt="p", model="gpt-4o-mini",
                         status=status, actions=actions, rejected=[], cost_usd=0.0))  # fmt: skip
    return plan_id
