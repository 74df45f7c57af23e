"""Relay: a security-hardened streaming gateway for LLM chat."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dotenv import dotenv_values
from flask import Flask

from .config import resolve_settings

__version__ = "0.1.0"


def _environment(app: Flask, overrides: Mapping[str, Any] | None) -> dict[str, str]:
    """The process environment over `.env` (never overriding what is set)."""
    env_file = os.environ.get("RELAY_DOTENV") or os.path.join(os.path.dirname(app.root_path), ".env")
    values = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if os.path.exists(env_file) else {}
    values.update(os.environ)
    values.update({k: str(v) for k, v in (overrides or {}).items()})
    return values


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The application factory; `config` overrides environment settings (tests)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    app = Flask(
        __name__,
        instance_path=os.environ.get("RELAY_INSTANCE_PATH") or os.path.join(root, "instance"),
        static_folder=os.path.join(root, "static"),
    )
    settings = resolve_settings(app.instance_path, _environment(app, config))
    app.config.from_mapping(settings)
    app.config["JSON_SORT_KEYS"] = False

    from .observability import configure_logging
    from .registration import register_blueprints, register_errorhandlers, register_extensions, register_hooks

    configure_logging(app)
    register_extensions(app)
    register_hooks(app)
    register_errorhandlers(app)
    register_blueprints(app)
    return app
