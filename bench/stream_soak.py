"""Soak: N concurrent streams whose clients drop the connection at random points and resume.

Every stream asks the fake provider to echo a text of its own (60-120 characters,
streamed in 3-character chunks, one every --token-ms), so its reply is known.
Each client drops its connection one to --max-drops times, at random points:
right after the headers or the `stream` event (before the first chunk), after
some chunks (mid-stream), or after the last chunk (right before `done`). It
stays offline a random moment, then resumes with `GET /api/v1/stream/<id>` and
`Last-Event-ID: <last id received>`. Two gunicorn processes serve the streams,
so a resume lands on either one.

Checked per stream: event ids exactly 1..n across every connection (no gap, no
repeat), chunk indexes 0..m-1 each once, and the chunks' text, in index order,
equal to the echo (chunks the worker receives close together share one event).

Resume time: from the reconnect request being sent to the first event after it
when the journal already held a newer event at that moment (replay), otherwise
(nothing new yet) to the response headers (or the 204).

    .venv/bin/python bench/stream_soak.py [--streams 500] [--token-ms 100] [--max-drops 3]
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import string  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402
from _stack import (  # noqa: E402
    BENCH_REDIS_URL,
    SSEConnection,
    cpu_seconds,
    fake_openai,
    high_limits_env,
    keep_logs,
    log_summary,
    machine_cpu,
    percentile,
    postgres_schema,
    raise_open_files_limit,
    relay_stack,
    sched_seconds,
    tcp_sockets,
    workdir,
)

MODEL = "gpt-4o-mini"
ACTIVE = [0, 0]  # stream clients running now, and the most at once
CHUNK_CHARS = 3  # the fake provider's echo piece size


@dataclass
class Soak:
    """One stream's client: its plan, and everything it saw."""

    number: int
    text: str
    drop_points: list[int]  # drop once the last id received equals each of these (0: right after the headers)
    stream_id: str | None = None
    last: int = 0  # highest event id received
    ids: list[int] = field(default_factory=list)
    chunks: dict[int, str] = field(default_factory=dict)
    duplicated_ids: int = 0
    gap_ids: int = 0
    duplicated_chunks: int = 0
    done: dict | None = None
    done_id: int | None = None  # the `done` event's id: the stream's last, so it had done_id - 2 chunk events
    error: dict | None = None
    failure: str | None = None  # the bench's own view: HTTP status, timeout, no terminal event
    planned_drops: int = 0
    unplanned_reconnects: int = 0
    ports: list[int] = field(default_factory=list)  # client ports of its connections
    admitted_at: float | None = None  # monotonic time its POST got its headers


@dataclass
class Resume:
    replay: bool  # the journal held a newer event when the request was sent
    status: int
    headers_s: float
    first_event_s: float | None
    connect_s: float = 0.0
    at: float = 0.0  # monotonic time the request was sent
    stream: int = 0
    port: int = 0
    first_event: str = ""
    last_id: int = 0  # the Last-Event-ID sent

    @property
    def goal_s(self) -> float:
        return self.first_event_s if self.replay and self.first_event_s is not None else self.headers_s


