"""The small interface every provider implements, and its errors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from app.catalog import ModelSpec
from app.streams.job import Sampling

NO_SAMPLING = Sampling()  # the provider's own defaults


@dataclass
class Delta:
    """A piece of a reply: text, and the provider's usage figures when it gives them."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None  # stop | length, from the provider


@dataclass
class JsonReply:
    """A whole answer constrained to a JSON Schema (structured output), with its usage."""

    text: str
    prompt_tokens: int | None  # None: the provider reported no usage
    completion_tokens: int | None
    finish_reason: str  # stop | length


class ProviderError(Exception):
    """The provider failed; `retryable` when a retry before the first chunk may help."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class Provider(ABC):
    """Streams a chat completion. Every network call has a timeout."""

    name: str

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = settings

    def sdk_options(self, setting_prefix: str, timeout: Callable[..., Any]) -> dict[str, Any]:
        """An official SDK client's options: `<prefix>_API_KEY`, `<prefix>_BASE_URL`, Relay's timeouts
        (`timeout` is the SDK's own Timeout class) and no SDK retries (the task retries, before the
        first chunk only)."""
        settings = self.settings
        return {
            "api_key": settings[f"{setting_prefix}_API_KEY"],
            "base_url": settings[f"{setting_prefix}_BASE_URL"] or None,
            "timeout": timeout(
                settings["PROVIDER_TIMEOUT_SECONDS"], connect=settings["PROVIDER_CONNECT_TIMEOUT_SECONDS"]
            ),
            "max_retries": 0,
        }

    @abstractmethod
    def stream(
        self, model: ModelSpec, messages: list[dict[str, str]], max_tokens: int, sampling: Sampling = NO_SAMPLING
    ) -> Iterator[Delta]:
        """Yield deltas of the reply (system messages and `sampling` passed on in the provider's
        own terms); raise ProviderError on failure."""

    def complete_json(
        self, model: ModelSpec, messages: list[dict[str, str]], schema: dict[str, Any], max_tokens: int
    ) -> JsonReply:
        """One answer constrained to `schema` (not streamed); raise ProviderError on failure."""
        raise ProviderError(f"the {self.name} provider offers no structured output")
