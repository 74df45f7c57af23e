"""A fake OpenAI-style chat completions server for tests and benchmarks.

It stands in for the outside world only; Relay talks to it with the real
openai SDK. Run: `python -m tests.fakes.openai_server --port 8081`.

Replies are deterministic. The last user message steers the reply:
  "echo:<text>"     the reply is <text>, streamed in 3-character pieces
  "#fail=<status>"  answer that HTTP status with an OpenAI-style error body
  "#cut=<n>"        drop the connection after n chunks
  "#ttft=<ms>"      wait that long before the first chunk
  "#hold=<n>"       hold the first token until n such streams are in flight
  "#fail_once=<status>"  like #fail, but only the first time this exact message
                   is seen (put a unique token in it); later attempts succeed
  "#truncate=<n>"  end the body cleanly after n chunks, with no finish_reason,
                   usage or [DONE] (a stream that stops short without an error)
  "#sse_error=<n>" after n chunks send a `data: {"error": ...}` event and end
  "#ignore_max_tokens=1"  stream the whole reply whatever max_tokens says
                   (a server that overruns it; Relay's own guard must stop it)
  "#no_usage=1"    never send usage, even when stream_options asks for it
  "#chunks=<n>"    the reply is n words (the default reply's, over and over), one a chunk
  "#gap=<ms>"      wait that long between chunks (instead of the server-wide delay; 0: none)
  "#linger=<ms>"   keep the body open that long after [DONE] before ending it
  "#bad_chars=1"   the reply holds NUL and a lone surrogate (JSON escapes \\u0000, \\ud800)
  "#echo_request"  the reply is the JSON of what the request's messages and sampling
                   options were (messages, temperature, top_p, stop), in 3-character pieces
  A request with `response_format` (structured outputs) gets one chat.completion, not a stream:
  "plan:<json>"    its content is <json> verbatim (a scripted answer, conforming or not);
                   otherwise a plan built from the schema (its first action, an empty payload).
                   A json_schema marked strict must be one OpenAI accepts (every object closed,
                   every property required), else 400. GET /structured lists the recent requests.
otherwise the reply is REPLY, one word a chunk. Server-wide timing comes from
the command line (first-token delay, delay between chunks). GET /stats
reports requests served and the most streams in flight at once.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

from tests.fakes._common import Stats, serve, split_reply  # noqa: E402
from tests.fakes._common import directives as parse_directives  # noqa: E402
from tests.fakes.strict_schema import strict_schema_problem  # noqa: E402

REPLY = "Hello! This is the fake provider speaking, one word at a time."
HOLD_TIMEOUT_S = 30.0


def _chunk(model: str, delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


class Barrier:
    """`#hold=<n>`: hold every first token until n such streams are in flight at once
    (or HOLD_TIMEOUT_S passed, counted in /stats): proof of concurrency, not a timing."""

    def __init__(self) -> None:
        self.waiting = 0
        self.released = gevent.event.Event()

    def wait(self, count: int, stats: Stats) -> None:
        self.waiting += 1
        if self.waiting >= count:
            self.released.set()
        if not self.released.wait(HOLD_TIMEOUT_S):
            stats.hold_timeouts += 1
        self.waiting -= 1
        if self.waiting == 0:
            self.released = gevent.event.Event()


class FakeOpenAI:
    def __init__(self, first_token_ms: float, token_ms: float) -> None:
        self.first_token_s = first_token_ms / 1000
        self.token_s = token_ms / 1000
        self.stats = Stats()
        self.barrier = Barrier()
        self.attempts: Counter[str] = Counter()  # per distinct #fail_once message
        self.structured_requests: list[dict] = []  # the most recent STRUCTURED_KEEP bodies with response_format

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/stats":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(vars(self.stats)).encode()]
        if path == "/structured":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(self.structured_requests).encode()]
        if path.rstrip("/").endswith("/chat/completions") and environ["REQUEST_METHOD"] == "POST":
            body = json.loads(environ["wsgi.input"].read() or b"{}")
            return self.chat(body, start_response)
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": {"message": "not found"}}']

    def chat(self, body: dict, start_response):
        messages = body.get("messages", [])
        last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        directives = parse_directives(last)
        if "fail" in directives:
            status = directives["fail"]
            start_response(f"{status} Fake Failure", [("Content-Type", "application/json")])
            return [json.dumps({"error": {"message": "fake failure", "type": "server_error"}}).encode()]
        if "fail_once" in directives:
            self.attempts[last] += 1
            if self.attempts[last] == 1:
                status = directives["fail_once"]
                start_response(f"{status} Fake Failure", [("Content-Type", "application/json")])
                return [json.dumps({"error": {"message": "fake failure (once)", "type": "server_error"}}).encode()]
        if body.get("response_format") is not None:
            return self.structured(body, last, directives, start_response)
        if "#echo_request" in last:
            received = {name: body.get(name) for name in ("messages", "temperature", "top_p", "stop")}
            text = json.dumps(received, ensure_ascii=False)
            pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
        else:
            pieces = split_reply(last, REPLY)
        max_tokens = len(pieces) if directives.get("ignore_max_tokens") else body.get("max_tokens") or len(pieces)
        finish = "length" if max_tokens < len(pieces) else "stop"
        pieces = pieces[:max_tokens]
        model = body.get("model", "fake")
        prompt_tokens = sum(len(m.get("content", "")) for m in messages) // 4 + 1
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        return self._events(model, pieces, finish, prompt_tokens, directives, body)

    def _events(self, model, pieces, finish, prompt_tokens, directives, body):
        self.stats.enter()
        try:
            if "hold" in directives:
                self.barrier.wait(directives["hold"], self.stats)
            gevent.sleep(directives.get("ttft", self.first_token_s * 1000) / 1000)
            for index, piece in enumerate(pieces):
                if "cut" in directives and index >= directives["cut"]:
                    raise ConnectionAbortedError("fake cut")  # pywsgi closes the socket mid-body
                if "truncate" in directives and index >= directives["truncate"]:
                    return  # a clean end of the body, without finish_reason or [DONE]
                if "sse_error" in directives and index >= directives["sse_error"]:
                    yield f"data: {json.dumps({'error': {'message': 'fake overload', 'type': 'server_error'}})}\n\n".encode()
                    return
                if index:
                    gevent.sleep(directives["gap"] / 1000 if "gap" in directives else self.token_s)
                yield _chunk(model, {"role": "assistant", "content": piece} if index == 0 else {"content": piece})
            yield _chunk(model, {}, finish)
            if (body.get("stream_options") or {}).get("include_usage") and not directives.get("no_usage"):
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces), "total_tokens": 0}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                yield _chunk(model, {}, usage=usage)
            yield b"data: [DONE]\n\n"
            if "linger" in directives:  # [DONE] is on the wire (pywsgi wrote it); the body stays open
                gevent.sleep(directives["linger"] / 1000)
        finally:
            self.stats.leave()

    def structured(self, body: dict, last: str, directives: dict, start_response):
        """Structured outputs: check the schema as OpenAI does, answer one chat.completion."""
        self.structured_requests = [*self.structured_requests[-(STRUCTURED_KEEP - 1) :], body]
        response_format = body["response_format"]
        spec = response_format.get("json_schema") or {}
        problem = None
        if response_format.get("type") != "json_schema" or not isinstance(spec.get("schema"), dict):
            problem = "response_format must be json_schema with a schema"
        elif spec.get("strict"):
            problem = strict_schema_problem(spec["schema"])
        if problem:
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            error = {"message": f"Invalid schema for response_format: {problem}", "type": "invalid_request_error"}
            return [json.dumps({"error": error}).encode()]
        gevent.sleep(directives.get("ttft", self.first_token_s * 1000) / 1000)
        content = last[last.index("plan:") + 5 :] if "plan:" in last else json.dumps(default_answer(spec["schema"]))
        prompt_tokens = sum(len(m.get("content", "")) for m in body.get("messages", [])) // 4 + 1
        completion_tokens = len(content) // 4 + 1
        answer = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }  # fmt: skip
        self.stats.requests += 1
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(answer).encode()]


STRUCTURED_KEEP = 50


def default_answer(schema: dict):
    """The smallest answer of a schema: an object's required properties, an array's first item, an enum's first value."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: default_answer(schema["properties"][name]) for name in schema.get("required", [])}
    if kind == "array":
        return [default_answer(schema["items"])] if isinstance(schema.get("items"), dict) else []
    if kind == "string":
        return "{}"  # a string payload holds a JSON object
    return None


def main() -> None:
    serve(__doc__.splitlines()[0], 8081, FakeOpenAI)


if __name__ == "__main__":
    main()
