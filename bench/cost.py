"""CPU per reply, and time to first chunk, of Relay against the provider called directly.

Relay runs as the Procfile runs it (gunicorn with one gevent web process, one
Celery gevent worker) in front of the fake OpenAI-style server of the tests
(first token after 5 ms). For each reply shape (20 and 200 chunks, sent as fast
as the fake can and 2 ms apart) the bench streams N replies through Relay's
/api/v1/stream, each right after the same reply asked of the provider directly,
one at a time. CPU is user + system time of every process of each kind (the
gunicorn master and its worker; the Celery worker), over the whole phase, minus
the stack's idle CPU over the same time (measured first, with nothing to do).

    .venv/bin/python bench/cost.py [--replies 100] [--shape 200x2] [--postgres URL] [--profile docs/perf/after]

--profile records each process kind with py-spy during each phase
and writes one flame graph (SVG) per kind; the CPU figures of a profiled run
include py-spy's sampling pauses and are not the ones to quote.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
from _stack import (
    child_pids,
    cpu_seconds,
    fake_openai,
    high_limits_env,
    percentile,
    postgres_schema,
    relay_stack,
    workdir,
)

SHAPES = ((20, 0), (20, 2), (200, 0), (200, 2))  # (chunks, ms between chunks)
IDLE_SECONDS = 5.0
SETTLE_SECONDS = 0.5  # after a phase's last reply: the worker's acknowledgement and clean-up


@dataclass
class Phase:
    chunks: int
    gap_ms: int
    cpu: dict[str, float] = field(default_factory=dict)  # kind -> CPU seconds, idle subtracted
    relay_first: list[float] = field(default_factory=list)
    relay_total: list[float] = field(default_factory=list)
    direct_first: list[float] = field(default_factory=list)
    direct_total: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)  # message_chunk events a Relay client received

    @property
    def name(self) -> str:
        return f"{self.chunks} chunks, {'as fast as sent' if self.gap_ms == 0 else f'{self.gap_ms} ms apart'}"


class Timed:
    """One streamed POST on a fresh connection, read as it arrives: time to `first`, then to `end`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def post(
        self, path: str, body: dict, headers: dict[str, str], first: bytes, end: bytes
    ) -> tuple[float, float, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        payload = json.dumps(body).encode()
        t0 = time.perf_counter()
        try:
            connection.request("POST", path, payload, {"Content-Type": "application/json", **headers})
            response = connection.getresponse()
            if response.status != 200:
                raise RuntimeError(f"{path} answered {response.status}: {response.read(300)!r}")
            received = b""
            first_at = None
            while True:
                piece = response.read1(65536)
                if not piece:
                    raise RuntimeError(f"{path}: the body ended early: {received[-300:]!r}")
                received += piece
                if first_at is None and first in received:
                    first_at = time.perf_counter() - t0
                if end in received[-len(piece) - len(end) :]:
                    break
                if b"event: error" in received:
                    raise RuntimeError(f"{path}: error event: {received[-300:]!r}")
            return first_at or 0.0, time.perf_counter() - t0, received
        finally:
            connection.close()


def kinds_of(stack) -> dict[str, list[int]]:
    """The pids of each process kind; the Celery gevent worker has no children, but count any."""
    web_master, worker = stack.web.popen.pid, stack.worker.popen.pid
    return {"web": [web_master, *child_pids(web_master)], "worker": [worker, *child_pids(worker)]}


def cpu_by_kind(kinds: dict[str, list[int]]) -> dict[str, float]:
    return {kind: sum(cpu_seconds(pid) for pid in pids) for kind, pids in kinds.items()}


@contextlib.contextmanager
def profiled(kinds: dict[str, list[int]], folder: Path | None, label: str, fmt: str) -> Iterator[None]:
    """py-spy on the busiest process of each kind (gunicorn's worker, the Celery worker) while inside."""
    if folder is None:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    recorders = []
    for kind, pids in kinds.items():
        target = pids[-1]  # the web kind's last pid is gunicorn's worker (the master only supervises)
        output = folder / f"{kind}-{label}.{'svg' if fmt == 'flamegraph' else 'txt'}"
        argv = [py_spy, "record", "--pid", str(target), "--rate", "250", "--format", fmt, "-o", str(output)]
        recorders.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)  # py-spy writes the graph on SIGINT
        for recorder in recorders:
            recorder.wait(60)