def plan(number: int, rng: random.Random, max_drops: int) -> Soak:
    length = rng.randint(60, 120)
    body = "".join(rng.choice(string.ascii_letters + string.digits + " .,") for _ in range(length))
    text = (f"s{number:05d} " + body)[:length]
    chunks = -(-len(text) // CHUNK_CHARS)
    # Event ids: 1 `stream`, 2..chunks+1 the chunks, chunks+2 `done`.
    kinds = {
        "before_first_chunk": lambda: rng.choice((0, 1)),
        "mid_stream": lambda: rng.randint(2, chunks),
        "before_done": lambda: chunks + 1,
    }
    points = {kinds[rng.choice(list(kinds))]() for _ in range(rng.randint(1, max_drops))}
    return Soak(number, text, sorted(points))


def take(soak: Soak, event) -> None:
    """Account for one received event (heartbeats excluded)."""
    if event.id is None:
        soak.failure = soak.failure or f"{event.event} event without an id"
        return
    soak.ids.append(event.id)
    if event.id <= soak.last:
        soak.duplicated_ids += 1
    elif event.id > soak.last + 1:
        soak.gap_ids += event.id - soak.last - 1
    soak.last = max(soak.last, event.id)
    if event.event == "message_chunk":
        data = event.payload()
        index = data["index"]
        if index in soak.chunks:
            soak.duplicated_chunks += 1
            return
        soak.chunks[index] = data["content"]
    elif event.event == "done":
        soak.done = event.payload()
        soak.done_id = event.id
    elif event.event == "error":
        soak.error = event.payload()


class StreamDeadline(Exception):
    """One stream's client ran out of time."""


def run_stream(soak: Soak, base: str, token: str, store: redis.Redis, prefix: str, resumes: list[Resume],
               start_at: float, deadline_s: float, max_reconnects: int) -> None:  # fmt: skip
    gevent.sleep(max(0.0, start_at - time.monotonic()))
    ACTIVE[0] += 1
    ACTIVE[1] = max(ACTIVE[1], ACTIVE[0])
    auth = {"Authorization": f"Bearer {token}"}
    points = list(soak.drop_points)
    rng = random.Random(soak.number)
    connection = None
    try:
        with gevent.Timeout(deadline_s, StreamDeadline):
            connection = SSEConnection(base, timeout=30)
            body = json.dumps({"message": "echo:" + soak.text, "model": MODEL}).encode()
            status = connection.open("POST", "/api/v1/stream", {**auth, "Content-Type": "application/json"}, body)
            if status != 200:
                soak.failure = f"POST {status}: {connection.body()[:200]!r}"
                return
            soak.stream_id = connection.header("X-Stream-Id")
            soak.admitted_at = time.monotonic()
            soak.ports.append(connection.local_port() or 0)
            events = connection.events()
            for attempt in range(max_reconnects + 1):
                ended = read_until_drop(soak, events, points)
                connection.drop()
                if ended or soak.failure:
                    return
                if attempt == max_reconnects:
                    soak.failure = f"gave up after {max_reconnects} reconnects"
                    return
                gevent.sleep(rng.uniform(0, 0.25))  # offline a moment, as a real client would be
                connection, events, resume = reconnect(soak, base, auth, store, prefix)
                resumes.append(resume)
                if resume.status == 204:
                    soak.failure = f"204 at Last-Event-ID {soak.last} before any terminal event"
                    return
                if resume.status != 200:
                    soak.failure = f"resume {resume.status}: {connection.body()[:200]!r}"
                    return
                soak.ports.append(connection.local_port() or 0)
    except StreamDeadline:
        soak.failure = f"no terminal event within {deadline_s:.0f} s (last id {soak.last})"
    except Exception as exc:  # a bench must report, not crash
        soak.failure = f"{type(exc).__name__}: {exc} (last id {soak.last})"
    finally:
        ACTIVE[0] -= 1
        if connection is not None:
            connection.drop()


def _verdict(soak: Soak, points: list[int]) -> bool | None:
    """True: the stream ended; False: drop now (a planned point); None: keep reading."""
    if soak.done is not None or soak.error is not None:
        return True
    while points and points[0] < soak.last:
        points.pop(0)  # passed while offline, or skipped by a gap
    if points and points[0] == soak.last:
        points.pop(0)
        soak.planned_drops += 1
        return False
    return None


def read_until_drop(soak: Soak, events, points: list[int]) -> bool:
    """Read events; True at the terminal event, False at a planned drop point or when the server ends the body."""
    verdict = _verdict(soak, points)  # a drop right after the headers, or after the first event of a resume
    if verdict is not None:
        return verdict
    for event in events:
        if event.event == "heartbeat":
            continue
        take(soak, event)
        verdict = _verdict(soak, points)
        if verdict is not None:
            return verdict
    soak.unplanned_reconnects += 1  # the server ended the body without a terminal event
    return False


def reconnect(soak: Soak, base: str, auth: dict, store: redis.Redis, prefix: str):
    """Resume after the last id received; times the headers and the first event."""
    seq = store.hget(f"{prefix}stream:{{{soak.stream_id}}}:meta", "seq")
    replay = seq is not None and int(seq) > soak.last
    headers = {**auth}
    if soak.last:
        headers["Last-Event-ID"] = str(soak.last)
    connection = SSEConnection(base, timeout=30)
    at = time.monotonic()
    t0 = time.perf_counter()
    connection.conn.connect()
    connect_s = time.perf_counter() - t0
    status = connection.open("GET", f"/api/v1/stream/{soak.stream_id}", headers)
    resume = Resume(
        replay,
        status,
        time.perf_counter() - t0,
        None,
        connect_s,
        at,
        soak.number,
        connection.local_port() or 0,
        last_id=soak.last,
    )
    if status != 200:
        return connection, iter(()), resume
    events = connection.events()
    for event in events:
        if event.event == "heartbeat":
            continue  # not a new event
        resume.first_event_s = time.perf_counter() - t0
        resume.first_event = event.event
        take(soak, event)
        break
    return connection, events, resume


def sample_web_processes(pids: list[int], web_port: int, seen: dict[int, set[int]], peak: dict[int, int],
                         sched: list[tuple[float, float, float]], stop_at: float, every_s: float = 0.5) -> None:  # fmt: skip
    """Every `every_s` until `stop_at`: map client ports to the gunicorn worker holding them, and
    record the web processes' (time, CPU seconds, seconds runnable but waiting for a CPU)."""
    while time.monotonic() < stop_at:
        for pid in pids:
            ports = {remote for local, remote, state in tcp_sockets(pid) if local == web_port and state == "01"}
            seen[pid] |= ports
            peak[pid] = max(peak[pid], len(ports))
        on_cpu, waiting = (sum(values) for values in zip(*(sched_seconds(pid) for pid in pids), strict=True))
        sched.append((time.monotonic(), on_cpu, waiting))
        gevent.sleep(every_s)


def ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    scaled = [v * 1000 for v in values]
    return (
        f"median {statistics.median(scaled):7.2f} ms   p99 {percentile(scaled, 99):7.2f} ms   max {max(scaled):7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--token-ms", type=float, default=250.0, help="delay between chunks of the fake provider")
    parser.add_argument("--first-token-ms", type=float, default=200.0)
    parser.add_argument("--max-drops", type=int, default=3, help="planned drops per stream: 1..this")
    parser.add_argument("--ramp-s", type=float, default=5.0, help="streams start spread over this long")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0, help="longest life of one stream's client")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--postgres", default=None, help="a PostgreSQL URL to run on (a schema of its own) instead of SQLite"
    )
    parser.add_argument("--logs", default=None, help="copy the web and worker logs into this folder")
    parser.add_argument("--dump", default=None, help="write every resume (JSON lines) to this file")
    args = parser.parse_args()
    soft, hard = raise_open_files_limit()
    rng = random.Random(args.seed)
    soaks = [plan(i, rng, args.max_drops) for i in range(args.streams)]
    resumes: list[Resume] = []

    with (
        workdir() as tmp,
        postgres_schema(args.postgres) if args.postgres else contextlib.nullcontext() as database_url,
        fake_openai(first_token_ms=args.first_token_ms, token_ms=args.token_ms, log_dir=tmp) as provider,
        relay_stack(
            provider,
            tmp,
            web_workers=args.web_workers,
            worker_concurrency=max(500, args.streams + 50),
            database_url=database_url,
            extra_env=high_limits_env(),
        ) as stack,
    ):
        token = requests.post(f"{stack.base}/api/v1/anon_session", timeout=5).json()["token"]
        store = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(BENCH_REDIS_URL, max_connections=50))
        pids = stack.web_worker_pids()
        web_port = int(stack.env["PORT"])
        seen: dict[int, set[int]] = {pid: set() for pid in pids}
        peak: dict[int, int] = dict.fromkeys(pids, 0)
        processes = {"web": pids, "worker": [stack.worker.popen.pid], "bench client": [os.getpid()]}
        cpu_before = {name: sum(cpu_seconds(pid) for pid in group) for name, group in processes.items()}
        machine_before = machine_cpu()
        started = time.monotonic()
        sched: list[tuple[float, float, float]] = []
        sampler = gevent.spawn(
            sample_web_processes, pids, web_port, seen, peak, sched, started + args.timeout + args.ramp_s
        )
        greenlets = [
            gevent.spawn(
                run_stream,
                soak,
                stack.base,
                token,
                store,
                stack.prefix,
                resumes,
                started + args.ramp_s * i / max(1, args.streams),
                args.timeout,
                args.max_drops + 5,
            )  # fmt: skip
            for i, soak in enumerate(soaks)
        ]
        gevent.joinall(greenlets, timeout=args.timeout + args.ramp_s + 30)
        gevent.killall([g for g in greenlets if not g.dead], timeout=5)
        wall = time.monotonic() - started
        cpu = {name: sum(cpu_seconds(pid) for pid in group) - cpu_before[name] for name, group in processes.items()}
        busy, total = (after - before for after, before in zip(machine_cpu(), machine_before, strict=True))
        cpu["whole machine"] = busy
        cpu["cores"] = total / wall
        sampler.kill()
        web_log = stack.web.log_path.read_text(errors="replace")
        worker_log = stack.worker.log_path.read_text(errors="replace")
        keep_logs(stack, args.logs)
        summaries = {"web": log_summary(stack.web.log_path), "worker": log_summary(stack.worker.log_path)}

    if args.dump:
        with open(args.dump, "w") as out:
            for resume in resumes:
                pid = next((pid for pid, ports in seen.items() if resume.port in ports), None)
                out.write(json.dumps({**vars(resume), "at": resume.at - started, "pid": pid}) + "\n")
    report(args, soaks, resumes, wall, seen, peak, (soft, hard), web_log, worker_log, cpu, sched, summaries)


