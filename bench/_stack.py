"""Start a whole Relay on loopback for a benchmark: fake provider, gunicorn, Celery.

Uses Redis database 14 with a key prefix of its own and a SQLite file (or
PostgreSQL with --postgres) under a temporary folder; everything stops at exit.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import VENV_BIN, Process, free_port, wait_until  # noqa: E402

BENCH_REDIS_URL = os.environ.get("RELAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


@contextlib.contextmanager
def fake_openai(first_token_ms: float, token_ms: float, log_dir: Path) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port),
            "--first-token-ms", str(first_token_ms), "--token-ms", str(token_ms)]  # fmt: skip
    process = Process("fake-openai", argv, os.environ, log_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{base}/stats", timeout=1).ok, 20, "fake server", process)
        yield base
    finally:
        process.stop()


@contextlib.contextmanager
def relay(provider_base: str, log_dir: Path, web_workers: int = 1, worker_concurrency: int = 500,
          database_url: str | None = None, extra_env: dict[str, str] | None = None) -> Iterator[str]:  # fmt: skip
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
            env,
            log_dir,
        )  # fmt: skip
        processes.append(worker)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(f"{base}/health", timeout=1).ok, 30, "gunicorn", web)
        wait_until(
            lambda: requests.get(f"{base}/health/ready", timeout=3).json()["checks"]["workers"] == "ok",
            60,
            "a Celery worker",
            worker,
        )
        yield base
    finally:
        for process in reversed(processes):
            process.stop()
        client = redis.Redis.from_url(BENCH_REDIS_URL)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as path:
        yield Path(path)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
