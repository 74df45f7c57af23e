"""The browser chat widget (static/magic/) in a real headless Chromium.

Self-contained: a stub HTTP server in a thread serves the real widget files from
static/magic/ and stub versions of the API endpoints the widget uses
(/api/v1/anon_session, /api/v1/models, /api/v1/stream, /api/v1/stream/<id>),
with the production CSP on every response:

    default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'

Playwright (the `playwright` package from PyPI) drives Debian's Chromium at
/usr/bin/chromium (apt package `chromium`); `playwright install` is never used.
A missing Chromium or Playwright FAILS these tests, it does not skip them.

What is checked, end to end in the browser:
- model output containing HTML is shown as text, exactly, and creates no element;
- a 429's Retry-After is counted down in the status line, and Send waits for it;
- the `done` details (finish reason, tokens, cost) are shown;
- no console error, page error, dialog or CSP violation happens;
- the anonymous token is sent as a Bearer header (never in a URL), kept in
  sessionStorage and reused, and replaced when expired or answered with 401;
- a dropped stream is resumed with GET /api/v1/stream/<id> + Last-Event-ID and a
  replayed (duplicate) event is ignored; the second message continues the conversation;
- Stop sends DELETE /api/v1/stream/<id>; stream errors and JSON errors are shown;
- the service worker caches the widget files and never an API response;
- the page does not scroll sideways at 360 px.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import RECORD_PROBLEMS, Widget

try:  # imported here for expect(); a missing package fails the `browser` fixture, not collection
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover
    expect = None

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "static" / "magic"
CSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'"
TOKEN_KEY = "relay.magic.anon_token"  # the widget's sessionStorage key

# The reply the stub streams: HTML that must never become markup, and a newline (a line break).
CONTENT = "<img src=x onerror=alert(1)>Hello\nworld"
MODELS = [
    {"id": "local-smollm2", "provider": "local", "default": False, "price_in_per_mtok": 0, "price_out_per_mtok": 0},
    {"id": "gpt-4o-mini", "provider": "openai", "default": True, "price_in_per_mtok": 0.15, "price_out_per_mtok": 0.6},
]
DEFAULT_MODEL = "gpt-4o-mini"
STREAM_FIELDS = {"message", "model", "conversation_id", "stream_id", "cost_cap_usd", "max_tokens"}
WIDGET_STREAM_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip


# -- the stub server ------------------------------------------------------------------
@dataclass
class Seen:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Stub:
    """State shared by the handler threads; tests read `requests` afterwards."""

    base_url: str = ""
    requests: list[Seen] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    cancelled: dict[str, threading.Event] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.tokens.clear()
            self.cancelled.clear()

    def seen(self, method: str, prefix: str) -> list[Seen]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    def cancel_event(self, stream_id: str) -> threading.Event:
        with self.lock:
            return self.cancelled.setdefault(stream_id, threading.Event())


def sse(event: str, data: dict, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def done(finish_reason: str = "stop", completion_tokens: int = 5) -> dict:
    return {
        "finish_reason": finish_reason,
        "usage": {"prompt_tokens": 12, "completion_tokens": completion_tokens},
        "cost_usd": 0.000042,
        "ttft_ms": 120,
        "duration_ms": 1500,
        "message_id": "msg-1",
    }


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.0, so an event-stream body simply ends when the handler returns."""

    protocol_version = "HTTP/1.0"
    server_version = "RelayStub/1"
    stub: Stub  # set on the subclass made by the fixture

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    # -- plumbing
    def _record(self) -> Seen:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with self.stub.lock:
            self.stub.requests.append(seen)
        return seen

    def _head(self, status: int, content_type: str | None, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (extra or {}).items():
            self.send_header(name, value)

    def _send(self, status: int, body: bytes = b"", content_type: str | None = None, **extra: str) -> None:
        self._head(status, content_type, {"Content-Length": str(len(body)), **extra})
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _json(self, status: int, payload: dict, **extra: str) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", **extra)

    def _error(self, status: int, code: str, message: str, **extra: str) -> None:
        self._json(status, {"error": {"code": code, "message": message, "details": {}, "request_id": "req-1"}}, **extra)

    def _principal(self, seen: Seen) -> str | None:
        """The token, or None after answering 401 (as the real API does)."""
        match = re.fullmatch(r"Bearer (\S+)", seen.headers.get("authorization", ""))
        if match and match.group(1) in self.stub.tokens:
            return match.group(1)
        self._error(
            401, "invalid_token", "Invalid token", **{"WWW-Authenticate": 'Bearer realm="relay", error="invalid_token"'}
        )
        return None

    def _start_sse(self, stream_id: str) -> None:
        self._head(
            200, "text/event-stream", {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Stream-Id": stream_id}
        )
        self.end_headers()

    def _write(self, data: bytes, piece: int = 7) -> None:
        """Small writes with pauses, so frames arrive split across reads."""
        for start in range(0, len(data), piece):
            self.wfile.write(data[start : start + piece])
            time.sleep(0.002)

    # -- routes
    def do_GET(self) -> None:  # noqa: N802
        seen = self._record()
        path = urlsplit(self.path).path
        if path == "/":
            self._send(302, Location="/static/magic/index.html")
        elif path.startswith("/static/magic/"):
            name = path.removeprefix("/static/magic/")
            file = STATIC / name
            if "/" in name or not file.is_file() or file.suffix not in CONTENT_TYPES:
                self._error(404, "not_found", "Not found")
            else:
                self._send(200, file.read_bytes(), CONTENT_TYPES[file.suffix], **{"Cache-Control": "no-cache"})
        elif path == "/api/v1/models":
            self._json(200, {"models": MODELS})
        elif m := re.fullmatch(r"/api/v1/stream/([A-Za-z0-9_-]{8,64})", path):
            if self._principal(seen):
                self._resume(m.group(1), seen.headers.get("last-event-id", "0"))
        else:
            self._error(404, "not_found", "Not found")

    def do_POST(self) -> None:  # noqa: N802
        seen = self._record()
        path = urlsplit(self.path).path
        if not seen.headers.get("content-type", "").startswith("application/json"):
            self._error(415, "unsupported_media_type", "Send JSON")
        elif path == "/api/v1/anon_session":
            if json.loads(seen.body or b"{}") != {}:
                self._error(422, "validation_error", "Unexpected body")
                return
            token = f"anon-{os.urandom(8).hex()}"
            with self.stub.lock:
                self.stub.tokens.add(token)
            expires_at = int(time.time()) + 3600
            self._json(200, {"token": token, "token_type": "Bearer", "expires_at": expires_at, "expires_in": 3600})
        elif path == "/api/v1/stream":
            if self._principal(seen):
                self._stream(seen.json())
        else:
            self._error(404, "not_found", "Not found")

    def do_DELETE(self) -> None:  # noqa: N802
        seen = self._record()
        m = re.fullmatch(r"/api/v1/stream/([A-Za-z0-9_-]{8,64})", urlsplit(self.path).path)
        if not m:
            self._error(404, "not_found", "Not found")
        elif self._principal(seen):
            self.stub.cancel_event(m.group(1)).set()
            self._json(202, {"stream_id": m.group(1), "status": "cancelling"})

    # -- the stream scenarios, chosen by the message text
    def _stream(self, body: dict) -> None:
        unknown = set(body) - STREAM_FIELDS
        if unknown or not isinstance(body.get("message"), str) or not body["message"].strip():
            self._error(422, "validation_error", f"Bad fields: {sorted(unknown)}")
            return
        if body.get("model") not in {m["id"] for m in MODELS}:
            self._error(422, "validation_error", "Unknown model")
            return
        if not WIDGET_STREAM_ID.match(body.get("stream_id", "")):
            self._error(422, "validation_error", "Bad stream_id")
            return
        message, stream_id = body["message"], body["stream_id"]
        if message == "busy":
            self._error(429, "rate_limited", "Slow down", **{"Retry-After": "2"})
            return
        opening = {"stream_id": stream_id, "conversation_id": "conv-1", "model": body["model"]}
        self._start_sse(stream_id)
        self._write(b"retry: 2000\n\n" + sse("stream", opening, 1))
        if message == "drop":  # the connection ends after the first chunk, without done
            self._write(sse("message_chunk", {"content": "Hel", "index": 0, "cost_usd": 0.00001}, 2))
        elif message == "stop":  # waits for DELETE /api/v1/stream/<id>, then ends as cancelled
            self._write(sse("message_chunk", {"content": "partial", "index": 0, "cost_usd": 0.00001}, 2))
            if self.stub.cancel_event(stream_id).wait(15):
                self._write(sse("done", done("cancelled", 1), 3))
        elif message == "fail":
            self._write(
                sse("error", {"error_code": "provider_error", "detail": "The model failed", "retry_after": None}, 2)
            )
        else:
            self._write(sse("heartbeat", {"ts": time.time()}))
            self._write(sse("message_chunk", {"content": CONTENT, "index": 0, "cost_usd": 0.00004}, 2))
            self._write(sse("done", done(), 3))

    def _resume(self, stream_id: str, last_event_id: str) -> None:
        """Replays from the last id the client has seen (included on purpose: a duplicate)."""
        self._start_sse(stream_id)
        events = [
            sse("message_chunk", {"content": "Hel", "index": 0, "cost_usd": 0.00001}, 2),
            sse("message_chunk", {"content": "lo", "index": 1, "cost_usd": 0.00002}, 3),
            sse("done", done(completion_tokens=2), 4),
        ]
        after = int(last_event_id) if last_event_id.isdigit() else 0
        self._write(b"retry: 2000\n\n" + b"".join(events[max(after - 2, 0) :]))


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    state = Stub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("BoundHandler", (Handler,), {"stub": state}))
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="widget-stub", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def widget(browser, stub) -> Iterator[Widget]:
    stub.reset()
    context = browser.new_context(viewport={"width": 360, "height": 640}, service_workers="allow")
    context.add_init_script(RECORD_PROBLEMS)
    try:
        yield Widget(context.new_page(), stub)
    finally:
        context.close()


def assert_no_token_in_urls(stub: Stub) -> None:
    for seen in stub.requests:
        for token in stub.tokens:
            assert token not in seen.path, f"a token travelled in a URL: {seen.method} {seen.path}"


# -- the tests --------------------------------------------------------------------------
def test_reply_is_rendered_as_text_with_done_details(widget: Widget, stub: Stub) -> None:
    """The main path: session, models, one streamed reply whose HTML stays text."""
    page = widget.page
    widget.open()

    # A token was minted with POST {} (JSON) and kept in sessionStorage.
    (mint,) = stub.seen("POST", "/api/v1/anon_session")
    assert mint.headers["content-type"].startswith("application/json")
    assert json.loads(mint.body) == {}
    (token,) = stub.tokens
    assert token in page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')")

    # The models are in a labelled select, the default one preselected.
    assert page.get_by_label("Model").input_value() == DEFAULT_MODEL
    assert page.locator("#model option").count() == len(MODELS)

    widget.send("Hi there")
    page.locator("#transcript .msg.assistant .meta").wait_for()
    widget.wait_idle()

    # The request: Bearer header, JSON body with the default model and a client stream id.
    (post,) = stub.seen("POST", "/api/v1/stream")
    assert post.headers["authorization"] == f"Bearer {token}"
    assert post.headers["content-type"].startswith("application/json")
    body = post.json()
    assert body["message"] == "Hi there"
    assert body["model"] == DEFAULT_MODEL
    assert WIDGET_STREAM_ID.match(body["stream_id"])
    assert "conversation_id" not in body

    # The reply is exactly the streamed text; its HTML created no element and ran nothing.
    assert widget.reply().locator(".reply").inner_text() == CONTENT
    assert page.locator("#transcript .msg.user .body").text_content() == "Hi there"
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.locator("#transcript *[onerror]").count() == 0

    meta = widget.reply().locator(".meta").text_content()
    assert "(stop)" in meta
    assert "12 prompt + 5 completion tokens" in meta
    assert "$0.000042" in meta
    assert widget.reply().locator(".who").text_content() == f"Assistant · {DEFAULT_MODEL}"
    assert page.get_attribute("#transcript", "aria-live") == "polite"

    # Fits a 360 px screen without sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    # The service worker caches the widget files and never an API answer.
    cached = page.evaluate(
        """async () => {
            await navigator.serviceWorker.ready;
            const urls = [];
            for (const name of await caches.keys()) {
                for (const request of await (await caches.open(name)).keys()) urls.push(request.url);
            }
            return urls;
        }"""
    )
    assert f"{stub.base_url}/static/magic/magic.js" in cached
    assert [url for url in cached if "/api/" in url] == []

    # A reload reuses the stored token instead of minting another.
    page.reload()
    widget.wait_ready()
    assert len(stub.seen("POST", "/api/v1/anon_session")) == 1

    assert_no_token_in_urls(stub)
    widget.assert_clean()

    # Control: the CSP really is enforced on this page and violations are noticed.
    page.evaluate(
        """() => {
            const s = document.createElement('script');
            s.textContent = 'window.__inlineRan = true';
            document.head.append(s);
        }"""
    )
    deadline = time.monotonic() + 5
    while not widget.csp_violations() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert widget.csp_violations(), "the inline script was not reported as a CSP violation"
    assert page.evaluate("window.__inlineRan === undefined")


def test_dropped_stream_resumes_and_conversation_continues(widget: Widget, stub: Stub) -> None:
    """A drop mid-reply: GET /stream/<id> with Last-Event-ID, the duplicate id ignored."""
    widget.open()
    widget.send("Hi there")
    widget.wait_idle()

    widget.send("drop")
    widget.reply().locator(".meta").wait_for()
    widget.wait_idle()

    first, second = stub.seen("POST", "/api/v1/stream")
    assert "conversation_id" not in first.json()
    assert second.json()["conversation_id"] == "conv-1"

    (resume,) = stub.seen("GET", "/api/v1/stream/")
    stream_id = second.json()["stream_id"]
    assert resume.path == f"/api/v1/stream/{stream_id}"
    assert resume.headers["last-event-id"] == "2"
    assert resume.headers["authorization"] == second.headers["authorization"]

    assert widget.reply().locator(".reply").text_content() == "Hello"  # not "HelHello"
    assert "2 completion tokens" in widget.reply().locator(".meta").text_content()
    assert_no_token_in_urls(stub)
    widget.assert_clean()


def test_stop_cancels_the_stream(widget: Widget, stub: Stub) -> None:
    widget.open()
    widget.send("stop")
    widget.reply().locator(".reply").get_by_text("partial").wait_for()

    stop = widget.page.get_by_role("button", name="Stop")
    stop.focus()
    widget.page.keyboard.press("Enter")
    widget.reply().locator(".meta").wait_for()
    widget.wait_idle()

    (post,) = stub.seen("POST", "/api/v1/stream")
    (delete,) = stub.seen("DELETE", "/api/v1/stream/")
    assert delete.path == f"/api/v1/stream/{post.json()['stream_id']}"
    assert delete.headers["authorization"] == post.headers["authorization"]
    assert "(cancelled)" in widget.reply().locator(".meta").text_content()
    widget.assert_clean()


def test_errors_are_shown(widget: Widget, stub: Stub) -> None:
    """A JSON error before the stream (429) and an `error` event inside it."""
    widget.open()
    widget.page.evaluate(
        """() => {
            window.__statuses = [];
            const status = document.getElementById('status');
            new MutationObserver(() => window.__statuses.push(status.textContent))
                .observe(status, {childList: true, characterData: true, subtree: true});
        }"""
    )
    widget.send("busy")
    widget.wait_idle()
    shown = widget.reply().locator(".error").text_content()
    assert "Slow down" in shown and "rate_limited" in shown and "2 s" in shown
    # The status line counts the wait down, and sending waits for it.
    expect(widget.page.locator("#status")).to_have_text("Ready. You can send again.")
    expect(widget.page.locator("#send")).to_be_enabled()
    statuses = widget.page.evaluate("window.__statuses")
    waits = [s for s in statuses if s.startswith("Too many requests")]
    assert waits == [f"Too many requests. You can send again in {n} s." for n in (2, 1)], statuses
    assert statuses[-1] == "Ready. You can send again."

    widget.send("fail")
    widget.wait_idle()
    shown = widget.reply().locator(".error").text_content()
    assert "The model failed" in shown and "provider_error" in shown
    assert widget.page.locator("#transcript .error[role=alert]").count() == 2
    # Chromium logs every non-2xx fetch answer; that one is expected here.
    widget.assert_clean(allowed_console=re.compile(r"status of 429"))


@pytest.mark.parametrize(
    ("stored", "expires_in_s"),
    [("expired-token", -10), ("revoked-token", 3600)],
    ids=["expired", "rejected-with-401"],
)
def test_stale_tokens_are_replaced(widget: Widget, stub: Stub, stored: str, expires_in_s: int) -> None:
    """An expired stored token is never sent; one the server rejects (401) is replaced and retried."""
    widget.page.add_init_script(
        f"""try {{
            if (!sessionStorage.getItem('seeded')) {{
                sessionStorage.setItem('seeded', '1');
                sessionStorage.setItem('{TOKEN_KEY}',
                    JSON.stringify({{token: '{stored}', expiresAtMs: Date.now() + {expires_in_s * 1000}}}));
            }}
        }} catch (e) {{}}"""
    )
    widget.open()
    widget.send("Hi there")
    widget.reply().locator(".meta").wait_for()

    sent = [r.headers["authorization"] for r in stub.seen("POST", "/api/v1/stream")]
    (token,) = stub.tokens
    if expires_in_s < 0:
        assert sent == [f"Bearer {token}"]
    else:
        assert sent == [f"Bearer {stored}", f"Bearer {token}"]
    assert widget.reply().locator(".reply").inner_text() == CONTENT
    assert token in widget.page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')")
    widget.assert_clean(allowed_console=re.compile(r"status of 401"))
