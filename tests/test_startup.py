"""A refused setting or a store that does not answer stops each kind of Relay process with one
line on stderr and exit status 2 (app/startup.py): gunicorn's master (instead of booting workers
that fail, again and again), a Celery worker, and `flask` commands."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess

import pytest

from tests import _logscan
from tests.support import ROOT, VENV_BIN, free_port

pytestmark = pytest.mark.slow
REFUSAL = "relay: refusing to start: "
PASSWORD = secrets.token_urlsafe(12)

COMMANDS = {
    "gunicorn": [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
    "celery": [str(VENV_BIN / "celery"), "-A", "celery_app", "worker", "-P", "solo", "-l", "INFO"],
    "flask db upgrade": [str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
    "flask relay keys list": [str(VENV_BIN / "flask"), "--app", "wsgi", "relay", "keys", "list"],
}
# situation -> (settings, what the line says); a store that does not answer is named by its host and port
SITUATIONS = {
    "production without SECRET_KEY": (
        {"RELAY_ENV": "production"},
        "SECRET_KEY: required in production (at least 32 random bytes)",
    ),
    "database does not answer": (
        {"DATABASE_URL": "postgresql+psycopg://relay:{password}@127.0.0.1:{port}/relay"},
        "DATABASE_URL: the database at 127.0.0.1:{port} does not answer",
    ),
    "redis does not answer": (
        {"REDIS_URL": "redis://:{password}@127.0.0.1:{port}/15"},
        "REDIS_URL: Redis at 127.0.0.1:{port} does not answer",
    ),
}
# `flask` commands that need no Redis run without it (only what a command needs stops it)
CASES = [
    (command, situation)
    for command in COMMANDS
    for situation in SITUATIONS
    if not (command.startswith("flask") and situation == "redis does not answer")
]


@pytest.mark.parametrize(("command", "situation"), CASES)
def test_a_refusal_is_one_line_and_status_2(command, situation, base_env, tmp_path):
    port = free_port()
    settings, expected = SITUATIONS[situation]
    env = {
        **base_env,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "PORT": str(free_port()),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}",
        "RELAY_ENV": "local",
        **{name: value.format(password=PASSWORD, port=port) for name, value in settings.items()},
    }
    if env["RELAY_ENV"] == "production":
        env.pop("SECRET_KEY")
    _logscan.remember(PASSWORD)
    process = subprocess.Popen(  # noqa: S603 - the venv's own programs
        COMMANDS[command], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=60)  # gunicorn would otherwise reboot workers forever
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 2, (stdout, stderr)
    assert stderr.splitlines() == [stderr.strip()] and stderr.startswith(REFUSAL + expected.format(port=port)), stderr
    assert "Traceback" not in stdout + stderr and PASSWORD not in stdout + stderr
