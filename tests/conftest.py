"""Fixtures: the app and a client, principals, real Redis and databases, real processes.

Tests use Redis database 15 with a key prefix of their own, a SQLite file or a
PostgreSQL schema of their own, and stop every process they start. A server
the tests need but cannot reach fails the run; nothing is skipped for it.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import jwt
import pytest
import redis
import requests
from sqlalchemy import create_engine, text

from app import create_app
from tests.support import ROOT, VENV_BIN, Process, fake_server, free_port, wait_until

GENEROUS_LIMITS = (
    "GLOBAL_IP",
    "STREAM_USER",
    "STREAM_IP",
    "ANON_HOURLY",
    "ANON_LIFETIME",
    "ANON_IP_HOURLY",
    "ANON_MINT",
)
pytest_plugins = ["tests._logscan"]  # the end-of-run search of every log for the run's secrets
REDIS_URL = os.environ.get("RELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("RELAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# -- stores ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required for the tests and is not reachable at {REDIS_URL}: {exc}", pytrace=False)
    return REDIS_URL


@pytest.fixture(scope="session")
def key_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"relaytest-{os.getpid()}-{secrets.token_hex(3)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL schema of this run's own, dropped at the end."""
    schema = f"relay_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(
            f"PostgreSQL is required for the tests and is not reachable at {POSTGRES_URL}: {exc}", pytrace=False
        )
    yield f"{POSTGRES_URL}?options={quote(f'-csearch_path={schema}')}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def migrate(app) -> None:
    """Apply the Alembic migrations (what `flask db upgrade` does)."""
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))


# -- the app in this process -------------------------------------------------------
@pytest.fixture(scope="session")
def base_env(tmp_path_factory, redis_url: str, key_prefix: str) -> dict[str, str]:
    instance = tmp_path_factory.mktemp("instance")
    return {
        "RELAY_ENV": "test",
        "RELAY_INSTANCE_PATH": str(instance),
        "RELAY_DOTENV": str(instance / "no.env"),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{instance / 'relay.db'}",
        "LOG_LEVEL": "WARNING",
        "JWT_SECRET": secrets.token_urlsafe(48),
        # Every suite sends thousands of requests from 127.0.0.1 through one key prefix: the
        # contract's limits would refuse them. tests/limits sets the contract's values where it tests them.
        **{f"LIMIT_{name}": "1000000/60" for name in GENEROUS_LIMITS},
    }


@pytest.fixture
def make_app(base_env, tmp_path, monkeypatch):
    """Build a migrated app with settings overridden (SQLite file of the test's own)."""
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)

    def factory(**overrides: object):
        config = {"DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}", **overrides}
        app = create_app({name: str(value) for name, value in config.items()})
        migrate(app)
        return app

    return factory


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def anon_headers(client) -> dict[str, str]:
    token = client.post("/api/v1/anon_session").get_json()["token"]
    return {"Authorization": f"Bearer {token}"}


# -- principals of each kind (anonymous above) and databases for DB-level tests -------
def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def user_token(base_env):
    """Mint a user JWT as the identity provider would: HS256 with the test JWT_SECRET."""

    def mint(sub: str, email: str | None = None, ttl: int = 3600, **claims: object) -> str:
        now = int(time.time())
        body = {"sub": sub, "aud": "authenticated", "role": "authenticated", "iat": now, "exp": now + ttl, **claims}
        if email:
            body["email"] = email
        return jwt.encode(body, base_env["JWT_SECRET"], algorithm="HS256")

    return mint


@pytest.fixture
def user_a_headers(user_token) -> dict[str, str]:
    """User A: provisioned on first use as the admin of a personal tenant."""
    return bearer(user_token(f"user-a-{secrets.token_hex(4)}", "a@example.com"))


@pytest.fixture
def user_b_headers(user_token) -> dict[str, str]:
    """User B: the admin of another personal tenant."""
    return bearer(user_token(f"user-b-{secrets.token_hex(4)}", "b@example.com"))


@pytest.fixture
def member_headers(client, user_a_headers, user_token) -> dict[str, str]:
    """A `member` (not an admin) of user A's tenant."""
    from app.db import User
    from app.extensions import database

    assert client.get("/api/v1/conversations", headers=user_a_headers).status_code == 200
    subject_a = jwt.decode(user_a_headers["Authorization"].split()[1], options={"verify_signature": False})["sub"]
    subject = f"member-{secrets.token_hex(4)}"
    with database.session() as session:
        user_a = session.query(User).filter_by(subject=subject_a).one()
        session.add(User(tenant_id=user_a.tenant_id, subject=subject, role="member"))
    return bearer(user_token(subject))


