"""`make run`: everything on one machine with embedded defaults, ready when it says so.

1. Before any URL is printed: the settings are checked, HOST:PORT must be free, Redis
   must answer (app/provision.py installs redis-server with apt as root when it is
   missing, and starts it privately under instance/ when nothing answers on a loopback
   REDIS_URL), the database must answer, and the migrations are applied. A refusal is
   one line on stderr and exit status 2 (app/startup.py).
2. Every Procfile line runs in a process group of its own; its output goes to
   instance/logs/<name>.log.
3. The links are printed once /health/ready reports the database, Redis, the workers
   and the local model ok and every Celery worker has said it is ready; meanwhile a
   progress line says what is awaited. A process that stops, or a local model that
   fails, is reported instead, with its log line (status 2).
4. Then the processes' output follows on the terminal. Ctrl-C (or SIGTERM) stops them
   all: SIGTERM to each program, then SIGKILL to whatever is left after STOP_GRACE_S,
   or at once on a second Ctrl-C.

    python -m app.devserver [Procfile]
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

from flask import Flask

from . import ROOT, create_app
from .provision import ensure_redis
from .startup import check_port, check_stores, refuse, refusing, where

READY_TIMEOUT_S = 300.0  # a slow machine's first load of the local model fits well within it
STOP_GRACE_S = 8.0  # Ctrl-C stops everything within 10 s
POLL_S = 0.5
CHECKS = {"database": "the database", "redis": "Redis", "workers": "the workers", "local_model": "the local model"}
Echo = Callable[[str, str], None]  # (process name, output line)


class Child:
    """One Procfile line: a process group of its own, its output kept in a log file."""

    def __init__(self, name: str, command: str, env: dict[str, str], log_dir: Path, echo: Echo) -> None:
        self.name = name
        self.is_worker = "celery" in command.split()
        self.runs_local_model = "RELAY_PRELOAD_LOCAL_MODEL=1" in command.split()
        self.ready = False  # a Celery worker prints `<name>@<host> ready.` once it takes jobs
        self.lines: deque[str] = deque(maxlen=500)
        self.log_path = log_dir / f"{name}.log"
        # `exec env`: the Procfile's `NAME=value command` becomes the child itself, so SIGTERM
        # reaches the program (gunicorn's master, Celery's main process), which stops its own workers.
        self.popen = subprocess.Popen(  # noqa: S603 - the repository's own Procfile
            ["/bin/sh", "-c", f"exec env {command}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, args=(self.popen.stdout, echo), daemon=True)
        self.reader.start()

    def _read(self, stream: IO[bytes], echo: Echo) -> None:
        with open(self.log_path, "wb") as log:
            for raw in stream:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip()
                self.lines.append(line)
                self.ready = self.ready or line.endswith(" ready.")
                echo(self.name, line)

    def output(self) -> list[str]:
        return list(self.lines)  # a copy: the reader thread appends (iterating the deque itself could fail)

    def exit_status(self) -> int | None:
        return self.popen.poll()

    def last_line(self) -> str:
        return next((line for line in reversed(self.output()) if line.strip()), "(no output)")

    def terminate(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the whole group: the program, and any of its processes still there."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


class Console:
    """Progress lines while starting; once ready, every process's output, prefixed by its name."""

    def __init__(self) -> None:
        self.following = False
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)

    def echo(self, name: str, line: str) -> None:
        if self.following:
            self.say(f"{name:<12} | {line}")


def read_procfile(path: Path) -> list[tuple[str, str]]:
    entries = []
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not line.lstrip().startswith("#"):
            entries.append((name.strip(), command.strip()))
    return entries


def prepare() -> Flask:
    """Everything before the first process starts (a refusal exits here, before any URL)."""
    app = create_app()
    config = app.config
    check_port(config["HOST"], config["PORT"])
    redis_url = ensure_redis(config["REDIS_URL"], Path(app.instance_path))
    if redis_url != config["REDIS_URL"]:  # a private redis-server on another port: every process uses it
        os.environ["REDIS_URL"] = redis_url
        app = create_app()
    print(f"Redis: using {where(redis_url)}", flush=True)
    check_stores(app.config)

    from flask_migrate import upgrade

    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line below, not one per migration
    with app.app_context():
        upgrade(directory=os.path.join(ROOT, "migrations"))
    print("Database: migrations applied", flush=True)
    return app


def child_env(app: Flask) -> dict[str, str]:
    env = dict(os.environ)
    metrics_dir = Path(app.instance_path) / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    env.setdefault("FLASK_APP", "wsgi")
    bin_dir = Path(sys.executable).parent  # the venv's gunicorn and celery
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def readiness(base_url: str) -> dict[str, str] | None:
    """/health/ready's checks, or None while the web process does not answer."""
    try:
        with urllib.request.urlopen(f"{base_url}/health/ready", timeout=2) as response:  # noqa: S310 - our own http URL
            body = response.read()
    except urllib.error.HTTPError as exc:  # 503 while Redis or the database is not ready: the same body
        body = exc.read()
    except OSError:
        return None
    try:
        return json.loads(body)["checks"]
    except (ValueError, KeyError, TypeError):
        return None


