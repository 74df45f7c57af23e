"""Schemathesis against a running Relay (gunicorn, a Celery worker, the fake OpenAI provider):
every check and every phase, as an anonymous principal, a member and an admin of a tenant.

The document must be exact for these runs to pass: every status an operation answers is
documented, every documented schema and header matches what is sent, schema-valid
requests are accepted and schema-violating ones refused, and deleted resources are gone.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
from pathlib import Path

import jwt
import pytest
import requests

from tests.conftest import Stack, bearer, stack_env
from tests.support import VENV_BIN

# Per operation and phase; with a fixed seed the run is reproducible (`st replay` names each failure).
# The three runs go at once; the coverage phase (boundary values of every field) is most of the time.
MAX_EXAMPLES = 5
SEED = 20261130
TIMEOUT_SECONDS = 480  # a hard stop for a machine far busier than CI
MODELS = {"models": [
    {"id": "gpt-4o-mini", "provider": "openai", "price_in_per_mtok": 0.15, "price_out_per_mtok": 0.60},
    {"id": "gpt-4o", "provider": "openai", "price_in_per_mtok": 2.50, "price_out_per_mtok": 10.00},
]}  # fmt: skip
# Where a check cannot hold for a reason the contract gives, it is configured here, operation by
# operation, and said why; no check is turned off for the whole run.
CONFIG = """
# Every check (`--checks all`), named here rather than on the command line, where it would
# override the operation-level exceptions below.
[checks]
enabled = true

[checks.positive_data_acceptance]
# Sizes are bounded in bytes, which no JSON Schema keyword can express: a schema-valid body can
# exceed MAX_CONTENT_LENGTH once its characters are JSON-escaped (413), and a schema-valid query
# string gunicorn's limit_request_line (414). Both are documented where they can happen.
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "414", "429", "5xx"]

[checks.negative_data_rejection]
# The body-size cap answers 413 before the body is parsed (Conventions: "Bodies over
# MAX_CONTENT_LENGTH get 413"), whatever else is wrong with it.
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428", "429", "5xx"]

[[operations]]
include-operation-id-regex = "^stream\\\\.start\\\\."
# A cost cap below the prompt's own cost at the model's input price is a 422 (Streaming, cost_cap_usd):
# it depends on the message's length and the model, which a schema cannot relate.
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "414", "422", "429", "5xx"]

[[operations]]
include-operation-id = "openai.chat_completions.post"
# X-Relay-Cost-Cap is checked as cost_cap_usd is (OpenAI-compatible endpoints): above 0, at most
# MAX_COST_CAP_USD and not below the prompt's own cost at the model's input price, which the header's
# pattern cannot say; /v1 answers OpenAI's 400 for it.
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "413", "414", "429", "5xx"]

[[operations]]
include-operation-id = "actions.create.post"
# An action's URL must resolve to a public address (https in production): DNS decides, not a schema.
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "422", "429", "5xx"]

[[operations]]
include-operation-id = "ai.plan.post"
# A plan proposes only the tenant's registered actions: with none registered (the stateful phase
# deletes them), 422 no_actions, whatever the body.
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "422", "429", "5xx"]

[[operations]]
include-operation-id = "actions.list_deliveries.get"
# The deliveries cursor is opaque: only a cursor this server gave out (next_cursor) is accepted.
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "422", "429", "5xx"]

