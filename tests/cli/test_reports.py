"""flask relay audit and flask relay usage: platform-wide, with /admin/audit's filters, on a real database."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from app.db import Stream, User
from app.extensions import database
from tests.conftest import bearer


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=["relay", *args])


def subject(headers: dict[str, str]) -> str:
    return jwt.decode(headers["Authorization"].split()[1], options={"verify_signature": False})["sub"]


@pytest.fixture
def events(app, client, user_a_headers, user_b_headers) -> dict[str, str]:
    """Events in two tenants and one with none: a failed authentication, keys created by A and B."""
    assert client.get("/api/v1/conversations", headers=bearer("not-a-token")).status_code == 401
    for headers in (user_a_headers, user_b_headers):
        response = client.post("/api/v1/api_keys", json={"name": "k", "scopes": ["chat"]}, headers=headers)
        assert response.status_code == 201
    with database.session() as session:
        users = {
            s: session.query(User).filter_by(subject=s).one() for s in map(subject, (user_a_headers, user_b_headers))
        }
    (a, b) = users.values()
    return {"tenant_a": a.tenant_id, "tenant_b": b.tenant_id, "user_a": a.id, "subject_a": subject(user_a_headers)}


def audit_json(app, *args: str) -> dict:
    result = run(app, "audit", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_audit_is_platform_wide_newest_first(app, events):
    listed = audit_json(app)
    tenants = {event["tenant_id"] for event in listed["events"]}
    assert {events["tenant_a"], events["tenant_b"], None} <= tenants
    ids = [int(event["id"]) for event in listed["events"]]
    assert ids == sorted(ids, reverse=True) and listed["count"] == len(ids)
    types = {event["type"] for event in listed["events"]}
    assert {"auth_failure", "api_key_created", "user_provisioned"} <= types

    lines = run(app, "audit")
    assert lines.exit_code == 0
    assert len(lines.stdout.splitlines()) == listed["count"]
    assert f"tenant={events['tenant_a']}" in lines.stdout and "auth_failure" in lines.stdout
    assert f"{listed['count']} event(s)" in lines.stderr


def test_audit_filters(app, events):
    only_a = audit_json(app, "--tenant", events["tenant_a"])["events"]
    assert only_a and {event["tenant_id"] for event in only_a} == {events["tenant_a"]}

    failures = audit_json(app, "--type", "auth_failure")["events"]
    assert [event["tenant_id"] for event in failures] == [None]
    assert failures[0]["details"]["reason"]

    by_user = audit_json(app, "--user-id", events["subject_a"])["events"]
    assert by_user and {event["principal_id"] for event in by_user} == {f"user:{events['user_a']}"}
    assert audit_json(app, "--user-id", events["user_a"])["events"] == by_user
    assert audit_json(app, "--user-id", events["subject_a"], "--tenant", events["tenant_b"])["events"] == []
    assert audit_json(app, "--user-id", "nobody-at-all")["events"] == []

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert audit_json(app, "--since", future)["events"] == []
    assert audit_json(app, "--until", past)["events"] == []
    assert audit_json(app, "--since", past)["count"] == audit_json(app)["count"]


def test_audit_pages_with_a_cursor(app, events):
    everything = [event["id"] for event in audit_json(app)["events"]]
    first = audit_json(app, "--limit", "2")
    assert [event["id"] for event in first["events"]] == everything[:2] and first["next_cursor"] == everything[1]
    second = audit_json(app, "--limit", "2", "--cursor", first["next_cursor"])
    assert [event["id"] for event in second["events"]] == everything[2:4]
    text = run(app, "audit", "--limit", "2")
    assert f"--cursor {everything[1]}" in text.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [(("--since", "yesterday"), "--since"), (("--limit", "0"), "--limit"), (("--type", "Bad Type!"), "--type"),
     (("--cursor", "abc"), "--cursor")],
)  # fmt: skip
def test_audit_refuses_bad_filters(app, args, option):
    result = run(app, "audit", *args)
    assert result.exit_code == 2 and option in result.output


def add_stream(tenant: str | None, model: str, cost: float, age: timedelta, tokens: tuple[int, int] = (10, 20)) -> None:
    with database.session() as session:
        session.add(
            Stream(
                id=secrets.token_hex(8),
                owner_id=f"user:{tenant}" if tenant else f"anon:{secrets.token_hex(4)}",
                tenant_id=tenant,
                model=model,
                status="done",
                prompt_tokens=tokens[0],
                completion_tokens=tokens[1],
                cost_usd=cost,
                created_at=datetime.now(UTC) - age,
            )
        )


def test_usage_by_day_and_model_platform_wide_or_per_tenant(make_app, db_url):
    app = make_app(DATABASE_URL=db_url)
    one, two = secrets.token_hex(8), secrets.token_hex(8)
    model = f"m-{secrets.token_hex(4)}"  # the PostgreSQL schema is shared with other tests: rows of our own
    add_stream(one, model, 0.25, timedelta(0))
    add_stream(two, model, 0.5, timedelta(0))
    add_stream(None, model, 0.125, timedelta(0))
    add_stream(one, model, 1.0, timedelta(days=2))

    def rows(*args: str) -> list[dict]:
        result = run(app, "usage", "--json", *args)
        assert result.exit_code == 0, result.output
        return [row for row in json.loads(result.stdout)["usage"] if row["model"] == model]

    today, two_days_ago = rows()
    assert today["requests"] == 3 and today["spend_usd"] == pytest.approx(0.875)
    assert today["prompt_tokens"] == 30 and today["completion_tokens"] == 60
    assert two_days_ago["requests"] == 1 and two_days_ago["day"] < today["day"]
    assert [row["requests"] for row in rows("--days", "1")] == [3]
    assert [(row["requests"], row["spend_usd"]) for row in rows("--tenant", one)] == [(1, 0.25), (1, 1.0)]
    assert rows("--tenant", secrets.token_hex(8)) == []

    text = run(app, "usage", "--tenant", two)
    assert text.exit_code == 0 and f"{model}  requests=1" in text.stdout and "spend_usd=0.500000" in text.stdout
    assert "1 request(s)" in text.stderr
