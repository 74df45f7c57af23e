"""How many open streams one gunicorn gevent worker process holds; its Redis connections; memory per stream.

Part 1: one gunicorn worker process (WEB_CONCURRENCY=1) and one gevent Celery
worker of high concurrency; every stream asks the fake provider for a first
token only after --ttft-s, so streams stay open (heartbeats only). Streams are
opened in batches of --batch until --streams, or until a batch no longer
opens (then the most reached is reported with the reason). After --hold-s it
counts the streams that got their `stream` event and are still open, the Redis
connections of the gunicorn worker process (its sockets to Redis, from /proc,
matched with CLIENT LIST: which of them are pub/sub), and VmRSS of that
process before and after, divided by the open streams.

Part 2 (run first, on the same stack): 100 concurrent streams whose replies
take about 200 ms each (`#ttft=200`) through that one web process; their wall
time against one such reply alone shows the streams are served concurrently.

    .venv/bin/python bench/concurrent_streams.py [--streams 5000] [--batch 250] [--hold-s 15]
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

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
    raise_open_files_limit,
    relay_stack,
    tcp_sockets,
    vm_rss_kb,
    workdir,
)

MODEL = "gpt-4o-mini"
ESTABLISHED = "01"
MAX_REDIS_SOCKETS = 64  # a web process's connections to Redis, with the default pool sizes


def bench_env(ttft_s: float) -> dict[str, str]:
    """Limits out of reach, and no timeout that could end a held stream during the bench."""
    return {
        **high_limits_env(),
        "QUEUE_TIMEOUT_SECONDS": str(int(ttft_s * 2)),
        "STREAM_STALL_SECONDS": str(int(ttft_s * 2)),
        "PROVIDER_TIMEOUT_SECONDS": str(int(ttft_s * 2)),
    }


# -- part 2: concurrency of short replies ------------------------------------------------
@dataclass
class Reply:
    seconds: float = 0.0  # request sent -> done
    stream_event_s: float | None = None  # -> the `stream` event (admitted)
    first_chunk_s: float | None = None
    problem: str | None = "unfinished"


def one_reply(base: str, token: str, number: int, reply_ms: int) -> Reply:
    """One whole stream whose provider waits reply_ms before its first token, timed."""
    message = f"echo:{number:03d} #ttft={reply_ms}"
    expected = message.removeprefix("echo:")
    connection = SSEConnection(base, timeout=60)
    reply = Reply()
    t0 = time.perf_counter()
    try:
        body = json.dumps({"message": message, "model": MODEL}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        status = connection.open("POST", "/api/v1/stream", headers, body)
        if status != 200:
            reply.problem = f"POST {status}"
            return reply
        text = []
        for event in connection.events():
            if event.event == "stream":
                reply.stream_event_s = time.perf_counter() - t0
            elif event.event == "message_chunk":
                reply.first_chunk_s = reply.first_chunk_s or time.perf_counter() - t0
                text.append(event.payload()["content"])
            elif event.event in ("done", "error"):
                reply.problem = None if event.event == "done" and "".join(text) == expected else event.data[:200]
                return reply
        reply.problem = "closed without a terminal event"
        return reply
    except Exception as exc:
        reply.problem = f"{type(exc).__name__}: {exc}"
        return reply
    finally:
        reply.seconds = time.perf_counter() - t0
        connection.drop()


def concurrency_part(base: str, token: str, count: int, reply_ms: int) -> dict:
    alone = [one_reply(base, token, i, reply_ms).seconds for i in range(5)]
    t0 = time.perf_counter()
    greenlets = [gevent.spawn(one_reply, base, token, 100 + i, reply_ms) for i in range(count)]
    gevent.joinall(greenlets, timeout=120)
    wall = time.perf_counter() - t0
    gevent.killall([g for g in greenlets if not g.dead], timeout=5)
    results: list[Reply] = [g.value for g in greenlets if g.successful() and g.value]

    def spread(values: list[float | None]) -> str:
        present = [v for v in values if v is not None]
        if not present:
            return "n/a"
        return f"median {statistics.median(present):.3f} s, max {max(present):.3f} s"

    return {
        "alone": statistics.median(alone),
        "wall": wall,
        "ok": sum(1 for r in results if r.problem is None),
        "problems": dict(Counter(r.problem for r in results if r.problem)),
        "admitted": spread([r.stream_event_s for r in results]),
        "first_chunk": spread([r.first_chunk_s for r in results]),
        "done": spread([r.seconds for r in results]),
    }


# -- part 1: open streams ------------------------------------------------------------------
@dataclass
class Held:
    state: str = "connecting"  # connecting, open, ended, closed, failed
    detail: str = ""
    heartbeats: int = 0
    opened_at: float | None = None  # monotonic
    ended_at: float | None = None


def hold(base: str, token: str, number: int, ttft_s: float, held: Held) -> None:
    """Start a stream whose first token is far away and keep reading it (heartbeats) until killed."""
    connection = SSEConnection(base, timeout=60)
    try:
        body = json.dumps({"message": f"held {number} #ttft={int(ttft_s * 1000)}", "model": MODEL}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        status = connection.open("POST", "/api/v1/stream", headers, body)
        if status != 200:
            held.state, held.detail = "failed", f"POST {status}: {connection.body(300)!r}"
            return
        for event in connection.events():
            if event.event == "stream":
                held.state = "open"
                held.opened_at = time.monotonic()
            elif event.event == "heartbeat":
                held.heartbeats += 1
            elif event.event in ("done", "error", "message_chunk"):
                held.state, held.detail = "ended", f"{event.event} {event.data[:200]}"
                return
        held.state, held.detail = "closed", "the server closed the stream"
    except Exception as exc:
        held.state, held.detail = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        if held.state != "open":
            held.ended_at = time.monotonic()
        connection.drop()


def redis_connections(pid: int, store: redis.Redis) -> dict:
    """The process's sockets to Redis (from /proc), and what CLIENT LIST says of each."""
    redis_port = urlsplit(BENCH_REDIS_URL).port or 6379
    ports = {local for local, remote, state in tcp_sockets(pid) if remote == redis_port and state == ESTABLISHED}
    clients = [c for c in store.client_list() if int(c["addr"].rsplit(":", 1)[1]) in ports]
    pubsub = [
        c for c in clients
        if int(c.get("sub", 0)) or int(c.get("psub", 0)) or int(c.get("ssub", 0)) or "P" in c.get("flags", "")
        or c.get("cmd") in ("subscribe", "psubscribe", "ssubscribe", "unsubscribe")
    ]  # fmt: skip
    return {
        "sockets": len(ports),
        "clients": len(clients),
        "pubsub": len(pubsub),
        "channels": [int(c.get("sub", 0)) + int(c.get("psub", 0)) + int(c.get("ssub", 0)) for c in pubsub],
        "cmds": dict(Counter(c.get("cmd", "?") for c in clients)),
    }