def received_text(soak: Soak) -> str:
    """The text of the chunk events received, in order, up to the first missing one."""
    parts = []
    for index in range(len(soak.chunks)):
        if index not in soak.chunks:
            break
        parts.append(soak.chunks[index])
    return "".join(parts)


def report(args, soaks, resumes, wall, seen, peak, limits, web_log, worker_log, cpu, sched, summaries) -> None:
    completed = [s for s in soaks if s.done is not None and not s.failure]
    lost = 0
    for soak in soaks:
        if soak.done_id is not None:
            # Chunks that came close together share an event: count events, not the provider's chunks.
            expected = soak.done_id - 2  # ids: 1 `stream`, then the chunk events, then `done`
            lost += expected - len(set(soak.chunks) & set(range(expected)))
        elif soak.chunks:
            top = max(soak.chunks)
            lost += top + 1 - len(set(soak.chunks) & set(range(top + 1)))  # holes below the highest received
    duplicated = sum(s.duplicated_chunks for s in soaks)
    dup_ids = sum(s.duplicated_ids for s in soaks)
    gap_ids = sum(s.gap_ids for s in soaks)
    wrong = sum(1 for s in soaks if not s.text.startswith(received_text(s)))
    text_mismatch = sum(1 for s in completed if "".join(s.chunks[i] for i in sorted(s.chunks)) != s.text)
    id_mismatch = sum(
        1 for s in soaks if s.done is not None and s.ids and sorted(set(s.ids)) != list(range(1, s.last + 1))
    )
    errors = Counter(s.error["error_code"] for s in soaks if s.error)
    failures = Counter(s.failure.split(":")[0] for s in soaks if s.failure)
    goal = [r.goal_s for r in resumes if r.status in (200, 204)]
    replayed = [r for r in resumes if r.replay]
    planned = sum(s.planned_drops for s in soaks)
    unplanned = sum(s.unplanned_reconnects for s in soaks)
    on_both = 0
    for soak in soaks:
        holders = {pid for pid, ports in seen.items() if set(soak.ports) & ports}
        on_both += len(holders) > 1

    n = len(soaks)
    print(f"stream soak: {n} concurrent streams, echo replies of 60-120 chars in {CHUNK_CHARS}-char chunks, "
          f"one every {args.token_ms:g} ms (first after {args.first_token_ms:g} ms); "
          f"{args.web_workers} gunicorn processes; wall {wall:.1f} s; RLIMIT_NOFILE {limits[0]}/{limits[1]}")  # fmt: skip
    print(f"planned drops {planned} (1..{args.max_drops} per stream), unplanned reconnects (server closed) {unplanned}, "
          f"resumes {len(resumes)} ({len(replayed)} with newer events in the journal)")  # fmt: skip
    print(f"most streams in progress at once (started, not yet ended): {ACTIVE[1]}")
    print(f"open SSE connections per web process at the peak sample: {sorted(peak.values(), reverse=True)}; "
          f"streams seen on more than one web process: {on_both}")  # fmt: skip
    reasons = Counter(s.done.get("finish_reason") for s in completed)
    print(f"streams completed (got done)  {len(completed)}/{n} = {100 * len(completed) / max(1, n):.1f}%   goal 100%"
          f"   (finish_reason {dict(reasons)})")  # fmt: skip
    print(f"lost chunks                   {lost}   goal 0")
    print(f"duplicated chunks             {duplicated}   goal 0")
    print(
        f"event ids: repeated {dup_ids}, skipped {gap_ids}, streams whose ids are not exactly 1..n {id_mismatch}   goal 0"
    )
    print(
        f"streams whose text so far is not the echo's start {wrong}; completed streams whose text differs "
        f"{text_mismatch}   goal 0"
    )
    print(f"resume time                   {ms(goal)}   goal p99 < 100 ms")
    print(f"  of which replays (request -> first event)        {ms([r.goal_s for r in replayed])}")
    print(f"  all resumes, request -> headers                  {ms([r.headers_s for r in resumes])}")
    print(
        f"  all resumes, request -> first event (incl. live) {ms([r.first_event_s for r in resumes if r.first_event_s is not None])}"
    )
    admitted = [s.admitted_at for s in soaks if s.admitted_at is not None]
    if admitted:
        last_admitted = max(admitted)
        during = [r.goal_s for r in resumes if r.status in (200, 204) and r.at <= last_admitted]
        after = [r.goal_s for r in resumes if r.status in (200, 204) and r.at > last_admitted]
        print(f"  while streams were still being started ({len(during):4d}) {ms(during)}")
        print(f"  after the last stream started ({len(after):4d})        {ms(after)}")
        for name, window in (("while starting", lambda t: t <= last_admitted), ("after", lambda t: t > last_admitted)):
            rows = [row for row in sched if window(row[0])]
            if len(rows) >= 2:
                span = rows[-1][0] - rows[0][0]
                print(f"    web processes {name}: {span:.1f} s, on a CPU {rows[-1][1] - rows[0][1]:.1f} s, runnable "
                      f"but waiting for a CPU {rows[-1][2] - rows[0][2]:.1f} s")  # fmt: skip
    print(
        f"CPU seconds over the run: web {cpu['web']:.1f}, Celery worker {cpu['worker']:.1f}, bench client "
        f"{cpu['bench client']:.1f}; whole machine {cpu['whole machine']:.1f} of {cpu['cores'] * wall:.1f} "
        f"({100 * cpu['whole machine'] / max(1e-9, cpu['cores'] * wall):.0f}% busy, {cpu['cores']:.0f} cores; "
        f"the machine is shared, and the fake provider and Redis run on it too)"
    )
    print(f"error events                  {sum(errors.values())} {dict(errors) if errors else ''}")
    if failures:
        print(f"client-side failures          {sum(failures.values())} {dict(failures)}")
        for soak in [s for s in soaks if s.failure][:5]:
            print(f"  stream {soak.number} ({soak.stream_id}): {soak.failure}")
    for soak in [s for s in soaks if s.duplicated_ids or s.gap_ids or s.duplicated_chunks][:5]:
        print(f"  stream {soak.number} ({soak.stream_id}) drops at {soak.drop_points}: ids {soak.ids}")
    tracebacks = web_log.count("Traceback") + worker_log.count("Traceback")
    if tracebacks:
        print(f"tracebacks in the web/worker logs: {tracebacks}; the first one ends:")
        for log in (web_log, worker_log):
            if "Traceback" in log:
                lines = log[log.index("Traceback") :].splitlines()
                end = next((i for i, line in enumerate(lines[1:], 1) if not line.startswith((" ", "\t"))), 1)
                print("\n".join("    " + line for line in lines[max(0, end - 6) : end + 1]))
    for name, lines in summaries.items():
        if lines:
            print(f"most frequent warnings/errors in the {name} log (numbers and ids blanked):")
            for count, line in lines:
                print(f"  {count:6d}  {line}")
    met = (len(completed) == n and lost == 0 and duplicated == 0 and dup_ids == 0 and gap_ids == 0 and wrong == 0
           and goal and percentile([g * 1000 for g in goal], 99) < 100)  # fmt: skip
    print(f"goal (100% completed, 0 lost, 0 duplicated, resume p99 < 100 ms) -> {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
