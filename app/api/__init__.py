"""Blueprints, thin: parse, call one domain function, shape the response."""

from .actions import bp as actions_bp
from .admin import bp as admin_bp
from .ai import bp as ai_bp
from .api_keys import bp as api_keys_bp
from .conversations import bp as conversations_bp
from .health import bp as health_bp
from .metrics import bp as metrics_bp
from .openai import bp as openai_bp
from .openapi import bp as openapi_bp
from .sessions import bp as sessions_bp
from .stream import bp as stream_bp
from .usage import bp as usage_bp
from .webhooks import bp as webhooks_bp
from .widget import bp as widget_bp

BLUEPRINTS = (
    health_bp,
    metrics_bp,
    sessions_bp,
    stream_bp,
    conversations_bp,
    api_keys_bp,
    admin_bp,
    usage_bp,
    actions_bp,
    ai_bp,
    webhooks_bp,
    openai_bp,
    openapi_bp,
    widget_bp,
)
