"""Test helpers: real processes that always clean up, free ports, an SSE client."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
T = TypeVar("T")


def at_once(call: Callable[[], T], count: int, timeout: float = 30) -> list[T]:
    """`call()` in `count` threads released together (a race); their results in thread order.
    What a thread raises is raised here."""
    barrier = threading.Barrier(count)

    def released() -> T:
        barrier.wait(timeout)
        return call()

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(released) for _ in range(count)]
        return [future.result(timeout) for future in futures]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child process in its own process group; `stop()` ends the whole group."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        from tests import _logscan  # the pytest plugin (conftest's pytest_plugins): imported there first

        _logscan.track(self.log_path, env)  # searched for the secrets of `env` at the end of the run
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def wait_until(check, timeout: float, what: str, process: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.name} exited while waiting for {what}:\n{process.log_tail()}")
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.1)
    tail = process.log_tail() if process else ""
    raise RuntimeError(f"timed out waiting for {what}\n{tail}")


@dataclass
class SSEEvent:
    id: int | None
    event: str
    data: dict

    @classmethod
    def parse(cls, block: str) -> SSEEvent | None:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" not in fields:
            return None  # the retry: preamble
        raw_id = fields.get("id")
        return cls(int(raw_id) if raw_id else None, fields["event"], json.loads(fields["data"]))


def iter_sse(response: requests.Response) -> Iterator[SSEEvent]:
    """Parse an SSE body as it arrives (blocks are separated by a blank line)."""
    buffer = ""
    for piece in response.iter_content(chunk_size=None, decode_unicode=False):
        buffer += piece.decode("ascii")  # Relay's SSE is ASCII: JSON with escapes
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            event = SSEEvent.parse(block)
            if event is not None:
                yield event


def collect(response: requests.Response, stop_after: int | None = None) -> list[SSEEvent]:
    """Events until the terminal one (or `stop_after` non-heartbeat events)."""
    events: list[SSEEvent] = []
    for event in iter_sse(response):
        if event.event == "heartbeat":
            continue
        events.append(event)
        if event.event in ("done", "error") or (stop_after and len(events) >= stop_after):
            break
    response.close()
    return events


def reply_text(events: list[SSEEvent]) -> str:
    return "".join(e.data["content"] for e in events if e.event == "message_chunk")


@contextlib.contextmanager
def fake_server(kind: str, log_dir: Path, **options: float) -> Iterator[str]:
    """Run a fake provider (`openai` or `anthropic`, see tests/fakes/) and yield its
    base URL; options become flags (first_token_ms=5 -> --first-token-ms 5)."""
    port = free_port()
    argv = [sys.executable, "-m", f"tests.fakes.{kind}_server", "--port", str(port)]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    process = Process(f"fake-{kind}-{port}", argv, os.environ, log_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{base}/stats", timeout=1).ok, 20, f"the fake {kind} server", process)
        yield base
    finally:
        process.stop()


class RedisServer:
    """A private redis-server the tests may stop and start (never the machine's shared one)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server must be on PATH for the tests that stop and start Redis"
        argv = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.directory)]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.answers, 10, "private redis-server")

    def answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