def not_open_summary(helds: list[Held], t0: float) -> list[str]:
    """What ended the streams that are not open, and when (seconds after the ramp began)."""
    groups: dict[tuple[str, str], list[Held]] = {}
    for held in helds:
        if held.state != "open":
            groups.setdefault((held.state, held.detail[:110]), []).append(held)
    lines = []
    for (state, detail), members in sorted(groups.items(), key=lambda item: -len(item[1]))[:5]:
        ended = sorted(h.ended_at - t0 for h in members if h.ended_at is not None)
        lived = sorted(h.ended_at - h.opened_at for h in members if h.ended_at and h.opened_at)
        when = f"ended {ended[0]:.1f}..{ended[-1]:.1f} s" if ended else ""
        life = f", after {lived[0]:.1f}..{lived[-1]:.1f} s open" if lived else ""
        lines.append(f"{len(members)} x {state} {detail!r} ({when}{life})")
    return lines


def open_part(base: str, token: str, pid: int, args, store: redis.Redis) -> dict:
    helds: list[Held] = []
    greenlets: list[gevent.Greenlet] = []
    ramp_started = time.monotonic()
    stop_reason = f"reached --streams {args.streams}"
    try:
        while len(helds) < args.streams:
            if time.monotonic() - ramp_started > args.ramp_timeout:
                stop_reason = f"ramp took longer than --ramp-timeout {args.ramp_timeout:.0f} s"
                break
            batch = [Held() for _ in range(min(args.batch, args.streams - len(helds)))]
            helds += batch
            greenlets += [
                gevent.spawn(hold, base, token, len(greenlets) + i, args.ttft_s, h) for i, h in enumerate(batch)
            ]
            deadline = time.monotonic() + args.batch_timeout
            while time.monotonic() < deadline and any(h.state == "connecting" for h in batch):
                gevent.sleep(0.2)
            opened = sum(h.state == "open" for h in batch)
            total_open = sum(h.state == "open" for h in helds)
            print(f"  {total_open:5d} open streams after {time.monotonic() - ramp_started:6.1f} s; "
                  f"RSS {vm_rss_kb(pid) / 1024:7.1f} MB", flush=True)  # fmt: skip
            if opened < len(batch) // 2:
                reasons = Counter((h.state, h.detail[:120]) for h in batch if h.state != "open")
                stop_reason = f"a batch opened only {opened}/{len(batch)}: {dict(reasons.most_common(3))}"
                break
        ramp_s = time.monotonic() - ramp_started
        gevent.sleep(args.hold_s)  # every open stream gets at least one heartbeat while held
        still_open = sum(h.state == "open" for h in helds)
        return {
            "attempted": len(helds),
            "open": still_open,
            "ramp_s": ramp_s,
            "reason": stop_reason,
            "rss_kb": vm_rss_kb(pid),
            "redis": redis_connections(pid, store),
            "heartbeats": statistics.median([h.heartbeats for h in helds if h.state == "open"] or [0]),
            "not_open": not_open_summary(helds, ramp_started),
        }
    finally:
        gevent.killall(greenlets, timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=250, help="streams opened at once in the ramp")
    parser.add_argument("--batch-timeout", type=float, default=120.0, help="longest wait for one batch to open")
    parser.add_argument("--ramp-timeout", type=float, default=900.0)
    parser.add_argument("--hold-s", type=float, default=15.0, help="held at the peak before counting (> heartbeat)")
    parser.add_argument("--ttft-s", type=float, default=1800.0, help="first token of a held stream after this long")
    parser.add_argument("--worker-concurrency", type=int, default=None, help="Celery gevent pool (default streams+200)")
    parser.add_argument("--concurrent", type=int, default=100, help="part 2: streams at once")
    parser.add_argument("--logs", default=None, help="copy the web and worker logs into this folder")
    parser.add_argument("--reply-ms", type=int, default=200, help="part 2: first token of each reply after this")
    args = parser.parse_args()
    soft, hard = raise_open_files_limit()
    # Each held stream costs the bench one socket, gunicorn one, the Celery worker one (to the provider)
    # and the fake provider one: every one of these processes needs streams + a margin.
    fd_note = "" if soft >= args.streams + 500 else f" (too low for {args.streams} streams: at most ~{soft - 500})"
    concurrency = args.worker_concurrency or args.streams + 200

    with (
        workdir() as tmp,
        fake_openai(first_token_ms=5, token_ms=1, log_dir=tmp) as provider,
        relay_stack(
            provider,
            tmp,
            web_workers=1,
            worker_concurrency=concurrency,
            extra_env=bench_env(args.ttft_s),
            ready_timeout=120,
        ) as stack,  # fmt: skip
    ):
        token = requests.post(f"{stack.base}/api/v1/anon_session", timeout=5).json()["token"]
        store = redis.Redis.from_url(BENCH_REDIS_URL, decode_responses=True)
        (pid,) = stack.web_worker_pids()
        print(
            f"gunicorn worker pid {pid}; Celery gevent concurrency {concurrency}; RLIMIT_NOFILE {soft}/{hard}{fd_note}"
        )
        part2 = concurrency_part(stack.base, token, args.concurrent, args.reply_ms)
        print(f"part 2 done: {args.concurrent} streams in {part2['wall']:.2f} s", flush=True)
        gevent.sleep(2)
        rss_before = vm_rss_kb(pid)
        redis_before = redis_connections(pid, store)
        cpu_before = cpu_seconds(pid)
        part1 = open_part(stack.base, token, pid, args, store)
        cpu_used = cpu_seconds(pid) - cpu_before
        provider_stats = requests.get(f"{provider}/stats", timeout=5).json()
        keep_logs(stack, args.logs)
        logs = {"web": log_summary(stack.web.log_path), "worker": log_summary(stack.worker.log_path)}

    per_stream_kb = (part1["rss_kb"] - rss_before) / max(1, part1["open"])
    redis_after = part1["redis"]
    print()
    print(f"part 1: open streams held by ONE gunicorn gevent worker process (provider first token after "
          f"{args.ttft_s:.0f} s; held {args.hold_s:.0f} s at the peak)")  # fmt: skip
    print(f"open streams reached          {part1['open']} of {part1['attempted']} started in {part1['ramp_s']:.1f} s "
          f"(median {part1['heartbeats']:.0f} heartbeats each)   goal 5,000")  # fmt: skip
    print(f"  ramp ended: {part1['reason']}")
    for line in part1["not_open"]:
        print(f"  not open: {line}")
    print(
        f"Redis pub/sub connections     {redis_after['pubsub']} (subscribed channels {redis_after['channels']})   goal <= 2"
    )
    print(f"Redis connections, all        {redis_after['sockets']} sockets of the process to Redis "
          f"({redis_after['clients']} in CLIENT LIST, last commands {redis_after['cmds']}); "
          f"before the ramp {redis_before['sockets']}   goal <= {MAX_REDIS_SOCKETS}")  # fmt: skip
    print(f"memory per open stream        {per_stream_kb:.1f} KB (VmRSS {rss_before / 1024:.1f} MB -> "
          f"{part1['rss_kb'] / 1024:.1f} MB)   goal < 50 KB")  # fmt: skip
    print(
        f"web process CPU over part 1   {cpu_used:.1f} s ({1000 * cpu_used / max(1, part1['attempted']):.1f} ms a stream)"
    )
    print(f"fake provider: most streams in flight at once {provider_stats['max_in_flight']} "
          f"(requests {provider_stats['requests']})")  # fmt: skip
    print()
    print(
        f"part 2: {args.concurrent} concurrent streams, each reply's first token after {args.reply_ms} ms, one web process"
    )
    print(f"one reply alone (median of 5) {part2['alone']:.3f} s")
    print(f"{args.concurrent} at once: wall           {part2['wall']:.3f} s; one after another would take "
          f"~{args.concurrent * part2['alone']:.1f} s; complete and correct {part2['ok']}/{args.concurrent} "
          f"{part2['problems'] or ''}")  # fmt: skip
    print(f"  per stream: `stream` event {part2['admitted']}; first chunk {part2['first_chunk']}; "
          f"done {part2['done']}")  # fmt: skip
    for name, lines in logs.items():
        if lines:
            print(f"most frequent warnings/errors in the {name} log (numbers and ids blanked):")
            for count, line in lines:
                print(f"  {count:6d}  {line}")
    sockets = max(redis_before["sockets"], redis_after["sockets"])
    met = part1["open"] >= 5000 and redis_after["pubsub"] <= 2 and per_stream_kb < 50 and sockets <= MAX_REDIS_SOCKETS
    print(
        f"goal (5,000 open streams, <= 2 pub/sub connections, <= {MAX_REDIS_SOCKETS} Redis sockets, < 50 KB a stream)"
        f" -> {'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
