"""What authentication adds to a request: the same cheap endpoint with and without auth.

In-process: a WSGI call loop straight into the Flask app (no HTTP, no client
library), so the difference between the two endpoints is auth alone. Two
routes are added to the bench's app only: `/bench/open` (no credential) and
`/bench/authed` (`require_scopes("chat")`), both returning `{"ok": true}`.
Variants are interleaved in rounds so machine noise hits them alike:

  open                 no Authorization header, no auth code at all
  hs256                user JWT, HS256 with JWT_SECRET
  jwks-rs256/es256     user JWT verified with a key from a local JWKS server (cached)
  api-key              relay_sk_ key
  (these four with the default settings: a verified credential is reused for
  AUTH_CACHE_SECONDS, an IP's auth_failures/epoch check for AUTH_CHECK_CACHE_SECONDS)
  *-redis-each         AUTH_CHECK_CACHE_SECONDS=0: the Redis check on every request
  *-uncached           also AUTH_CACHE_SECONDS=0: full verification, a database
                       lookup and the Redis check on every request
Uses Redis database 14 with a key prefix of its own and SQLite in a temporary folder.

    .venv/bin/python bench/auth_overhead.py [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import redis
from _stack import BENCH_REDIS_URL, percentile, workdir
from flask import Blueprint
from werkzeug.test import EnvironBuilder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from app.auth import require_scopes  # noqa: E402
from tests.auth.helpers import KeyServer, SigningKey  # noqa: E402
from tests.conftest import migrate  # noqa: E402

GOAL_MS = 0.2
CREDENTIALS = ("hs256", "jwks-rs256", "jwks-es256", "api-key")


def bench_blueprint() -> Blueprint:
    bp = Blueprint("bench", __name__, url_prefix="/bench")
    bp.add_url_rule("/open", "open", lambda: {"ok": True})
    bp.add_url_rule("/authed", "authed", require_scopes("chat")(lambda: {"ok": True}))
    return bp


def make_app(folder: Path, prefix: str, secret_key: str, jwks_url: str, jwt_secret: str, cache_s: int, check_s: float):
    env = {
        "RELAY_ENV": "test",
        "RELAY_INSTANCE_PATH": str(folder),
        "RELAY_DOTENV": str(folder / "no.env"),
        "REDIS_URL": BENCH_REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "SECRET_KEY": secret_key,
        "JWT_SECRET": jwt_secret,
        "JWKS_URL": jwks_url,
        "DATABASE_URL": f"sqlite:///{folder / 'relay.db'}",
        "LOG_LEVEL": "WARNING",
        "AUTH_CACHE_SECONDS": str(cache_s),
        "AUTH_CHECK_CACHE_SECONDS": str(check_s),
        "LIMIT_GLOBAL_IP": "0",  # the bench measures auth, not the rate limiter
    }
    app = create_app(env)
    app.register_blueprint(bench_blueprint())
    migrate(app)
    return app


def caller(app, path: str, token: str | None) -> Callable[[], None]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    environ = EnvironBuilder(path=path, headers=headers).get_environ()
    status: list[str] = []

    def start_response(code: str, _headers, _exc_info=None) -> None:
        status.append(code)

    def call() -> None:
        status.clear()
        body = app(dict(environ, **{"wsgi.input": io.BytesIO()}), start_response)
        for _ in body:
            pass
        getattr(body, "close", lambda: None)()
        if not status or not status[0].startswith("200"):
            raise RuntimeError(f"{path} ({'with' if token else 'without'} a credential): {status}")

    return call


def user_claims(sub: str) -> dict:
    now = int(time.time())
    return {"sub": sub, "aud": "authenticated", "role": "authenticated", "iat": now, "exp": now + 3600}


def run(requests_per_round: int, rounds: int) -> None:
    rsa_key, ec_key = SigningKey("RSA"), SigningKey("EC")
    key_server = KeyServer()
    key_server.publish(rsa_key, ec_key)
    key_server.start()
    jwt_secret, secret_key = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    prefix = f"relaybench-auth-{secrets.token_hex(3)}:"
    variants: dict[str, Callable[[], None]] = {}
    try:
        with workdir() as folder:
            api_key = None
            # Both apps share one database and Redis prefix (the process has one engine and one Redis client).
            for cache_s, check_s, suffix in ((60, 1.0, ""), (60, 0, "-redis-each"), (0, 0, "-uncached")):
                app = make_app(folder, prefix, secret_key, key_server.url, jwt_secret, cache_s, check_s)
                if api_key is None:
                    created = app.test_client().post(
                        "/api/v1/api_keys",
                        json={"name": "bench", "scopes": ["chat"]},
                        headers={"Authorization": "Bearer " + jwt.encode(user_claims("bench-admin"), jwt_secret)},
                    )
                    api_key = created.get_json()["key"]
                signed = (
                    jwt.encode(user_claims("u-hs"), jwt_secret),
                    rsa_key.sign(user_claims("u-rs")),
                    ec_key.sign(user_claims("u-es")),
                    api_key,
                )
                tokens = dict(zip(CREDENTIALS, signed, strict=True))
                if not suffix:
                    variants["open"] = caller(app, "/bench/open", None)
                for name, token in tokens.items():
                    if suffix == "-redis-each" and name != "hs256":
                        continue
                    variants[name + suffix] = caller(app, "/bench/authed", token)
            samples = measure(variants, requests_per_round, rounds)
    finally:
        key_server.stop()
        client = redis.Redis.from_url(BENCH_REDIS_URL)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    report(samples, requests_per_round * rounds, key_server.fetches)


def measure(variants: dict[str, Callable[[], None]], per_round: int, rounds: int) -> dict[str, list[float]]:
    for call in variants.values():  # warm up: caches filled, keys fetched, code paths hot
        for _ in range(50):
            call()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    clock = time.perf_counter
    for _ in range(rounds):
        for name, call in variants.items():
            timings = samples[name]
            for _ in range(per_round):
                started = clock()
                call()
                timings.append(clock() - started)
    return samples


def report(samples: dict[str, list[float]], count: int, jwks_fetches: int) -> None:
    base = statistics.median(samples["open"])
    print(f"auth overhead, in-process WSGI calls, {count} requests per variant, interleaved in rounds")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, Redis {BENCH_REDIS_URL.rsplit('/', 1)[0]}")
    print(f"{'variant':<22}{'req/s':>9}{'median ms':>11}{'p90 ms':>9}{'added ms':>10}{'ratio':>7}")
    for name, timings in samples.items():
        median = statistics.median(timings)
        rate = len(timings) / sum(timings)
        added = median - base
        print(
            f"{name:<22}{rate:>9.0f}{median * 1e3:>11.3f}{percentile(timings, 90) * 1e3:>9.3f}"
            f"{added * 1e3:>10.3f}{median / base:>7.2f}"
        )
    cached = [name for name in samples if name in CREDENTIALS]
    worst = max(statistics.median(samples[name]) - base for name in cached)
    verdict = "met" if worst * 1e3 < GOAL_MS else "NOT met"
    print(f"goal: auth adds < {GOAL_MS} ms median (default settings); the worst adds {worst * 1e3:.3f} ms: {verdict}")
    print(f"JWKS fetches during the whole run: {jwks_fetches}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    run(max(1, args.requests // args.rounds), args.rounds)


if __name__ == "__main__":
    main()
