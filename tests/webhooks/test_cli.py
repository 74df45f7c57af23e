"""flask relay secret | actions list | actions deliveries: what an operator runs (never a secret but the new one)."""

from __future__ import annotations

import base64

import pytest
from standardwebhooks.webhooks import Webhook

from tests.webhooks.conftest import execute, registered


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=["relay", *args])


@pytest.fixture
def app(make_app):
    return make_app(ALLOW_PRIVATE_WEBHOOK_TARGETS="true")


def test_secret_prints_a_secret_the_official_package_accepts(app):
    result = run(app, "secret")
    secret = result.stdout.strip()
    assert result.exit_code == 0 and secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    Webhook(secret)  # raises on a malformed secret


def test_actions_list_and_deliveries(app, client, user_a_headers):
    secret = registered(client, user_a_headers, "notify", "http://127.0.0.1:9/hook")
    delivery_id = execute(client, user_a_headers, "notify").get_json()["delivery_id"]
    listed = run(app, "actions", "list")
    assert listed.exit_code == 0 and "notify" in listed.stdout and "http://127.0.0.1:9/hook" in listed.stdout
    assert secret not in listed.output
    deliveries = run(app, "actions", "deliveries", "--status", "queued")
    assert deliveries.exit_code == 0 and delivery_id in deliveries.stdout and "queued" in deliveries.stdout
    assert delivery_id not in run(app, "actions", "deliveries", "--status", "dead").stdout
