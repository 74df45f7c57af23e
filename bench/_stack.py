"""Start a whole Relay on loopback for a benchmark: fake provider, gunicorn, Celery.

Uses Redis database 14 with a key prefix of its own and a SQLite file (or
PostgreSQL with --postgres) under a temporary folder; everything stops at exit.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import VENV_BIN, Process, fake_server, free_port, wait_until  # noqa: E402

BENCH_REDIS_URL = os.environ.get("RELAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def high_limits_env(budget_usd: float = 1_000_000) -> dict[str, str]:
    """Every limit stays on (its checks are part of what a bench measures) but out of reach of thousands
    of streams from one client and one address; the spend ceilings likewise (each stream reserves its cap)."""
    rates = ("GLOBAL_IP", "STREAM_USER", "STREAM_IP", "ANON_HOURLY", "ANON_IP_HOURLY", "ANON_MINT")
    return {
        **{f"LIMIT_{name}": "1000000/60" for name in rates},
        "LIMIT_ANON_LIFETIME": "1000000",
        "DAILY_SPEND_CEILING_USD": str(budget_usd),
        "TENANT_DAILY_BUDGET_USD": str(budget_usd),
        "ANON_DAILY_BUDGET_USD": str(budget_usd),
    }


@contextlib.contextmanager
def fake_openai(first_token_ms: float, token_ms: float, log_dir: Path) -> Iterator[str]:
    """The fake OpenAI-style server of the tests; yields its base URL."""
    with fake_server("openai", log_dir, first_token_ms=first_token_ms, token_ms=token_ms) as base:
        yield base


@dataclass
class RelayStack:
    """A running Relay: its URL, Redis key prefix, environment and processes."""

    base: str
    prefix: str
    env: dict[str, str]
    web: Process
    worker: Process
    extra: dict[str, object] = field(default_factory=dict)

    def web_worker_pids(self) -> list[int]:
        """The gunicorn worker processes (children of the gunicorn master)."""
        return child_pids(self.web.popen.pid)


@contextlib.contextmanager
def relay(provider_base: str, log_dir: Path, web_workers: int = 1, worker_concurrency: int = 500,
          database_url: str | None = None, extra_env: dict[str, str] | None = None) -> Iterator[str]:  # fmt: skip
    with relay_stack(provider_base, log_dir, web_workers, worker_concurrency, database_url, extra_env) as stack:
        yield stack.base


@contextlib.contextmanager
def relay_stack(provider_base: str, log_dir: Path, web_workers: int = 1, worker_concurrency: int = 500,
                database_url: str | None = None, extra_env: dict[str, str] | None = None,
                worker_env: dict[str, str] | None = None, ready_timeout: float = 60) -> Iterator[RelayStack]:  # fmt: skip
    """Like relay(), but yields a RelayStack (processes, key prefix) for benches that inspect them.

    `worker_env` is added to the Celery worker's environment only."""
    prefix = f"relaybench-{secrets.token_hex(3)}:"
    port = free_port()
    env = {
        **os.environ,
        "RELAY_ENV": "test",
        "RELAY_INSTANCE_PATH": str(log_dir),
        "RELAY_DOTENV": str(log_dir / "no.env"),
        "REDIS_URL": BENCH_REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": database_url or f"sqlite:///{log_dir / 'relay.db'}",
        "OPENAI_API_KEY": "sk-bench-not-a-real-key",
        "OPENAI_BASE_URL": provider_base + "/v1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(web_workers),
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    processes: list[Process] = []
    try:
        migrate = Process("migrate", [str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"], env, log_dir)
        if migrate.popen.wait(60) != 0:
            raise RuntimeError(migrate.log_tail())
        web = Process("web", [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"], env, log_dir)
        processes.append(web)
        worker = Process(
            "worker",
            [str(VENV_BIN / "celery"), "-A", "celery_app", "worker", "-P", "gevent", "-c", str(worker_concurrency),
             "-Q", "generate", "-n", f"bench-{port}@%h", "--without-gossip", "--without-mingle", "-l", "WARNING"],
            {**env, **(worker_env or {})},
            log_dir,
        )  # fmt: skip
        processes.append(worker)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(f"{base}/health", timeout=1).ok, 30, "gunicorn", web)
        wait_until(
            lambda: requests.get(f"{base}/health/ready", timeout=3).json()["checks"]["workers"] == "ok",
            ready_timeout,
            "a Celery worker",
            worker,
        )
        if web_workers > 1:
            wait_until(lambda: len(child_pids(web.popen.pid)) >= web_workers, 30, "every gunicorn worker", web)
        yield RelayStack(base, prefix, env, web, worker)
    finally:
        for process in reversed(processes):
            process.stop()
        client = redis.Redis.from_url(BENCH_REDIS_URL)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)


def child_pids(parent: int) -> list[int]:
    """Direct children of a process, from /proc (Linux)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return sorted(children)


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit (children inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as path:
        yield Path(path)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# -- process inspection (Linux /proc) ------------------------------------------------
def tcp_sockets(pid: int) -> list[tuple[int, int, str]]:
    """(local port, remote port, state hex) of a process's TCP sockets; state "01" is ESTABLISHED."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[9] in inodes:
                local = int(parts[1].rsplit(":", 1)[1], 16)
                remote = int(parts[2].rsplit(":", 1)[1], 16)
                found.append((local, remote, parts[3]))
    return found


def vm_rss_kb(pid: int) -> int:
    """Resident set size of a process, kB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- a raw SSE client (http.client; cooperative under gevent's monkey-patching) ---------
@dataclass
class RawEvent:
    id: int | None
    event: str
    data: str  # JSON text

    def payload(self) -> dict:
        return json.loads(self.data)


class SSEConnection:
    """One HTTP/1.1 request whose body is SSE, read as it arrives; `drop()` closes it from the client side."""

    def __init__(self, base: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.response: http.client.HTTPResponse | None = None
        self._buffer = b""

    def open(self, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> int:
        self.conn.request(method, path, body=body, headers=headers)
        self.response = self.conn.getresponse()
        return self.response.status

    def local_port(self) -> int | None:
        sock = self.conn.sock
        try:
            return sock.getsockname()[1] if sock is not None else None
        except OSError:
            return None

    def header(self, name: str) -> str | None:
        return self.response.getheader(name) if self.response is not None else None

    def body(self, limit: int = 2000) -> bytes:
        return self.response.read(limit) if self.response is not None else b""

    def events(self):
        """Events (heartbeats included) until the server ends the body; the `retry:` preamble is skipped."""
        assert self.response is not None
        while True:
            while b"\n\n" in self._buffer:
                block, self._buffer = self._buffer.split(b"\n\n", 1)
                event = _parse_block(block)
                if event is not None:
                    yield event
            piece = self.response.read1(65536)
            if not piece:
                return
            self._buffer += piece

    def drop(self) -> None:
        sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self.response is not None:
            with contextlib.suppress(Exception):
                self.response.close()
        self.conn.close()


def _parse_block(block: bytes) -> RawEvent | None:
    fields: dict[str, str] = {}
    for line in block.decode("ascii").split("\n"):
        name, _, value = line.partition(": ")
        fields[name] = value
    if "event" not in fields:
        return None  # the `retry:` preamble
    raw_id = fields.get("id")
    return RawEvent(int(raw_id) if raw_id else None, fields["event"], fields.get("data", ""))


@contextlib.contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A PostgreSQL schema of this run's own on `url`, dropped at the end; yields the URL that uses it."""
    from urllib.parse import quote

    from sqlalchemy import create_engine, text

    schema = f"relay_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        separator = "&" if "?" in url else "?"
        yield f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process used so far, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


def sched_seconds(pid: int) -> tuple[float, float]:
    """(on a CPU, runnable but waiting for a CPU) seconds of all a process's threads, from schedstat."""
    on_cpu = waiting = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                run, wait, _ = (task / "schedstat").read_text().split()
                on_cpu += int(run)
                waiting += int(wait)
    return on_cpu / 1e9, waiting / 1e9


def log_summary(path: Path, top: int = 6) -> list[tuple[int, str]]:
    """The most frequent WARNING/ERROR/CRITICAL lines of a log, with ids, numbers and times blanked."""
    import re
    from collections import Counter

    counts: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            if any(level in line for level in ("WARNING", "ERROR", "CRITICAL", "Error:", "Exception:")):
                shape = re.sub(r"\[[^\]]*\]|\b[0-9a-f]{8,}\b|stream [A-Za-z0-9_-]{8,64}|\d+(\.\d+)?", "#", line)
                counts[shape.strip()[:200]] += 1
    return [(count, line) for line, count in counts.most_common(top)]


def keep_logs(stack: RelayStack, folder: str | None) -> None:
    """Copy the web and worker logs out of the temporary folder (which goes at exit)."""
    if not folder:
        return
    import shutil

    Path(folder).mkdir(parents=True, exist_ok=True)
    for process in (stack.web, stack.worker):
        with contextlib.suppress(OSError):
            shutil.copy(process.log_path, Path(folder) / process.log_path.name)