def run_phase(phase: Phase, replies: int, relay: Timed, direct: Timed, token: str, kinds) -> None:
    message = f"#chunks={phase.chunks} #gap={phase.gap_ms}"
    direct_body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": message}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    relay_body = {"message": message, "model": "gpt-4o-mini"}
    auth = {"Authorization": f"Bearer {token}"}
    before, t0 = cpu_by_kind(kinds), time.monotonic()
    for _ in range(replies):
        first, total, _ = direct.post("/v1/chat/completions", direct_body, {}, b'"content"', b"data: [DONE]")
        phase.direct_first.append(first)
        phase.direct_total.append(total)
        first, total, body = relay.post("/api/v1/stream", relay_body, auth, b"event: message_chunk", b"event: done")
        phase.relay_first.append(first)
        phase.relay_total.append(total)
        phase.events.append(body.count(b"event: message_chunk"))
    time.sleep(SETTLE_SECONDS)
    after, elapsed = cpu_by_kind(kinds), time.monotonic() - t0
    phase.cpu = {kind: after[kind] - before[kind] - IDLE_RATE.get(kind, 0.0) * elapsed for kind in kinds}


IDLE_RATE: dict[str, float] = {}  # kind -> CPU seconds per second with nothing to do


def measure_idle(kinds) -> None:
    before = cpu_by_kind(kinds)
    time.sleep(IDLE_SECONDS)
    after = cpu_by_kind(kinds)
    IDLE_RATE.update({kind: (after[kind] - before[kind]) / IDLE_SECONDS for kind in kinds})


def ms(value: float) -> str:
    return f"{value * 1000:7.2f}"


def report(phases: list[Phase], replies: int, database: str) -> None:
    print(f"CPU per reply and time to first chunk; {replies} replies a shape, one at a time; database: {database}")
    print(f"idle CPU subtracted: web {IDLE_RATE['web'] * 1000:.1f} ms/s, worker {IDLE_RATE['worker'] * 1000:.1f} ms/s")
    print()
    print(f"{'reply':<44} {'web':>8} {'worker':>8} {'total':>8}   CPU ms per reply   events/reply")
    for phase in phases:
        cpu = {kind: value / replies for kind, value in phase.cpu.items()}
        total = sum(cpu.values())
        print(
            f"{phase.name:<44} {ms(cpu['web'])} {ms(cpu['worker'])} {ms(total)}"
            f"                      {statistics.median(phase.events):5.0f}"
        )
    print()
    print(f"{'reply':<44} {'direct':>8} {'relay':>8} {'added':>8}   median ms   (p99 added first chunk)")
    for phase in phases:
        for what, direct, relay in (
            ("first chunk", phase.direct_first, phase.relay_first),
            ("total", phase.direct_total, phase.relay_total),
        ):
            d, r = statistics.median(direct), statistics.median(relay)
            extra = ""
            if what == "first chunk":
                extra = f"   ({ms(percentile([b - a for a, b in zip(direct, relay, strict=True)], 99)).strip()})"
            print(f"{phase.name + ' ' + what:<44} {ms(d)} {ms(r)} {ms(r - d)}{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=100, help="replies of each shape")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--shape", action="append", default=None, help="CHUNKSxGAP_MS, e.g. 200x2 (repeatable; default: all four)"
    )
    parser.add_argument("--postgres", default=None, help="DATABASE_URL of a PostgreSQL database (default SQLite)")
    parser.add_argument("--profile", type=Path, default=None, help="folder for py-spy flame graphs")
    parser.add_argument(
        "--profile-format", default="flamegraph", choices=("flamegraph", "raw"), help="raw: collapsed stacks (text)"
    )
    args = parser.parse_args()
    shapes = [tuple(int(n) for n in s.split("x")) for s in args.shape] if args.shape else SHAPES

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(workdir())
        database_url = stack.enter_context(postgres_schema(args.postgres)) if args.postgres else None
        provider = stack.enter_context(fake_openai(first_token_ms=5, token_ms=0, log_dir=tmp))
        relay = stack.enter_context(
            relay_stack(provider, tmp, web_workers=1, database_url=database_url, extra_env=high_limits_env())
        )
        kinds = kinds_of(relay)
        host, port = relay.base.removeprefix("http://").split(":")
        relay_client = Timed(host, int(port))
        provider_host, provider_port = provider.removeprefix("http://").split(":")
        direct_client = Timed(provider_host, int(provider_port))
        token = requests.post(f"{relay.base}/api/v1/anon_session", timeout=5).json()["token"]
        for chunks, gap in shapes:  # warm every path (imports, tokenizer, pools, prepared scripts)
            run_phase(Phase(chunks, gap), max(1, args.warmup // len(shapes)), relay_client, direct_client, token, kinds)
        measure_idle(kinds)
        phases = []
        for chunks, gap in shapes:
            phase = Phase(chunks, gap)
            label = f"{chunks}x{gap}ms"
            with profiled(kinds, args.profile, label, args.profile_format):
                run_phase(phase, args.replies, relay_client, direct_client, token, kinds)
            phases.append(phase)
    report(phases, args.replies, "PostgreSQL" if args.postgres else "SQLite")


if __name__ == "__main__":
    main()