def awaited(checks: dict[str, str] | None, children: list[Child]) -> list[str]:
    """What is not ready yet, in words."""
    if checks is None:
        missing = ["the web server"]
    else:
        missing = [what for key, what in CHECKS.items() if checks.get(key) != "ok"]
    # /health/ready's `workers` is ok when any worker answers: each worker process must say it is ready.
    starting = [child.name for child in children if child.is_worker and not child.ready]
    if starting:
        missing.append(f"the {' and '.join(starting)} process{'es' if len(starting) > 1 else ''}")
    return missing


def local_model_failure(checks: dict[str, str] | None, children: list[Child]) -> str | None:
    """The local model's error line, once a worker has reported it failed (`failed` alone is also
    what a worker records while it proves the model: an error line is what says it is over).
    The first line about the local model, else the first error of its process (a crashed child)."""
    if not checks or checks.get("local_model") != "failed":
        return None
    for child in children:
        errors = [line for line in child.output() if "ERROR" in line]
        about_model = [line for line in errors if "local model" in line]
        if about_model or (errors and child.runs_local_model):
            return f"the local model failed in the {child.name} process: {(about_model or errors)[0]}"
    return None


def stopped_early(children: list[Child]) -> str | None:
    for child in children:
        status = child.exit_status()
        if status is not None:
            reason = child.last_line().removeprefix("relay: refusing to start: ")
            return f"the {child.name} process stopped (exit status {status}): {reason}"
    return None


def local_url(host: str, port: int) -> str:
    """Where this machine reaches the web process (a wildcard address answers on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - a lookup, not a bind
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def links(url: str, log_dir: Path) -> str:
    return (
        "\n"
        f"  Relay is ready on {url}\n"
        f"  Chat widget:   {url}/\n"
        f"  Health:        {url}/health/ready\n"
        f"  Try it:        TOKEN=$(curl -s -XPOST {url}/api/v1/anon_session | python3 -c 'import sys,json;print(json.load(sys.stdin)[\"token\"])')\n"
        f'                 curl -N {url}/api/v1/stream -H "Authorization: Bearer $TOKEN" '
        "-H 'Content-Type: application/json' -d '{\"message\":\"Hello!\"}'\n"
        f"  Logs:          {log_dir}/\n"
        "  Stop with Ctrl-C.\n"
    )


class Interrupts:
    """Ctrl-C, SIGTERM and SIGHUP counted: the first stops the processes, the second kills them."""

    def __init__(self) -> None:
        self.count = 0
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1


def stop(children: list[Child], interrupts: Interrupts, console: Console) -> None:
    """SIGTERM to each program; SIGKILL to what is left after STOP_GRACE_S or at the next Ctrl-C."""
    console.following = False
    asked = interrupts.count  # the Ctrl-C that asked for this stop, if one did
    if asked:
        console.say("Stopping (Ctrl-C again to kill).")
    for child in children:
        child.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    while any(c.exit_status() is None for c in children) and time.monotonic() < deadline:
        if interrupts.count > asked:
            console.say("Killing.")
            break
        time.sleep(0.1)
    for child in children:
        child.kill()


def wait_until_ready(children: list[Child], base: str, interrupts: Interrupts, console: Console, log_dir: Path) -> bool:
    """True once everything is ready, False at Ctrl-C; a process or local model that fails, or
    nothing ready after READY_TIMEOUT_S, refuses (one line, status 2)."""
    started, shown = time.monotonic(), None
    while not interrupts.count:
        checks = readiness(base)
        failure = stopped_early(children) or local_model_failure(checks, children)
        if failure:
            refuse(failure)
        missing = awaited(checks, children)
        if not missing:
            return True
        if time.monotonic() - started > READY_TIMEOUT_S:
            refuse(f"not ready after {READY_TIMEOUT_S:.0f} s, still waiting for {', '.join(missing)} (see {log_dir}/)")
        if missing != shown:
            console.say(f"  waiting for {', '.join(missing)} ({time.monotonic() - started:.0f} s)")
            shown = missing
        time.sleep(POLL_S)
    return False


def supervise(app: Flask, procfile: Path) -> int:
    """Run the Procfile until Ctrl-C (status 0) or until a process stops (1); refusals exit 2.
    Whatever happens, every process is stopped on the way out."""
    config = app.config
    log_dir = Path(app.instance_path) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = child_env(app)
    console, interrupts = Console(), Interrupts()
    entries = read_procfile(procfile)
    console.say(f"Starting {', '.join(name for name, _ in entries)} (their output: {log_dir}/)")
    children = [Child(name, command, env, log_dir, console.echo) for name, command in entries]
    try:
        if not wait_until_ready(children, local_url(config["HOST"], config["PORT"]), interrupts, console, log_dir):
            return 0
        console.say(links(config["PUBLIC_URL"] or f"http://{config['HOST']}:{config['PORT']}", log_dir))
        console.following = True
        while not interrupts.count:
            ended = stopped_early(children)
            if ended:
                print(f"relay: {ended}; stopping the others", file=sys.stderr, flush=True)
                return 1
            time.sleep(POLL_S)
        return 0
    finally:
        stop(children, interrupts, console)


def main(argv: list[str]) -> None:
    procfile = Path(argv[0]).resolve() if argv else Path(ROOT, "Procfile")
    try:
        with refusing():
            app = prepare()
    except KeyboardInterrupt:
        sys.exit(130)
    os.chdir(ROOT)
    sys.exit(supervise(app, procfile))


if __name__ == "__main__":
    main(sys.argv[1:])
