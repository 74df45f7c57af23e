"""`make run` (app/devserver.py): refusals are one line and status 2 before any URL; the links
appear once everything is ready; Ctrl-C stops every process it started.

Each dev server here has a Redis key prefix of its own, which every process it starts inherits:
the processes left running are found by it (/proc/<pid>/environ), and killed if a test fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import _logscan
from tests.support import ROOT, VENV_BIN, collect, free_port, wait_until

pytestmark = pytest.mark.slow
REFUSAL = "relay: refusing to start: "
LINKS = "Chat widget:"


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds `marker` (`NAME=value`): those a dev server started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def kill_all(marker: str) -> None:
    for pid in processes_with(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def dev_env(tmp_path, redis_url, key_prefix) -> Iterator[dict[str, str]]:
    """A nearly empty environment: the tests' Redis database and a key prefix of its own, a free port,
    an instance directory of its own (SQLite, logs), and a small pool (two cores run the tests)."""
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(tmp_path),
        "RELAY_INSTANCE_PATH": str(tmp_path / "instance"),
        "RELAY_DOTENV": str(tmp_path / "no.env"),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"{key_prefix}dev-{secrets.token_hex(4)}:",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
        "REMOTE_WORKER_CONCURRENCY": "20",
    }
    yield env
    kill_all(f"REDIS_KEY_PREFIX={env['REDIS_KEY_PREFIX']}")


def start(argv: list[str], env: dict[str, str], cwd: Path, out_dir: Path) -> subprocess.Popen:
    """In a process group of its own, as a shell runs a foreground job; output in *.log files
    (searched for the run's secrets at the end)."""
    with open(out_dir / "devserver.out.log", "w") as stdout, open(out_dir / "devserver.err.log", "w") as stderr:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr, start_new_session=True)


def output(out_dir: Path) -> tuple[str, str]:
    return (out_dir / "devserver.out.log").read_text(), (out_dir / "devserver.err.log").read_text()


def ctrl_c(process: subprocess.Popen) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
    os.killpg(process.pid, signal.SIGINT)


