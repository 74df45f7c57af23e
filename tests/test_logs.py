"""Log lines: JSON in production and text locally, the three structured kinds, and no secret ever.

Secrets are written through the real loggers (Relay's, gunicorn's, Celery's, an
exception's traceback, formatted arguments, `extra=` fields) into real handlers
(a stream captured here, and the files of running processes).
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import sys

import jwt
import pytest
import requests

from app.logs import JsonFormatter, RedactingFilter, install, log_format, make_formatter, protect, redact
from tests import _logscan
from tests.conftest import bearer
from tests.support import collect


def _secrets() -> dict[str, str]:
    jwt_token = jwt.encode({"sub": "someone", "exp": 2**31}, secrets.token_urlsafe(40), algorithm="HS256")
    values = {
        "jwt": jwt_token,
        "api_key": "relay_sk_" + secrets.token_urlsafe(32),
        "webhook": "whsec_" + secrets.token_urlsafe(32),
        "provider": "sk-" + secrets.token_urlsafe(24),
        "password": "pw-" + secrets.token_hex(8),
        "secret_key": secrets.token_urlsafe(48),
        "basic": "dXNlcjpwYXNzd29yZA" + secrets.token_hex(4),
        "url_password": "p" + secrets.token_hex(8),
    }
    for value in values.values():
        _logscan.remember(value)
    return values


# Each secret in the forms it takes when code logs it carelessly.
def _careless_lines(s: dict[str, str]) -> list[tuple[str, tuple]]:
    return [
        ("headers %s", ({"Authorization": f"Bearer {s['jwt']}", "Accept": "*/*"},)),
        ("authorization: Basic %s", (s["basic"],)),
        ("created key %s for tenant", (s["api_key"],)),
        ("action secret is %s", (s["webhook"],)),
        ("provider call with api_key=%s failed", (s["provider"],)),
        ("login {'user': 'a', 'password': '%s'}", (s["password"],)),
        ("settings SECRET_KEY=%s JWT_SECRET=%s", (s["secret_key"], s["secret_key"])),
        ("connecting to postgresql://relay:%s@db:5432/relay", (s["url_password"],)),
        ('{"token": "%s"}', (s["jwt"],)),
    ]


@pytest.fixture
def captured():
    """A handler like production's: Relay's formatter and filter, writing to a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    protect([handler], "json")
    root = logging.getLogger()
    root.addHandler(handler)
    yield buffer
    root.removeHandler(handler)


@pytest.mark.parametrize("logger_name", ["relay.streams", "gunicorn.error", "celery.worker", "sqlalchemy.engine"])
def test_secrets_are_redacted_in_messages_args_tracebacks_and_extras(app, captured, logger_name):
    values = _secrets()
    logger = logging.getLogger(logger_name)
    logger.propagate, saved = True, logger.propagate
    try:
        for message, args in _careless_lines(values):
            logger.warning(message, *args)
        try:
            raise RuntimeError(f"request failed: Authorization: Bearer {values['jwt']} key={values['api_key']}")
        except RuntimeError:
            logger.exception("while calling with %s", values["webhook"])
        logger.warning("with extra", extra={"token_field": values["provider"], "url": f"x://u:{values['password']}@h"})
        logger.warning("stack", stack_info=True)
    finally:
        logger.propagate = saved
    written = captured.getvalue()
    assert written.count("\n") >= 12
    for name, value in values.items():
        assert value not in written, f"{name} reached a log line through {logger_name}"
    assert "[REDACTED" in written and "Traceback" in written


def test_every_line_is_one_json_object_with_the_fields(app, captured, caplog):
    caplog.set_level(logging.INFO, logger="relay.test")
    logging.getLogger("relay.test").info("plain %s", "line")
    logging.getLogger("relay.test").error("failed", exc_info=ValueError("password=hunter2hunter2"))
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert lines[0]["message"] == "plain line" and lines[0]["level"] == "INFO" and lines[0]["logger"] == "relay.test"
    assert lines[0]["ts"].endswith("+00:00")
    assert "exc" in lines[1] and "hunter2hunter2" not in lines[1]["exc"]


def test_redaction_leaves_ordinary_lines_alone():
    ordinary = "stream abc12345 done completion_tokens=12 principal_id=key:0f3a route=/api/v1/stream max_tokens=200"
    assert redact(ordinary) == ordinary


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"RELAY_ENV": "production"}, "json"),
        ({"RELAY_ENV": "local"}, "text"),
        ({"RELAY_ENV": "test"}, "text"),
        ({"RELAY_ENV": "production", "LOG_FORMAT": "text"}, "text"),
        ({"RELAY_ENV": "local", "LOG_FORMAT": "JSON"}, "json"),
    ],
)
def test_json_in_production_text_elsewhere_log_format_overrides(settings, expected):
    assert log_format(settings) == expected
    assert isinstance(make_formatter(expected), JsonFormatter) == (expected == "json")


def test_install_protects_every_root_handler_once(app):
    stray = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(stray)
    try:
        install(app.config)
        install(app.config)
        assert sum(isinstance(f, RedactingFilter) for f in stray.filters) == 1
        assert sum(getattr(h, "relay_handler", False) for h in root.handlers) == 1
    finally:
        root.removeHandler(stray)