[[operations]]
include-operation-id = "stream.attach.get"
# DELETE /api/v1/stream/<id> cancels a stream, it does not delete it: the contract keeps a cancelled
# stream attachable (it replays to its `done`, finish_reason cancelled) for STREAM_RETENTION_SECONDS.
checks.use_after_free.enabled = false
"""


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory, base_env, fake_openai):
    """A Relay of its own: the fake OpenAI models only (no local model to wait for), limits out of
    reach (429s are documented, but would hide everything else), auth_failures off (the fuzzer sends
    bad tokens on purpose), inbound webhooks configured (else every one is a 503)."""
    log_dir = tmp_path_factory.mktemp("schemathesis")
    models = log_dir / "models.json"
    models.write_text(json.dumps(MODELS))
    env = stack_env(
        base_env,
        fake_openai,
        log_dir,
        REDIS_KEY_PREFIX=f"{base_env['REDIS_KEY_PREFIX']}fuzz-{secrets.token_hex(3)}:",
        MODELS_FILE=str(models),
        DEFAULT_MODEL="gpt-4o-mini",
        LIMIT_AUTH_FAILURES="0",
        LIMIT_ANON_LIFETIME="1000000",
        **{f"LIMIT_{name}": "1000000/60" for name in ("AI_PLAN", "AI_EXECUTE", "ACTIONS_EXECUTE", "WEBHOOKS_IN")},
        TENANT_DAILY_BUDGET_USD="100000",
        ANON_DAILY_BUDGET_USD="100000",
        DAILY_SPEND_CEILING_USD="100000",
        WEBHOOK_SIGNING_SECRET="whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        LOG_LEVEL="WARNING",
    )
    stack = Stack(env, log_dir)
    try:
        stack.start_web(port=int(env["PORT"]))
        # No worker on the webhooks queue: an action the fuzzer registers is never delivered anywhere.
        stack.start_worker("remote-worker", "gevent", "generate", 50)
        yield stack
    finally:
        stack.stop()


def _user_token(base_env: dict[str, str], subject: str) -> str:
    """A user JWT as the identity provider signs it (tests/conftest.py's user_token, for a module fixture)."""
    now = int(time.time())
    claims = {"sub": subject, "aud": "authenticated", "iat": now, "exp": now + 3600}
    return jwt.encode(claims, base_env["JWT_SECRET"], algorithm="HS256")


def _tokens(stack: Stack, base_env: dict[str, str]) -> dict[str, str]:
    """An anonymous principal; the admin of a tenant (its first user); a `member` of that tenant (chat
    and actions, not admin), added to the database as an operator would."""
    from app import create_app
    from app.db import User
    from app.extensions import database

    admin = _user_token(base_env, f"fuzz-admin-{secrets.token_hex(4)}")
    probe = requests.post(f"{stack.base_url}/api/v1/api_keys", json={"name": "probe", "scopes": ["chat"]},
                          headers=bearer(admin), timeout=10)  # fmt: skip
    assert probe.status_code == 201, probe.text
    member = f"fuzz-member-{secrets.token_hex(4)}"
    create_app({name: stack.env[name] for name in (*base_env, "DATABASE_URL", "REDIS_KEY_PREFIX")})
    with database.session() as session:
        session.add(User(tenant_id=probe.json()["tenant_id"], subject=member, role="member"))
    return {"anonymous": stack.anon_token(), "member": _user_token(base_env, member), "admin": admin}


def _argv(base: str, config: Path, token: str, excluded: list[str]) -> list[str]:
    return [
        str(VENV_BIN / "st"), "--config-file", str(config), "run", f"{base}/openapi.json",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1", "--no-color",
        "--request-timeout", "30", "-H", f"Authorization: Bearer {token}",
        *[arg for operation_id in excluded for arg in ("--exclude-operation-id", operation_id)],
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(fuzz_stack, base_env, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """The three runs, at once (each waits on the server as much as it computes)."""
    base = fuzz_stack.base_url
    document = requests.get(f"{base}/openapi.json", timeout=10).json()
    # Routes whose view has no @doc yet are in the document but not described: test_openapi.py fails
    # for them by name; fuzzing them here would only repeat that.
    undocumented = [
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if operation.get("x-relay-undocumented")
    ]
    workdir = tmp_path_factory.mktemp("schemathesis-runs")
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    started = {
        name: subprocess.Popen(
            _argv(base, config, token, undocumented),
            cwd=workdir,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for name, token in _tokens(fuzz_stack, base_env).items()
    }
    results = {}
    for name, process in started.items():
        try:
            output, _ = process.communicate(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, output)
    return results


@pytest.mark.parametrize("principal", ["anonymous", "member", "admin"])
def test_schemathesis_every_check_and_phase(runs, principal):
    run = runs[principal]
    report = "\n".join(line[:300] for line in run.stdout.splitlines() if line.strip())
    assert run.returncode == 0, report[-20000:]
    assert "Tested: " in report and "Stateful" in report, report[-3000:]