def gone_within(marker: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while processes_with(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# -- refusals: one line, status 2, no URL ------------------------------------------------------
@pytest.fixture
def taken_port(dev_env) -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        dev_env["PORT"] = str(sock.getsockname()[1])
        yield sock.getsockname()[1]


def refusal(env: dict[str, str], tmp_path: Path) -> str:
    """Run the dev server to its end; the one line it printed on stderr (asserted to be alone)."""
    process = start([sys.executable, "-m", "app.devserver"], env, ROOT, tmp_path)
    try:
        status = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    stdout, stderr = output(tmp_path)
    assert status == 2, (stdout, stderr)
    assert len(stderr.splitlines()) == 1 and stderr.startswith(REFUSAL), stderr
    assert "http://" not in stdout + stderr and LINKS not in stdout and "Traceback" not in stdout + stderr
    assert gone_within(f"REDIS_KEY_PREFIX={env['REDIS_KEY_PREFIX']}", 10), "every process it started is stopped"
    return stderr.strip()


def test_a_taken_port_is_refused_naming_the_address_and_the_setting(dev_env, taken_port, tmp_path):
    line = refusal(dev_env, tmp_path)
    assert f"127.0.0.1:{taken_port}" in line and "PORT" in line


def test_production_without_secret_key_is_refused_naming_the_setting(dev_env, tmp_path):
    dev_env["RELAY_ENV"] = "production"
    line = refusal(dev_env, tmp_path)
    assert line == f"{REFUSAL}SECRET_KEY: required in production (at least 32 random bytes)"


@pytest.mark.parametrize(
    ("setting", "url", "host"),
    [
        ("DATABASE_URL", "postgresql+psycopg://relay:{password}@127.0.0.1:{port}/relay", "127.0.0.1"),
        # 127.0.0.2 is loopback but not an address Relay starts a private Redis for: nothing answers.
        ("REDIS_URL", "redis://:{password}@127.0.0.2:{port}/15", "127.0.0.2"),
    ],
)
def test_an_unreachable_store_is_refused_naming_host_and_port_never_the_password(dev_env, tmp_path, setting, url, host):
    password, port = secrets.token_urlsafe(12), free_port()
    _logscan.remember(password)
    dev_env[setting] = url.format(password=password, port=port)
    line = refusal(dev_env, tmp_path)
    assert line.startswith(f"{REFUSAL}{setting}: ") and f"{host}:{port}" in line
    assert password not in "".join(output(tmp_path))


def test_a_missing_redis_server_is_refused_naming_the_package(dev_env, tmp_path):
    """Nothing answers on REDIS_URL, and neither redis-server nor apt-get is on the PATH: the dev
    server refuses, and so does the check `make run` makes first with the system's Python."""
    dev_env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/15"
    dev_env["PATH"] = str(VENV_BIN)
    line = refusal(dev_env, tmp_path)
    assert "redis-server" in line and "apt-get install -y redis-server" in line

    first = subprocess.run(  # noqa: S603 - the Makefile's provision-run
        ["/usr/bin/python3", "app/provision.py", "programs", "run"],
        cwd=ROOT, env=dev_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert first.returncode == 2 and first.stderr.strip() == line and first.stdout == ""


def test_a_worker_that_stops_is_named_with_its_log_line_instead_of_the_links(dev_env, tmp_path):
    dev_env["REMOTE_WORKER_CONCURRENCY"] = "lots"  # Celery refuses its -c
    line = refusal(dev_env, tmp_path)
    assert line.startswith(f"{REFUSAL}the worker process stopped (exit status 2): ")
    assert "'lots'" in line and "--concurrency" in line


def test_a_local_model_that_fails_is_named_with_its_log_line_instead_of_the_links(dev_env, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))
    dev_env["LOCAL_MODEL_PATH"] = str(broken)
    line = refusal(dev_env, tmp_path)
    assert line.startswith(f"{REFUSAL}the local model failed in the worker_local process: ")
    assert "local model could not be loaded" in line and str(broken) in line


# -- Ctrl-C ----------------------------------------------------------------------------------
STUBBORN = (
    'stubborn: python -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); '
    "print('up', flush=True); time.sleep(600)\"\n"
)


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_a_process_that_ignores_sigterm_and_a_second_kills_it_at_once(dev_env, tmp_path, presses):
    """A Procfile with one process that ignores SIGTERM: the first Ctrl-C asks, and kills it after
    the grace (within 10 s); a second Ctrl-C kills it at once."""
    procfile = tmp_path / "Procfile"
    procfile.write_text(STUBBORN)
    marker = f"REDIS_KEY_PREFIX={dev_env['REDIS_KEY_PREFIX']}"
    process = start([sys.executable, "-m", "app.devserver", str(procfile)], dev_env, ROOT, tmp_path)
    log = tmp_path / "instance" / "logs" / "stubborn.log"
    wait_until(lambda: log.exists() and "up" in log.read_text(), 60, "the stubborn process")
    assert len(processes_with(marker)) == 2  # the dev server and the stubborn process

    ctrl_c(process)
    time.sleep(1)
    assert len(processes_with(marker)) == 2, "the stubborn process ignored SIGTERM"
    if presses == 2:
        ctrl_c(process)
        assert gone_within(marker, 2), "a second Ctrl-C kills at once"
    else:
        assert gone_within(marker, 9), "the first Ctrl-C kills what is left after the grace"
    assert process.wait(5) == 0
    assert "http://" not in output(tmp_path)[0]


# -- ready when it says so: a fresh clone, `make run`, the first message --------------------------
def test_a_fresh_clone_runs_and_answers_its_first_message_with_the_local_model(dev_env, tmp_path):
    """A clone of the repository with this venv, an environment with no settings but the tests'
    Redis (its database and a key prefix of its own) and a free port: `make run` prints the links only
    once /health/ready says everything is ready, and the first message is answered by the local
    model at once. Then Ctrl-C stops every process within 10 s.

    `-o install`: the venv is this one, installed already (make would reinstall it when the
    Makefile changed since); `make run` is otherwise what a new user runs."""
    clone = tmp_path / "relay"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=60)  # noqa: S607 - git on PATH
    (clone / ".venv").symlink_to(VENV_BIN.parent)
    env = {name: dev_env[name] for name in ("HOME", "REDIS_URL", "REDIS_KEY_PREFIX", "PORT")}
    env["PATH"] = f"/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin"
    marker = f"REDIS_KEY_PREFIX={env['REDIS_KEY_PREFIX']}"
    base = f"http://127.0.0.1:{env['PORT']}"

    process = start(["make", "-o", "install", "run"], env, clone, tmp_path)  # noqa: S607 - make on PATH
    try:
        wait_until(lambda: LINKS in output(tmp_path)[0] or process.poll() is not None, 300, "the links")
        stdout, stderr = output(tmp_path)
        assert process.poll() is None, (stdout, stderr)
        # The dev server saw every check ok. `make run` starts two web processes, and each reuses its
        # worker check for HEALTH_WORKER_CACHE_SECONDS (5): the other may say so a little later.
        wait_until(
            lambda: set(requests.get(f"{base}/health/ready", timeout=5).json()["checks"].values()) == {"ok"},
            6,
            "every web process to report the workers and the local model ready",
        )
        before_links = stdout.split(LINKS)[0]
        assert "waiting for" in before_links and f"Relay is ready on {base}" in stdout
        assert "local model ready" in (clone / "instance" / "logs" / "worker_local.log").read_text()

        token = requests.post(f"{base}/api/v1/anon_session", timeout=10).json()["token"]
        _logscan.remember(token)
        response = requests.post(
            f"{base}/api/v1/stream",
            json={"message": "Say hello."},
            headers={"Authorization": f"Bearer {token}"},
            stream=True,
            timeout=60,
        )
        assert response.status_code == 200, response.text
        events = collect(response)
        assert events[0].event == "stream" and events[0].data["model"] == "local-smollm2", events[0]
        assert events[-1].event == "done", events[-1]
        assert any(e.event == "message_chunk" for e in events)

        started = processes_with(marker)
        assert len(started) >= 5  # make, the dev server, gunicorn (master and worker), Celery (two and a child)
        ctrl_c(process)
        assert gone_within(marker, 10), f"still running after 10 s: {processes_with(marker)}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        kill_all(marker)