def test_one_request_line_with_principal_route_status_latency(app, client, captured, user_a_headers, caplog):
    caplog.set_level(logging.INFO, logger="relay.request")
    response = client.get("/api/v1/conversations", headers={**user_a_headers, "X-Request-ID": "req-log-1"})
    assert response.status_code == 200
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    mine = [line for line in lines if line.get("kind") == "request" and line.get("request_id") == "req-log-1"]
    assert len(mine) == 1
    line = mine[0]
    assert line["route"] == "/api/v1/conversations" and line["status"] == 200 and line["method"] == "GET"
    assert line["principal_kind"] == "user" and line["principal_id"].startswith("user:")
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0
    assert user_a_headers["Authorization"].split()[1] not in captured.getvalue()


def test_a_security_event_has_its_line_and_never_the_token(app, client, captured, user_token):
    forged = jwt.encode({"sub": "x", "exp": 2**31, "iat": 1}, "not-the-secret-" + "y" * 40, algorithm="HS256")
    _logscan.remember(forged)
    response = client.get("/api/v1/conversations", headers=bearer(forged))
    assert response.status_code == 401
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    security = [line for line in lines if line.get("kind") == "security"]
    assert security and security[0]["event"] == "auth_failure" and security[0]["level"] == "WARNING"
    assert security[0]["route"] == "/api/v1/conversations"
    assert forged not in captured.getvalue()


def test_the_worker_writes_one_stream_line_per_finished_stream(stack):
    token = stack.anon_token()
    _logscan.remember(token)
    response = stack.post_stream(token, {"message": "echo:logged reply", "model": "gpt-4o-mini"})
    stream_id = response.headers["X-Stream-Id"]
    events = collect(response)
    assert events[-1].event == "done"
    worker_log = stack.processes["remote-worker"].log_path

    def stream_line() -> str | None:
        for line in worker_log.read_text(errors="replace").splitlines():
            if "relay.stream" in line and f"stream_id={stream_id}" in line:
                return line
        return None

    from tests.support import wait_until

    wait_until(lambda: stream_line() is not None, 10, "the worker's stream line")
    line = stream_line()
    assert "outcome=stop" in line and "completion_tokens=" in line and "cost_usd=" in line and "ttft_ms=" in line
    web_log = stack.processes["web"].log_path.read_text(errors="replace")
    assert "relay.request" in web_log and "route=/api/v1/stream" in web_log
    assert token not in web_log and token not in worker_log.read_text(errors="replace")
    requests.get(f"{stack.base_url}/health", timeout=5)  # probes: DEBUG, not in an INFO log
    assert "route=/health " not in stack.processes["web"].log_path.read_text(errors="replace")


# -- the end-of-run search itself (tests/_logscan.py) ---------------------------------
@pytest.fixture
def planted_dir(tmp_path):
    """A log directory the end-of-run search skips: secrets are planted here on purpose."""
    (tmp_path / _logscan.IGNORE_MARKER).touch()
    return tmp_path


def test_the_log_search_finds_a_planted_secret_and_nothing_in_clean_logs(planted_dir):
    secret = secrets.token_urlsafe(32)
    minted = jwt.encode({"sub": "u", "exp": 2**31}, secrets.token_urlsafe(40), algorithm="HS256")
    (planted_dir / "clean.log").write_text(
        "INFO request route=/api/v1/stream\nkey relay_sk_[REDACTED] Bearer [REDACTED]\n"
    )
    (planted_dir / "web.log").write_text(f"INFO ok\nWARNING leaked {secret} here\n")
    (planted_dir / "worker.log").write_text(f"INFO token {minted}\nrelay_sk_{'A' * 43}\n")
    files = sorted(planted_dir.glob("*.log"))
    assert _logscan.log_files([planted_dir]) == [], "the end of the run skips this directory"
    findings = _logscan.scan(files, {secret})
    assert [(f.path.name, f.line) for f in findings] == [("web.log", 2), ("worker.log", 1), ("worker.log", 2)]
    assert secret not in "\n".join(str(f) for f in findings), "a finding must not print the secret"
    assert _logscan.scan([planted_dir / "clean.log"], {secret}) == []


def test_the_log_search_finds_a_secret_a_started_process_printed_from_its_environment(planted_dir):
    """The path the run's processes take: support.Process registers its log and environment."""
    from tests.support import Process

    planted = "planted-" + secrets.token_hex(16)
    env = {**os.environ, "PLANTED_SECRET": planted, "REDIS_KEY_PREFIX": "relaytest-planted:"}
    process = Process(
        "planted", [sys.executable, "-c", "import os; print(os.environ['PLANTED_SECRET'])"], env, planted_dir
    )
    process.popen.wait(10)
    process.stop()
    assert planted in _logscan.secrets_in_env(env) and "relaytest-planted:" not in _logscan.secrets_in_env(env)
    findings = _logscan.scan([process.log_path], _logscan.secrets_in_env(env))
    assert [(f.path.name, f.line) for f in findings] == [("planted.log", 1)]
    assert planted_dir / "planted.log" not in _logscan.log_files([planted_dir.parent]), "skipped at the end of the run"
