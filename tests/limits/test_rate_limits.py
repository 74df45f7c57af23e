"""The limits table in one process: each limit's 429, its code and headers; client IP; off switches."""

from __future__ import annotations

import pytest

from tests.limits.conftest import anon_token, assert_429, auth, post_stream


def test_global_ip_counts_every_request_and_answers_the_contracts_429(limits_app):
    client = limits_app(LIMIT_GLOBAL_IP="3/60").test_client()
    seen = []
    for path in ("/api/v1/models", "/no/such/path", "/api/v1/models"):
        response = client.get(path)
        assert response.status_code in (200, 404)
        seen.append(response.headers["X-RateLimit-Remaining"])
        assert response.headers["X-RateLimit-Limit"] == "3"
    assert seen == ["2", "1", "0"]
    response = client.get("/api/v1/models")
    assert_429(response, "rate_limited", "global_ip")
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert 55 <= int(response.headers["Retry-After"]) <= 60
    assert int(response.headers["X-RateLimit-Reset"]) > 0


def test_health_and_metrics_are_exempt(limits_app):
    client = limits_app(LIMIT_GLOBAL_IP="1/60").test_client()
    assert client.get("/api/v1/models").status_code == 200
    for _ in range(5):
        for path in ("/health", "/health/ready", "/metrics"):
            response = client.get(path)
            assert response.status_code != 429, path
            assert "X-RateLimit-Limit" not in response.headers
    assert client.get("/api/v1/models").status_code == 429