@pytest.fixture
def api_key_headers(client, user_a_headers) -> dict[str, str]:
    """An API key with scope `chat` in user A's tenant."""
    response = client.post("/api/v1/api_keys", json={"name": "test key", "scopes": ["chat"]}, headers=user_a_headers)
    assert response.status_code == 201, response.get_json()
    return bearer(response.get_json()["key"])


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A database URL, once per engine, for DB-level tests that must hold on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("postgres_url")


# -- real processes -----------------------------------------------------------------
@pytest.fixture(scope="session")
def fake_openai(tmp_path_factory) -> Iterator[str]:
    """The fake OpenAI-style server; yields its base URL (…/v1)."""
    with fake_server("openai", tmp_path_factory.mktemp("fake-openai"), first_token_ms=5) as base:
        yield f"{base}/v1"


class Stack:
    """A running Relay: gunicorn (gevent) and Celery workers, on the test stores."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.base_url = f"http://127.0.0.1:{env['PORT']}"
        self.processes: dict[str, Process] = {}

    def start_web(self, name: str = "web", port: int | None = None, **env: str) -> str:
        port = port or free_port()
        process = Process(
            name,
            [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
            {**self.env, "PORT": str(port), **env},
            self.log_dir,
        )
        self.processes[name] = process
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(f"{url}/health", timeout=1).ok, 30, f"{name} to answer", process)
        return url

    def start_worker(self, name: str, pool: str, queues: str, concurrency: int, **env: str) -> Process:
        argv = [
            str(VENV_BIN / "celery"), "-A", "celery_app", "worker", "-P", pool, "-c", str(concurrency),
            "-Q", queues, "-n", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "-l", "INFO",
        ]  # fmt: skip
        process = Process(name, argv, {**self.env, **env}, self.log_dir)
        self.processes[name] = process
        wait_until(lambda: "ready." in process.log_path.read_text(errors="replace"), 60, f"{name} ready", process)
        return process

    def anon_token(self, base_url: str | None = None) -> str:
        response = requests.post(f"{base_url or self.base_url}/api/v1/anon_session", timeout=5)
        response.raise_for_status()
        return response.json()["token"]

    def post_stream(self, token: str, body: dict, base_url: str | None = None, **kwargs) -> requests.Response:
        return requests.post(
            f"{base_url or self.base_url}/api/v1/stream",
            json=body,
            headers={"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})},
            stream=True,
            timeout=kwargs.pop("timeout", 60),
            **kwargs,
        )

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()


def stack_env(base_env: dict[str, str], provider_url: str, log_dir: Path, **overrides: str) -> dict[str, str]:
    """Environment of a separate Relay: its own SQLite file (migrated) and settings."""
    metrics_dir = log_dir / "prometheus"
    metrics_dir.mkdir(exist_ok=True)
    env = {
        **os.environ,
        **base_env,
        "DATABASE_URL": f"sqlite:///{log_dir / 'relay.db'}",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_BASE_URL": provider_url,
        "DEFAULT_MODEL": "local-smollm2",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
        "LOG_LEVEL": "INFO",
        **overrides,
    }
    app_env = {name: env[name] for name in (*base_env, "DATABASE_URL", "REDIS_URL", "REDIS_KEY_PREFIX")}
    migrate(create_app(app_env))
    return env


@pytest.fixture(scope="session")
def stack(tmp_path_factory, base_env, fake_openai) -> Iterator[Stack]:
    """gunicorn (one gevent worker) + a gevent Celery worker (remote providers) +
    a prefork Celery worker (the local model), sharing a migrated SQLite file."""
    log_dir = tmp_path_factory.mktemp("stack")
    running = Stack(stack_env(base_env, fake_openai, log_dir), log_dir)
    try:
        running.start_web(port=int(running.env["PORT"]))
        running.start_worker("remote-worker", "gevent", "generate,webhooks", 200)
        running.start_worker("local-worker", "prefork", "generate_local", 1)
        yield running
    finally:
        running.stop()
