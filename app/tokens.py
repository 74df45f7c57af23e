"""Counting tokens the way a model's provider will bill them.

Used on both sides: admission (is the cost cap below the prompt's own cost?
how much to reserve?) and the worker (what to settle when a provider reports
no usage). Where Relay has no tokenizer for a model it answers a bound that
never counts low: byte-level BPE tokenizers spend at least one byte a token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .catalog import ModelSpec

# The chat format's overhead (OpenAI: 3-4 tokens a message, a few a request).
TOKENS_PER_MESSAGE = 8
TOKENS_PER_REQUEST = 8


def count_text_tokens(spec: ModelSpec, text: str) -> int:
    """Tokens of `text` for `spec`'s model; an upper bound where no tokenizer is known."""
    return len(text.encode("utf-8", "surrogatepass"))


def count_prompt_tokens(spec: ModelSpec, messages: Iterable[Mapping[str, str]]) -> int:
    """Tokens the provider will bill for these chat messages as input."""
    rows = list(messages)
    return sum(count_text_tokens(spec, row["content"]) + TOKENS_PER_MESSAGE for row in rows) + TOKENS_PER_REQUEST