def test_anon_mint_is_per_ip_and_a_quota(limits_app):
    client = limits_app(LIMIT_ANON_MINT="2/3600").test_client()
    for _ in range(2):
        assert client.post("/api/v1/anon_session").status_code == 200
    assert_429(client.post("/api/v1/anon_session"), "quota_exceeded", "anon_mint")
    other = client.post("/api/v1/anon_session", environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert other.status_code == 200


@pytest.mark.parametrize(
    ("setting", "limit", "code", "same_token", "same_ip"),
    [
        ("LIMIT_STREAM_USER", "stream_user", "rate_limited", True, False),
        ("LIMIT_STREAM_IP", "stream_ip", "rate_limited", False, True),
        ("LIMIT_ANON_HOURLY", "anon_hourly", "quota_exceeded", True, False),
        ("LIMIT_ANON_LIFETIME", "anon_lifetime", "quota_exceeded", True, False),
        ("LIMIT_ANON_IP_HOURLY", "anon_ip_hourly", "quota_exceeded", False, True),
    ],
)
def test_each_stream_limit_refuses_the_next_stream(limits_app, setting, limit, code, same_token, same_ip):
    app = limits_app(**{setting: "2/3600" if limit != "anon_lifetime" else "2"})
    client = app.test_client()
    token = anon_token(app)
    for n in range(2):
        response = post_stream(
            client, token if same_token else anon_token(app), "10.1.0.1" if same_ip else f"10.2.0.{n}"
        )
        assert response.status_code == 200, response.get_data(as_text=True)
    response = post_stream(client, token if same_token else anon_token(app), "10.1.0.1" if same_ip else "10.2.0.9")
    error = assert_429(response, code, limit)
    assert error["details"]["retry_after"] == int(response.headers["Retry-After"])
    assert response.headers["X-RateLimit-Limit"] == "2" and response.headers["X-RateLimit-Remaining"] == "0"


def test_minting_new_tokens_never_resets_the_per_ip_anonymous_quota(limits_app):
    app = limits_app(LIMIT_ANON_IP_HOURLY="3/3600")
    client = app.test_client()
    for _ in range(3):
        token = client.post("/api/v1/anon_session").get_json()["token"]
        assert post_stream(client, token).status_code == 200
    fresh = client.post("/api/v1/anon_session").get_json()["token"]
    assert_429(post_stream(client, fresh), "quota_exceeded", "anon_ip_hourly")


def test_lifetime_quota_never_resets_with_time(limits_app, redis_client):
    app = limits_app(LIMIT_ANON_LIFETIME="1")
    client = app.test_client()
    token = anon_token(app)
    assert post_stream(client, token, "10.3.0.1").status_code == 200
    assert_429(post_stream(client, token, "10.3.0.2"), "quota_exceeded", "anon_lifetime")
    key = next(redis_client.scan_iter(match=app.config["REDIS_KEY_PREFIX"] + "limits:anon_lifetime:*"))
    assert redis_client.ttl(key) > app.config["ANON_TOKEN_MAX_TTL"] - 10  # outlives any token


def test_a_refused_stream_uses_up_nothing(limits_app):
    app = limits_app(LIMIT_ANON_HOURLY="1/3600", LIMIT_STREAM_IP="2/3600")
    client = app.test_client()
    token = anon_token(app)
    assert post_stream(client, token, "10.4.0.1").status_code == 200
    for _ in range(3):
        assert_429(post_stream(client, token, "10.4.0.1"), "quota_exceeded", "anon_hourly")
    # Had the refusals counted against stream_ip, this second stream from the address would be refused.
    assert post_stream(client, anon_token(app), "10.4.0.1").status_code == 200


def test_zero_turns_a_limit_off(limits_app):
    app = limits_app(LIMIT_STREAM_USER="0", LIMIT_ANON_HOURLY="0", LIMIT_ANON_LIFETIME="0", LIMIT_GLOBAL_IP="0")
    client = app.test_client()
    token = anon_token(app)
    for n in range(40):
        assert post_stream(client, token, f"10.5.0.{n}").status_code == 200


def test_headers_name_the_most_constraining_limit(limits_app):
    app = limits_app(LIMIT_STREAM_USER="5/30", LIMIT_STREAM_IP="4/30", LIMIT_ANON_HOURLY="9/3600")
    client = app.test_client()
    token = anon_token(app)
    response = post_stream(client, token, "10.6.0.1")
    assert (response.headers["X-RateLimit-Limit"], response.headers["X-RateLimit-Remaining"]) == ("4", "3")
    for n in range(3):
        post_stream(client, token, f"10.6.1.{n}")  # stream_user: 1 left; stream_ip of 10.6.0.1: 3 left
    response = post_stream(client, token, "10.6.0.1")
    assert (response.headers["X-RateLimit-Limit"], response.headers["X-RateLimit-Remaining"]) == ("5", "0")


def test_a_spoofed_x_forwarded_for_never_moves_the_ip_key(limits_app):
    client = limits_app(LIMIT_GLOBAL_IP="2/60").test_client()
    for n in range(2):
        assert client.get("/api/v1/models", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code == 200
    response = client.get("/api/v1/models", headers={"X-Forwarded-For": "203.0.113.77"})
    assert_429(response, "rate_limited", "global_ip")


def test_behind_one_trusted_proxy_the_proxys_entry_is_the_client(limits_app):
    client = limits_app(LIMIT_GLOBAL_IP="2/60", TRUSTED_PROXY_COUNT="1").test_client()

    def get(forwarded: str):
        return client.get("/api/v1/models", headers={"X-Forwarded-For": forwarded})

    # The client may prepend anything; our proxy appends the address it saw, which is the key.
    assert get("1.1.1.1, 198.51.100.7").status_code == 200
    assert get("2.2.2.2, 198.51.100.7").status_code == 200
    assert_429(get("3.3.3.3, 198.51.100.7"), "rate_limited", "global_ip")
    assert get("198.51.100.7, 198.51.100.8").status_code == 200


def test_stream_limits_use_the_same_client_ip(limits_app):
    app = limits_app(LIMIT_STREAM_IP="1/30", TRUSTED_PROXY_COUNT="1")
    client = app.test_client()

    def stream(forwarded: str):
        response = client.post(
            "/api/v1/stream",
            json={"message": "hi", "model": "local-smollm2"},
            headers={**auth(anon_token(app)), "X-Forwarded-For": forwarded},
            buffered=False,
        )
        response.close()
        return response

    assert stream("9.9.9.9, 198.51.100.20").status_code == 200
    assert_429(stream("8.8.8.8, 198.51.100.20"), "rate_limited", "stream_ip")
    assert stream("198.51.100.21").status_code == 200


def test_redis_down_is_503_with_retry_after_never_500_or_open(limits_app):
    from tests.support import free_port

    app = limits_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    client = app.test_client()
    for method, path in (("GET", "/api/v1/models"), ("POST", "/api/v1/anon_session"), ("GET", "/no/such")):
        response = client.open(path, method=method)
        assert response.status_code == 503, (path, response.status_code)
        error = response.get_json()["error"]
        assert error["code"] == "dependency_unavailable" and error["details"]["dependency"] == "redis"
        assert int(response.headers["Retry-After"]) >= 1
    assert client.get("/health").status_code == 200
