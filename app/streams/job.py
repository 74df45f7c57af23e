"""A generation job: what a stream start enqueues and the worker runs, as one typed value.

Celery carries it as a plain JSON dict (`to_dict`, `from_dict`): JSON only, never pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sampling:
    """How to sample, as the caller asked; None (or no stop sequence) leaves the provider's default."""

    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()

    def chat_options(self) -> dict[str, Any]:
        """The options under OpenAI's chat names (llama.cpp takes the same); what was left out stays out."""
        options: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p}
        options = {name: value for name, value in options.items() if value is not None}
        if self.stop:
            options["stop"] = list(self.stop)
        return options


@dataclass(frozen=True)
class GenerationJob:
    """One reply to generate: the stream it feeds, the model, the whole prompt and its bounds."""

    stream_id: str
    model: str
    messages: list[dict[str, str]]  # role and content, oldest first, as the provider gets them
    max_tokens: int
    cost_cap_usd: float
    sampling: Sampling = field(default_factory=Sampling)

    def to_dict(self) -> dict[str, Any]:
        """The job as Celery's JSON carries it."""
        sampling = self.sampling
        return {
            "stream_id": self.stream_id,
            "model": self.model,
            "messages": [dict(message) for message in self.messages],
            "max_tokens": self.max_tokens,
            "cost_cap_usd": self.cost_cap_usd,
            "sampling": {"temperature": sampling.temperature, "top_p": sampling.top_p, "stop": list(sampling.stop)},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationJob:
        """The job a worker received (`to_dict`'s output)."""
        sampling = data.get("sampling") or {}
        return cls(
            stream_id=data["stream_id"],
            model=data["model"],
            messages=[{"role": m["role"], "content": m["content"]} for m in data["messages"]],
            max_tokens=int(data["max_tokens"]),
            cost_cap_usd=float(data["cost_cap_usd"]),
            sampling=Sampling(sampling.get("temperature"), sampling.get("top_p"), tuple(sampling.get("stop") or ())),
        )
