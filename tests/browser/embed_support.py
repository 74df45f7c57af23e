"""What the embed tests share: a Relay of their own, host pages on other origins, the frame.

Relay runs at http://127.0.0.1:<port> (gunicorn + a gevent Celery worker + the fake
OpenAI server, slowed to 15 ms a chunk so a reply can be interrupted). The host pages
come from a second local server, reached by two names: http://localhost:<port> is in
ALLOWED_ORIGINS, http://127.0.0.1:<port> is another origin that is not.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tests.browser.conftest import expect
from tests.conftest import Stack, stack_env
from tests.support import fake_server

HOST_STORE_KEY = "relay.embed.store"  # embed.js keeps the widget's copy there
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
CHUNK_MS = 15  # the fake provider's delay between chunks (3 characters each for echo:)


def host_page(relay: str, **data: str) -> str:
    """A host page with a strict CSP of its own and the one-line embed."""
    attributes = "".join(f' data-{name}="{value}"' for name, value in data.items())
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Example shop</title><link rel="stylesheet" href="/host.css"></head>
<body>
<header><a href="#main">Example shop</a></header>
<main id="main"><h1>Example shop</h1>
<p>Plain pages about plants, cups and lamps. Questions? The chat in the corner answers.</p>
<p><a href="#faq">Frequently asked questions</a></p></main>
<script src="{relay}/static/magic/embed.js" async{attributes}></script>
</body></html>"""


FAVICON = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"/>'
HOST_CSS = b"""
body { margin: 0; font: 17px/1.5 Georgia, serif; background: #fbf7f0; color: #2b2118; }
header { background: #6b3e26; padding: .75rem 1rem; } header a { color: #fff; font-weight: bold; }
main { max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
/* Hostile to widgets: none of this may reach the launcher or the chat. */
button { display: none; } iframe { opacity: .1; } div { font-size: 40px; color: red; }
"""


@dataclass
class Hosts:
    """The host-page server: `allowed` and `other` are the same server under two origins."""

    allowed: str
    other: str
    pages: dict[str, bytes]


def start_host_server(pages: dict[str, bytes], relay: str) -> tuple[ThreadingHTTPServer, Hosts]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - quiet
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            body = pages.get(path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            kind = {".css": "text/css", ".ico": "image/svg+xml"}.get(
                path[path.rfind(".") :], "text/html; charset=utf-8"
            )
            self.send_header("Content-Type", kind)
            # The host's own strict policy: only Relay's script, stylesheet and frame besides its own files.
            csp = f"default-src 'self'; script-src {relay}; style-src 'self' {relay}; frame-src {relay} 'self' http://127.0.0.1:*"
            self.send_header("Content-Security-Policy", csp)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, name="host-pages", daemon=True).start()
    return server, Hosts(f"http://localhost:{port}", f"http://127.0.0.1:{port}", pages)


@contextlib.contextmanager
def running_relay(tmp_path_factory, base_env: dict[str, str], host_origin: str, port: int) -> Iterator[Stack]:
    """A Relay for the embed tests: its own SQLite file, Redis key prefix and slowed fake provider."""
    log_dir = tmp_path_factory.mktemp("embed-relay")
    with fake_server("openai", log_dir, first_token_ms=5, token_ms=CHUNK_MS) as provider:
        env = stack_env(
            base_env,
            f"{provider}/v1",
            log_dir,
            ALLOWED_ORIGINS=host_origin,
            DEFAULT_MODEL="gpt-4o-mini",
            REDIS_KEY_PREFIX=f"{base_env['REDIS_KEY_PREFIX']}embed:",
            PORT=str(port),
        )
        relay = Stack(env, log_dir)
        try:
            relay.start_web(port=int(env["PORT"]))
            relay.start_worker("embed-worker", "gevent", "generate", 50)
            yield relay
        finally:
            relay.stop()


def widget_frame(page):
    """The chat's frame inside the host page (the launcher must have been opened)."""
    locator = page.frame_locator("iframe[title$='(chat)']")
    expect(locator.locator("#status")).to_have_text(re.compile(r"^(Ready|Signed|New)"))
    return locator


def frame_object(page):
    """The Playwright Frame of the widget (for evaluate)."""
    return next(f for f in page.frames if "/widget" in f.url)


def anon_token(page) -> str:
    """The widget's anonymous token, from the copy the host page keeps (the frame may not store)."""
    return JWT.search(page.evaluate(f"sessionStorage.getItem('{HOST_STORE_KEY}')") or "").group(0)


def api(relay: Stack, token: str, path: str) -> requests.Response:
    return requests.get(f"{relay.base_url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def send(frame, text: str) -> None:
    """Fill the message box and press Enter, as a reader would; waits for the reply to end."""
    count = frame.locator(".msg.assistant").count()
    box = frame.get_by_label("Message")
    box.fill(text)
    box.press("Enter")
    expect(frame.locator(".msg.assistant").nth(count).locator(".meta")).to_contain_text("(stop)")
