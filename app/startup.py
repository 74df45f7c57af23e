"""Starting a Relay process: a refusal is one line on stderr and exit status 2, never a traceback.

    relay: refusing to start: SECRET_KEY: required in production (at least 32 random bytes)

Every entry point runs its start-up under `refusing()`: `make run` (app/devserver.py),
gunicorn's master (gunicorn.conf.py, before it forks workers that would fail and be
rebooted), Celery workers (celery_app.py) and `flask` commands (wsgi.py, app/cli.py,
migrations/env.py). A refusal is a refused setting (ConfigError), something missing on
the machine (ProvisionError), or a store that does not answer (StartupError). A store is
named by its setting, host and port, never by its URL: URLs hold passwords.

This module imports only the standard library and app/config.py: gunicorn's master
must not load the app before gevent patches each worker.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn
from urllib.parse import urlparse

from .config import ConfigError
from .provision import ProvisionError

EXIT_REFUSED = 2
CONNECT_TIMEOUT_S = 3.0
DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "postgresql": 5432, "postgres": 5432, "mysql": 3306}


class StartupError(RuntimeError):
    """A store does not answer, or the address to serve on is taken; the message names the setting."""


def refuse(reason: str) -> NoReturn:
    """Print the one line and exit with status 2."""
    line = " ".join(str(reason).split())  # one line, whatever the message held
    print(f"relay: refusing to start: {line}", file=sys.stderr, flush=True)
    sys.exit(EXIT_REFUSED)


@contextmanager
def refusing(settings: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Run start-up work; a refusal becomes the one line. With `settings`, a failure of a store
    (a connection error from the database or Redis) is explained by the store that does not
    answer, when one does not; otherwise it is raised as it was."""
    try:
        try:
            yield
        except Exception as exc:
            if settings is not None and _store_failure(exc):
                check_stores(settings)
            raise
    except (ConfigError, ProvisionError, StartupError) as exc:
        refuse(str(exc))


def _store_failure(exc: Exception) -> bool:
    from .errors import DEPENDENCY_EXCEPTIONS  # only after a failure: this module stays light

    return isinstance(exc, DEPENDENCY_EXCEPTIONS)


def where(url: str) -> str:
    """`host:port` of a store's URL (never its user or password)."""
    parsed = urlparse(url)
    host = parsed.hostname or "localhost"
    port = parsed.port or DEFAULT_PORTS.get(parsed.scheme.split("+")[0], 0)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _answers(setting: str, url: str, what: str) -> None:
    if url.startswith("sqlite"):
        path = url.partition(":///")[2].partition("?")[0]  # sqlite:///relative or sqlite:////absolute
        directory = os.path.dirname(os.path.abspath(path))
        if path and path != ":memory:" and not os.access(directory, os.W_OK):
            raise StartupError(f"{setting}: cannot write the SQLite database's directory {directory}")
        return
    try:
        if not urlparse(url).hostname:
            return  # a Unix socket: its first connection tells
        host, _, port = where(url).rpartition(":")
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except ValueError:
        raise ConfigError(f"{setting}: malformed URL (the port is not a number)") from None
    except OSError as exc:
        raise StartupError(
            f"{setting}: {what} at {where(url)} does not answer ({exc.strerror or 'timed out'})"
        ) from None


def check_stores(settings: Mapping[str, Any]) -> None:
    """The database, Redis and the Celery broker accept connections (raises StartupError)."""
    _answers("DATABASE_URL", settings["DATABASE_URL"], "the database")
    _answers("REDIS_URL", settings["REDIS_URL"], "Redis")
    if settings["CELERY_BROKER_URL"] != settings["REDIS_URL"]:
        _answers("CELERY_BROKER_URL", settings["CELERY_BROKER_URL"], "the Celery broker")


def check_port(host: str, port: int) -> None:
    """HOST:PORT can be bound now (as gunicorn binds it: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.create_server((host, port), family=family).close()
    except OSError as exc:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise StartupError(
            f"cannot listen on {address} ({os.strerror(exc.errno) if exc.errno else exc}); "
            f"set PORT to a free port, e.g. PORT={port + 1} make run"
        ) from None


def check_startable() -> dict[str, Any]:
    """The settings as create_app() reads them, refused when unsafe, and the stores answering."""
    from . import settings_from_environment

    _, settings = settings_from_environment()
    check_stores(settings)
    return settings
