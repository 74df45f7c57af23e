"""app/provision.py: what `make test` and `make run` start or install, tried as far as is safe here.

Private PostgreSQL and Redis instances are started on free ports in a directory of the
test's own while the machine's own services keep running (never stopped, never changed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import redis

from app import provision
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.support import ROOT, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def instance():
    """An instance directory the `postgres` user can reach (pytest's tmp_path is root's alone)."""
    directory = Path(tempfile.mkdtemp(prefix="relay-provision-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        provision.stop(directory)
        shutil.rmtree(directory, ignore_errors=True)


def test_a_private_postgresql_starts_under_instance_while_the_machines_keeps_running(instance):
    machine_answered = provision.postgres_answers(POSTGRES_URL)
    port = free_port()
    configured = f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"
    assert not provision.postgres_answers(configured)

    started = time.monotonic()
    url = provision.ensure_postgres(configured, instance)
    took = time.monotonic() - started
    assert url == configured, "nothing listened on the configured port: the private server takes it"
    assert (instance / "pg" / "data" / "PG_VERSION").exists()
    with psycopg.connect(url.replace("+psycopg", "")) as connection:
        assert connection.execute("SELECT current_database()").fetchone()[0] == "test"
        data_dir = connection.execute("SHOW data_directory").fetchone()[0]
    assert Path(data_dir) == instance / "pg" / "data"

    again = time.monotonic()
    assert provision.ensure_postgres(configured, instance) == url  # the next run reuses it
    assert time.monotonic() - again < 2
    assert provision.postgres_answers(POSTGRES_URL) == machine_answered, "the machine's PostgreSQL is untouched"

    assert provision.stop(instance) == ["postgresql"]
    assert not provision.postgres_answers(url)
    print(f"\nprivate PostgreSQL: initdb and start in {took:.1f}s")


def test_a_configured_postgresql_that_answers_is_used_as_is(instance):
    if not provision.postgres_answers(POSTGRES_URL):
        pytest.fail(f"the tests' PostgreSQL does not answer at {POSTGRES_URL}")
    assert provision.ensure_postgres(POSTGRES_URL, instance) == POSTGRES_URL
    assert not (instance / "pg").exists(), "nothing private was started"


def test_a_private_redis_starts_when_none_answers_and_is_reused(instance):
    assert provision.ensure_redis(REDIS_URL, instance) == REDIS_URL  # the machine's answers: used as is
    port = free_port()
    configured = f"redis://127.0.0.1:{port}/15"
    url = provision.ensure_redis(configured, instance)
    assert url == configured and redis.Redis.from_url(url).ping()
    assert (instance / "redis" / "port").read_text() == str(port)
    assert provision.ensure_redis(configured, instance) == url
    assert provision.stop(instance) == ["redis"]
    assert not provision.redis_answers(url)
    assert provision.redis_answers(REDIS_URL), "the machine's Redis is untouched"


def test_without_root_a_missing_program_stops_at_once_naming_the_one_command():
    """Run as Debian's unprivileged `postgres` user with no PATH: Chromium and promtool are 'missing'.
    (The system's Python runs the module's file: the venv's interpreter is root's; the module
    checks programs before it imports anything outside the standard library.)"""
    # runuser lives in /usr/sbin, which a root shell's PATH may lack (as app/provision.py knows too).
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if os.geteuid() != 0 or runuser is None or not Path("/usr/bin/python3").exists():
        pytest.fail("this test runs as root (as CI does) to become an unprivileged user")
    started = time.monotonic()
    result = subprocess.run(  # noqa: S603 - fixed argv
        [runuser, "-u", "postgres", "--", "/usr/bin/env", "PATH=/nonexistent",
         "/usr/bin/python3", str(ROOT / "app" / "provision.py"), "test", "--", "/bin/true"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result
    assert result.stderr.startswith("relay: refusing to start: ") and len(result.stderr.splitlines()) == 1
    assert "sudo apt-get install -y chromium prometheus" in result.stderr
    assert time.monotonic() - started < 10
