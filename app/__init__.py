"""Relay: a security-hardened streaming gateway for LLM chat."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dotenv import dotenv_values
from flask import Flask

from .config import resolve_settings

__version__ = "0.1.0"


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _environment(overrides: Mapping[str, Any] | None) -> dict[str, str]:
    """`.env`, then the process environment, then explicit overrides (tests)."""
    env_file = os.environ.get("RELAY_DOTENV") or os.path.join(ROOT, ".env")
    values = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if os.path.exists(env_file) else {}
    values.update(os.environ)
    values.update({k: str(v) for k, v in (overrides or {}).items()})
    return values


def settings_from_environment(config: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The instance path and the checked settings, as create_app() reads them (raises ConfigError)."""
    env = _environment(config)
    instance_path = env.get("RELAY_INSTANCE_PATH") or os.path.join(ROOT, "instance")
    return instance_path, resolve_settings(instance_path, env)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The application factory; `config` overrides environment settings (tests)."""
    instance_path, settings = settings_from_environment(config)
    app = Flask(__name__, instance_path=instance_path, static_folder=os.path.join(ROOT, "static"))
    app.config.from_mapping(settings)

    from .cli import register_commands
    from .observability import configure_logging
    from .registration import register_blueprints, register_errorhandlers, register_extensions, register_hooks

    configure_logging(app)
    register_extensions(app)
    register_hooks(app)
    register_errorhandlers(app)
    register_blueprints(app)
    register_commands(app)
    return app
