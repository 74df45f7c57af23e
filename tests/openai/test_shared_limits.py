"""One set of limits, quotas and budgets for /v1/chat/completions and /api/v1/stream: what one
spends, the other no longer has."""

from __future__ import annotations

import openai
import pytest

from tests.support import collect

from .conftest import ANON_LIFETIME, wait_for_window

pytestmark = pytest.mark.slow

MESSAGE = "echo:quota"


def _sdk(relay, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{relay.base_url}/v1", api_key=token, max_retries=0, timeout=30)


def _relay_stream(relay, token: str):
    response = relay.post_stream(token, {"message": MESSAGE, "model": "gpt-4o-mini"})
    if response.status_code == 200:
        collect(response)
    return response


def test_a_quota_used_up_over_v1_is_used_up_on_api_v1_stream(relay):
    token = relay.anon_token()  # anonymous tokens work too (scope chat)
    for _ in range(ANON_LIFETIME):
        assert _sdk(relay, token).chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": MESSAGE}]).choices[0].message.content == "quota"  # fmt: skip
    wait_for_window()  # the per-principal rate limit is not what refuses it
    refused = _relay_stream(relay, token)
    assert refused.status_code == 429
    assert (refused.json()["error"]["code"], refused.json()["error"]["details"]["limit"]) == (
        "quota_exceeded", "anon_lifetime")  # fmt: skip


def test_a_quota_used_up_on_api_v1_stream_is_used_up_over_v1(relay):
    token = relay.anon_token()
    for _ in range(ANON_LIFETIME):
        assert _relay_stream(relay, token).status_code == 200
    wait_for_window()
    with pytest.raises(openai.RateLimitError) as caught:
        _sdk(relay, token).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": MESSAGE}])
    assert caught.value.code == "insufficient_quota" and caught.value.type == "insufficient_quota"
    assert "anon_lifetime" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"  # the SDK must not retry a spent quota
