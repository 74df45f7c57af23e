"""Provider registry: one instance per provider per worker process."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .base import Delta, JsonReply, Provider, ProviderError

__all__ = ["Delta", "JsonReply", "Provider", "ProviderError", "get_provider"]

_instances: dict[str, Provider] = {}
_lock = threading.Lock()  # the local model's start-up proof and the first job may ask at once


def _provider_class(name: str) -> type[Provider]:
    # Imported on demand: a remote-provider worker never loads llama.cpp, and the reverse.
    if name == "local":
        from .local import LocalProvider

        return LocalProvider
    if name == "openai":
        from .openai_compat import OpenAIProvider

        return OpenAIProvider
    if name == "anthropic":
        from .anthropic_api import AnthropicProvider

        return AnthropicProvider
    raise ValueError(f"unknown provider {name!r}")


def get_provider(name: str, settings: Mapping[str, Any]) -> Provider:
    """This process's instance of the provider `name` (created on first use)."""
    provider = _instances.get(name)
    if provider is None:
        with _lock:
            provider = _instances.get(name)
            if provider is None:
                provider = _instances[name] = _provider_class(name)(settings)
    return provider
