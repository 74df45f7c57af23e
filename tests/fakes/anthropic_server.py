"""A fake Anthropic Messages API (streaming) server for tests and benchmarks.

It stands in for the outside world only; Relay talks to it with the real
anthropic SDK. Run: `python -m tests.fakes.anthropic_server --port 8082`.

It speaks the real wire format of `POST /v1/messages` with `"stream": true`:
`message_start`, `content_block_start`, `ping`, `content_block_delta`
(`text_delta`), `content_block_stop`, `message_delta` (stop_reason and
usage.output_tokens), `message_stop`; errors are
`{"type": "error", "error": {"type": ..., "message": ...}}` with the matching
HTTP status. Requests without an API key (`x-api-key`, or `Authorization: Bearer`,
which is what anthropic SDK 2.x sends) or an `anthropic-version` header get 401, and
requests the real API would refuse (a `system` role inside `messages`, empty
content, a first message that is not the user's, no max_tokens) get 400.

Replies are deterministic. The last user message steers the reply:
  "echo:<text>"           the reply is <text>, streamed in 3-character pieces
  "#fail=<status>"        answer that HTTP status with an Anthropic-style error body
  "#fail_once=<status>"   the same, but only the first time this exact message is
                          seen (put a unique token in it); later attempts succeed
  "#cut=<n>"              drop the connection after n text deltas
  "#truncate=<n>"         end the body cleanly after n text deltas, with no
                          message_delta or message_stop
  "#sse_error=<n>"        after n text deltas send an `error` event
                          (overloaded_error) and end the body, as the real API can
  "#ttft=<ms>"            wait that long (after message_start) before the first delta
  "#echo_request"         the reply is the JSON of {"system", "messages"} as received
  "#ignore_max_tokens=1"  stream the whole reply whatever max_tokens says
  "#bad_chars=1"          the reply holds NUL and a lone surrogate (JSON escapes \\u0000, \\ud800)
otherwise the reply is REPLY, one word a delta. Usage: input_tokens is the
characters of the system prompt and messages // 4 + 1, output_tokens the number
of deltas. GET /stats reports requests served and the most streams in flight at
once.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import secrets  # noqa: E402
from collections import Counter  # noqa: E402

import gevent  # noqa: E402

from tests.fakes._common import Stats, serve, split_reply  # noqa: E402
from tests.fakes._common import directives as parse_directives  # noqa: E402

REPLY = "Hello! This is the fake Anthropic provider speaking, one word at a time."
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
REASONS = {400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests", 500: "Internal Server Error"}


def _text(content) -> str:
    """A message's text: a string, or the text of its content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return ""


def _credential(environ) -> str:
    """The API key: `x-api-key`, or `Authorization: Bearer` (what anthropic SDK 2.x sends)."""
    scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    return environ.get("HTTP_X_API_KEY", "").strip() or (token.strip() if scheme.lower() == "bearer" else "")


def _event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _error_body(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


class FakeAnthropic:
    def __init__(self, first_token_ms: float, token_ms: float) -> None:
        self.first_token_s = first_token_ms / 1000
        self.token_s = token_ms / 1000
        self.stats = Stats()
        self.attempts: Counter[str] = Counter()  # per distinct #fail_once message

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/stats":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(vars(self.stats)).encode()]
        if path.rstrip("/") == "/v1/messages" and environ["REQUEST_METHOD"] == "POST":
            if not _credential(environ):
                return self.error(start_response, 401, "x-api-key header is required")
            if not environ.get("HTTP_ANTHROPIC_VERSION"):
                return self.error(start_response, 401, "anthropic-version header is required")
            try:
                body = json.loads(environ["wsgi.input"].read() or b"{}")
            except ValueError:
                return self.error(start_response, 400, "request body is not valid JSON")
            return self.messages(body, start_response)
        return self.error(start_response, 404, "not found")

    def error(self, start_response, status: int, message: str):
        self.stats.failures += 1
        reason = REASONS.get(status, "Fake Failure")
        start_response(
            f"{status} {reason}",
            [("Content-Type", "application/json"), ("request-id", "req_fake_" + secrets.token_hex(6))],
        )
        return [_error_body(ERROR_TYPES.get(status, "api_error"), message)]

    def _invalid(self, body: dict) -> str | None:
        """Why the real API would refuse this request, if it would."""
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "model: field required"
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            return "max_tokens: field required"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        for index, message in enumerate(messages):
            if message.get("role") not in ("user", "assistant"):
                return f"messages.{index}.role: Input should be 'user' or 'assistant'"
            if not _text(message.get("content")).strip():
                return f"messages.{index}: text content blocks must contain non-whitespace text"
        if messages[0]["role"] != "user":
            return "messages: first message must use the 'user' role"
        if "system" in body and not isinstance(body["system"], (str, list)):
            return "system: Input should be a valid string or list of text blocks"
        if body.get("stream") is not True:
            return "this fake only streams; set stream: true"
        return None

    def messages(self, body: dict, start_response):
        problem = self._invalid(body)
        if problem:
            return self.error(start_response, 400, problem)
        messages = body["messages"]
        last = next((_text(m["content"]) for m in reversed(messages) if m["role"] == "user"), "")
        directives = parse_directives(last)
        if "fail" in directives:
            return self.error(start_response, directives["fail"], "fake failure")
        if "fail_once" in directives:
            self.attempts[last] += 1
            if self.attempts[last] == 1:
                return self.error(start_response, directives["fail_once"], "fake failure (once)")
        system = body.get("system")
        if "#echo_request" in last:
            received = {"system": system, "messages": messages}
            text = json.dumps(received, ensure_ascii=False)
            pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
        else:
            pieces = split_reply(last, REPLY)
        max_tokens = len(pieces) if directives.get("ignore_max_tokens") else body["max_tokens"]
        stop_reason = "max_tokens" if max_tokens < len(pieces) else "end_turn"
        pieces = pieces[:max_tokens]
        input_tokens = (len(_text(system)) + sum(len(_text(m["content"])) for m in messages)) // 4 + 1
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/event-stream; charset=utf-8"),
                ("Cache-Control", "no-cache"),
                ("request-id", "req_fake_" + secrets.token_hex(6)),
            ],
        )
        return self._events(body["model"], pieces, stop_reason, input_tokens, directives)

    def _events(self, model, pieces, stop_reason, input_tokens, directives):
        self.stats.enter()
        try:
            message = {
                "id": "msg_fake_" + secrets.token_hex(8),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            }
            yield _event("message_start", {"type": "message_start", "message": message})
            yield _event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            yield _event("ping", {"type": "ping"})
            gevent.sleep(directives.get("ttft", self.first_token_s * 1000) / 1000)
            for index, piece in enumerate(pieces):
                if "cut" in directives and index >= directives["cut"]:
                    raise ConnectionAbortedError("fake cut")  # pywsgi closes the socket mid-body
                if "truncate" in directives and index >= directives["truncate"]:
                    return  # a clean end of the body, without the closing events
                if "sse_error" in directives and index >= directives["sse_error"]:
                    yield _event("error", json.loads(_error_body("overloaded_error", "Overloaded")))
                    return
                if index:
                    gevent.sleep(self.token_s)
                yield _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                )
            yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
            yield _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": len(pieces)},
                },
            )
            yield _event("message_stop", {"type": "message_stop"})
        finally:
            self.stats.leave()


def main() -> None:
    serve(__doc__.splitlines()[0], 8082, FakeAnthropic)


if __name__ == "__main__":
    main()
