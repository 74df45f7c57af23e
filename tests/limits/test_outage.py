"""Redis stops mid-test: every limited endpoint answers 503 with Retry-After (never a 500,
never admitted unlimited), and service resumes by itself when Redis returns."""

from __future__ import annotations

import pytest
import requests

from app.auth import anonymous
from tests.conftest import Stack, stack_env
from tests.support import wait_until

pytestmark = pytest.mark.slow


def test_redis_stopped_mid_test_is_503_then_recovers_without_restart(tmp_path, base_env, fake_openai, private_redis):
    env = stack_env(base_env, fake_openai, tmp_path, REDIS_URL=private_redis.url, LOG_LEVEL="WARNING")
    relay = Stack(env, tmp_path)
    try:
        base = relay.start_web(port=int(env["PORT"]))
        token = anonymous.mint(env["SECRET_KEY"], 3600)[0]
        headers = {"Authorization": f"Bearer {token}"}
        stream = {"message": "hi", "model": "local-smollm2"}

        def limited_requests():
            yield requests.get(f"{base}/api/v1/models", timeout=10)
            yield requests.post(f"{base}/api/v1/anon_session", timeout=10)
            yield requests.post(f"{base}/api/v1/stream", json=stream, headers=headers, timeout=10, stream=True)
            yield requests.get(f"{base}/api/v1/conversations", headers=headers, timeout=10)

        for response in limited_requests():
            assert response.status_code == 200, response.text
            response.close()

        private_redis.stop()
        for response in limited_requests():
            assert response.status_code == 503, (response.request.url, response.status_code, response.text)
            error = response.json()["error"]
            assert error["code"] == "dependency_unavailable"
            assert int(response.headers["Retry-After"]) >= 1
            assert error["request_id"] == response.headers["X-Request-ID"]
        assert requests.get(f"{base}/health", timeout=10).status_code == 200

        private_redis.start()  # same port, empty: the limits start counting again
        wait_until(lambda: requests.get(f"{base}/api/v1/models", timeout=10).status_code == 200, 20, "recovery")
        for response in limited_requests():
            assert response.status_code == 200, response.text
            response.close()
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        assert 'relay_dependency_errors_total{dependency="redis"}' in metrics
    finally:
        relay.stop()
