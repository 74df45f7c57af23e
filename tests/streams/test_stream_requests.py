"""Stream requests that must be refused whole, before anything is admitted or subscribed,
and subscriptions that never outlive their response."""

from __future__ import annotations

import secrets

import pytest
from werkzeug.test import EnvironBuilder

from app.limits import budget
from app.tokens import count_prompt_tokens

OPENAI = {"OPENAI_API_KEY": "sk-test-not-a-real-key", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}


def hub_channels(app) -> int:
    return app.extensions["relay.streams"].hub.channel_count()


def assert_422(response, field: str) -> None:
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and field in error["details"]["fields"], error


def start(client, headers, **body):
    response = client.post("/api/v1/stream", json={"message": "hi", **body}, headers=headers, buffered=False)
    response.close()
    return response


@pytest.mark.parametrize("stream_id", ["abcdefgh\n", "abcdefgh\r\n", "\nabcdefgh", "abcdefgh\x00"])
def test_a_stream_id_with_a_newline_is_422_and_costs_nothing(app, client, anon_headers, stream_id):
    channels = hub_channels(app)
    assert_422(start(client, anon_headers, stream_id=stream_id), "stream_id")
    assert_422(
        client.get("/api/v1/stream", query_string={"message": "hi", "stream_id": stream_id}, headers=anon_headers),
        "stream_id",
    )
    assert app.extensions["relay.streams"].journal.meta(stream_id) == {}
    assert hub_channels(app) == channels


def test_attach_and_cancel_match_the_whole_id(client, anon_headers):
    assert client.get("/api/v1/stream/abcdefgh%0A", headers=anon_headers).status_code == 404
    assert client.delete("/api/v1/stream/abcdefgh%0A", headers=anon_headers).status_code == 404


def test_a_response_closed_before_streaming_releases_its_subscription(app, anon_headers):
    """The server closes the body without iterating it (the client left before the first byte)."""
    channels = hub_channels(app)
    body = {"message": "hi", "model": "local-smollm2"}
    statuses: list[str] = []
    for _ in range(3):
        environ = EnvironBuilder(path="/api/v1/stream", method="POST", json=body, headers=anon_headers).get_environ()
        app_iter = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
        assert statuses[-1] == "200 OK" and hub_channels(app) == channels + 1
        app_iter.close()  # never iterated
    assert hub_channels(app) == channels


def test_a_failure_after_subscribing_releases_the_subscription(app, anon_headers):
    """The body is built but never returned (the view fails after subscribing)."""
    from app.streams import service

    runtime = app.extensions["relay.streams"]
    channels = runtime.hub.channel_count()
    with app.test_request_context():
        events = service.open_events(runtime, "never-iterated-01", 0)
        assert runtime.hub.channel_count() == channels + 1
        del events  # dropped, as when building the response raises
    assert runtime.hub.channel_count() == channels


@pytest.mark.parametrize("raw", ["²", "٣", "１", "۱۲", "1²", " 1", "+1", "1_0", "0x1"])
def test_last_event_id_takes_ascii_digits_only(app, client, anon_headers, raw):
    response = client.post(
        "/api/v1/stream", json={"message": "hi", "model": "local-smollm2"}, headers=anon_headers, buffered=False
    )
    stream_id = response.headers["X-Stream-Id"]
    response.close()
    header = client.get(
        f"/api/v1/stream/{stream_id}", headers={**anon_headers, "Last-Event-ID": raw.encode().decode("latin-1")}
    )
    assert_422(header, "Last-Event-ID")
    query = client.get(f"/api/v1/stream/{stream_id}", query_string={"last_event_id": raw}, headers=anon_headers)
    assert_422(query, "last_event_id")


def test_last_event_id_past_a_live_streams_last_event_is_422(client, anon_headers):
    response = client.post(
        "/api/v1/stream", json={"message": "hi", "model": "local-smollm2"}, headers=anon_headers, buffered=False
    )
    stream_id = response.headers["X-Stream-Id"]
    response.close()
    past = client.get(f"/api/v1/stream/{stream_id}", headers={**anon_headers, "Last-Event-ID": "2"})
    assert_422(past, "Last-Event-ID")
    at_end = client.get(f"/api/v1/stream/{stream_id}", headers={**anon_headers, "Last-Event-ID": "1"}, buffered=False)
    assert at_end.status_code == 200  # at its last event so far: waits for the next
    at_end.close()


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f"])
def test_a_message_with_control_characters_is_422(client, anon_headers, char):
    assert_422(start(client, anon_headers, message=f"hello{char}world"), "message")


def test_tab_newline_and_return_are_fine_in_a_message(client, anon_headers):
    assert start(client, anon_headers, model="local-smollm2", message="a\tb\nc\r\nd").status_code == 200


@pytest.fixture
def priced_app(make_app, key_prefix):
    """OpenAI models configured, on a key prefix of its own (budget counters start at zero)."""
    return make_app(**OPENAI, REDIS_KEY_PREFIX=f"{key_prefix}priced-{secrets.token_hex(3)}:")


@pytest.mark.parametrize("cap", [1e-13, 1e-7])
def test_a_cost_cap_below_the_prompts_own_cost_is_422_and_reserves_nothing(priced_app, cap):
    client = priced_app.test_client()
    token = client.post("/api/v1/anon_session").get_json()["token"]
    response = start(client, {"Authorization": f"Bearer {token}"}, model="gpt-4o-mini", cost_cap_usd=cap)
    assert_422(response, "cost_cap_usd")
    with priced_app.app_context():
        assert budget.spent_today_usd("global") == 0
        assert budget.spent_today_usd("anon") == 0


def test_the_reservation_covers_at_least_the_prompt(priced_app):
    spec = priced_app.extensions["relay.streams"].catalog.get("gpt-4o")
    messages = [{"role": "user", "content": "x" * 8000}]
    prompt_usd = spec.cost(count_prompt_tokens(spec, messages), 0)
    assert budget.reservation_usd(spec, messages, 2000, 1e-13) >= prompt_usd
    assert budget.reservation_usd(spec, messages, 2000, 5.0) == pytest.approx(
        spec.cost(count_prompt_tokens(spec, messages), 2000)
    )


@pytest.mark.parametrize("field, raw", [("max_tokens", "٣"), ("max_tokens", "1_0"), ("max_tokens", " 5"),
                                        ("max_tokens", "３"), ("cost_cap_usd", " 1e-1"), ("cost_cap_usd", "0.1\n")])  # fmt: skip
def test_query_numbers_take_ascii_only(client, anon_headers, field, raw):
    response = client.get("/api/v1/stream", query_string={"message": "hi", field: raw}, headers=anon_headers)
    assert_422(response, field)


def test_max_tokens_may_be_a_json_integer_written_as_a_float(client, anon_headers):
    """JSON Schema's `integer` holds 5.0; 5.5, "5" and true do not."""
    for bad in (5.5, "5", True):
        assert_422(start(client, anon_headers, max_tokens=bad, model="local-smollm2"), "max_tokens")
    response = start(client, anon_headers, max_tokens=5.0, model="local-smollm2")
    assert response.status_code == 200, response.get_data(as_text=True)
