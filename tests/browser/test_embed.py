"""The one-line embed (static/magic/embed.js) on host pages of other origins, against a real Relay.

See embed_support.py for the servers: Relay at http://127.0.0.1:<port>, host pages at
http://localhost:<port> (in ALLOWED_ORIGINS) and http://127.0.0.1:<port> (not).
"""

from __future__ import annotations

import os
import re
import secrets

import pytest

from tests.browser.conftest import RECORD_PROBLEMS, expect
from tests.browser.embed_support import (
    FAVICON,
    HOST_CSS,
    anon_token,
    api,
    frame_object,
    host_page,
    running_relay,
    send,
    start_host_server,
    widget_frame,
)
from tests.support import ROOT, free_port

pytestmark = pytest.mark.slow
SIBLING = b"<!doctype html><html lang='en'><head><title>Other</title></head><body><p>Another window</p></body></html>"


@pytest.fixture(scope="module")
def hosts_and_relay(tmp_path_factory, base_env):
    relay_url = f"http://127.0.0.1:{free_port()}"
    pages = {
        "/": host_page(relay_url, title="Ask Relay", model="gpt-4o-mini").encode(),
        "/open.html": host_page(relay_url, title="Ask Relay", open="true", position="left").encode(),
        "/host.css": HOST_CSS,
        "/sibling.html": SIBLING,
        "/favicon.ico": FAVICON,
    }
    server, hosts = start_host_server(pages, relay_url)
    try:
        with running_relay(tmp_path_factory, base_env, hosts.allowed, int(relay_url.rsplit(":", 1)[1])) as relay:
            yield hosts, relay
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def page(browser, hosts_and_relay):
    context = browser.new_context(viewport={"width": 1024, "height": 760})
    context.add_init_script(RECORD_PROBLEMS)
    page = context.new_page()
    page.console_messages = []
    page.on("console", lambda m: page.console_messages.append(f"{m.type}: {m.text}"))
    page.on("dialog", lambda d: (page.console_messages.append(f"dialog: {d.message}"), d.dismiss()))
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


def open_chat(page, url: str):
    page.goto(url)
    page.get_by_role("button", name="Ask Relay").click()
    return widget_frame(page)


def test_host_page_on_an_allowed_origin_embeds_the_widget_and_chats(page, hosts_and_relay):
    hosts, relay = hosts_and_relay
    responses = []
    page.on("response", lambda r: "/widget" in r.url and responses.append(r))
    frame = open_chat(page, f"{hosts.allowed}/")
    (widget,) = responses
    policy = widget.headers["content-security-policy"]
    assert f"frame-ancestors {hosts.allowed}" in policy and "x-frame-options" not in widget.headers
    assert frame.get_by_label("Model").input_value() == "gpt-4o-mini"  # data-model

    send(frame, "echo:Hello from the host page")
    assert frame.locator(".msg.assistant .reply").last.text_content() == "Hello from the host page"
    token = anon_token(page)
    (conversation,) = api(relay, token, "/conversations").json()["conversations"]
    assert conversation["message_count"] == 2
    # The host page's hostile CSS (button {display:none}, div {color:red}) did not reach the launcher.
    expect(page.get_by_role("button", name="Ask Relay")).to_be_visible()
    assert page.evaluate("window.__cspViolations") == []
    assert frame_object(page).evaluate("window.__cspViolations") == []
    assert not [m for m in page.console_messages if m.startswith(("error", "dialog"))]


def console_mentions(page, pattern: str) -> bool:
    """Waits (up to 10 s) for a console message matching `pattern`, e.g. Chromium's frame refusal."""
    for _ in range(100):
        if any(re.search(pattern, m) for m in page.console_messages):
            return True
        page.wait_for_timeout(100)
    return False


def test_a_host_page_on_another_origin_cannot_frame_it(page, hosts_and_relay):
    hosts, relay = hosts_and_relay
    page.goto(f"{hosts.other}/")
    page.get_by_role("button", name="Ask Relay").click()
    expect(page.locator(".relay-embed iframe")).to_be_attached()
    # Chromium words it "Refused to frame '<url>' because ..." or "Framing '<url>' violates ..."
    assert console_mentions(page, rf"'{re.escape(relay.base_url)}/'.*frame-ancestors {hosts.allowed}"), (
        page.console_messages
    )
    expect(page.frame_locator(".relay-embed iframe").locator("#status")).to_have_count(0)  # nothing of it loaded

    # On the allowed origin, the widget's plain files refuse frames too: only /widget may be framed.
    page.goto(f"{hosts.allowed}/sibling.html")
    page.console_messages.clear()
    page.evaluate(
        "(src) => { const f = document.createElement('iframe'); f.src = src; document.body.append(f); }",
        f"{relay.base_url}/static/magic/index.html",
    )
    assert console_mentions(page, r"frame-ancestors 'none'|X-Frame-Options"), page.console_messages


def test_post_message_signs_the_user_in_only_from_the_framing_host(page, hosts_and_relay, user_token):
    hosts, relay = hosts_and_relay
    jwt = user_token(f"embed-user-{secrets.token_hex(4)}", "embed@example.com")
    message = {"type": "relay:auth", "token": jwt}
    frame = open_chat(page, f"{hosts.allowed}/")

    # The same message from a window of another origin (a frame inside the host page, reaching
    # the widget through parent.frames) and from another window of the host's own origin (a popup).
    page.evaluate("""(src) => new Promise((done) => {
        const f = document.createElement('iframe'); f.src = src; f.onload = done; document.body.append(f); })""",
        f"{hosts.other}/sibling.html")  # fmt: skip
    sibling = next(f for f in page.frames if f.url == f"{hosts.other}/sibling.html")
    sibling.evaluate(
        "(m) => { for (let i = 0; i < parent.frames.length; i++) parent.frames[i].postMessage(m, '*'); }", message
    )
    with page.expect_popup() as popup_info:
        page.evaluate("(url) => window.open(url)", f"{hosts.allowed}/sibling.html")
    popup = popup_info.value
    popup.wait_for_load_state()
    popup.evaluate(
        "(m) => { const w = window.opener; for (let i = 0; i < w.frames.length; i++) w.frames[i].postMessage(m, '*'); }",
        message,
    )
    popup.close()
    send(frame, "echo:still a guest")
    expect(frame.locator("#who")).to_have_text("Guest")
    assert api(relay, jwt, "/conversations").json()["count"] == 0
    assert api(relay, anon_token(page), "/conversations").json()["count"] == 1

    # From the framing host page itself: signed in, and the next conversation is the user's.
    page.evaluate("(m) => window.RelayWidget.signIn(m.token)", message)
    expect(frame.locator("#who")).to_have_text("Signed in")
    send(frame, "echo:now signed in")
    (conversation,) = api(relay, jwt, "/conversations").json()["conversations"]
    messages = api(relay, jwt, f"/conversations/{conversation['id']}").json()["messages"]
    assert [m["content"] for m in messages] == ["echo:now signed in", "now signed in"]
    assert jwt not in (page.evaluate("JSON.stringify(sessionStorage)") or "")  # memory only
    assert not [m for m in page.console_messages if m.startswith(("error", "dialog"))]


LONG = " ".join(f"word{n:03d}" for n in range(90))  # 90 x 8 characters: about 240 chunks, 3.6 s


def test_reload_mid_reply_resumes_and_matches_the_stored_message(page, hosts_and_relay):
    hosts, relay = hosts_and_relay
    frame = open_chat(page, f"{hosts.allowed}/")
    box = frame.get_by_label("Message")
    box.fill(f"echo:{LONG}")
    box.press("Enter")
    reply = frame.locator(".msg.assistant .reply").last
    expect(reply).to_contain_text("word010")
    partial = reply.text_content()
    assert len(partial) < len(LONG)

    resumed = []
    page.on("request", lambda r: re.search(r"/api/v1/stream/[\w-]+$", r.url) and resumed.append(r))
    page.reload()
    page.get_by_role("button", name="Ask Relay").click()
    frame = widget_frame(page)
    reply = frame.locator(".msg.assistant .reply").last
    expect(frame.locator(".msg.assistant .meta").last).to_contain_text("(stop)", timeout=30_000)
    assert reply.text_content() == LONG  # nothing repeated, nothing lost
    assert frame.locator(".msg.user").count() == 1
    (request,) = resumed
    assert request.method == "GET" and int(request.headers["last-event-id"]) >= 3

    token = anon_token(page)
    (conversation,) = api(relay, token, "/conversations").json()["conversations"]
    stored = api(relay, token, f"/conversations/{conversation['id']}").json()["messages"][-1]
    assert stored["role"] == "assistant" and stored["content"] == reply.text_content()


def test_conversations_list_open_continue_and_delete(page, hosts_and_relay):
    hosts, relay = hosts_and_relay
    frame = open_chat(page, f"{hosts.allowed}/")
    send(frame, "echo:first topic")
    frame.get_by_role("button", name="New chat").click()
    send(frame, "echo:second topic")

    page.reload()
    page.get_by_role("button", name="Ask Relay").click()
    frame = widget_frame(page)
    frame.get_by_role("button", name="Conversations").click()
    items = frame.locator("#history-list li")
    expect(items).to_have_count(2)
    assert items.nth(0).locator(".history-title").text_content() == "echo:second topic"  # newest first

    frame.get_by_role("button", name="Open “echo:first topic”").click()
    expect(frame.locator(".msg.assistant .reply")).to_have_text(["first topic"])
    send(frame, "echo:more on it")
    token = anon_token(page)
    listing = {c["title"]: c for c in api(relay, token, "/conversations").json()["conversations"]}
    assert listing["echo:first topic"]["message_count"] == 4
    assert listing["echo:second topic"]["message_count"] == 2

    # Deleting asks first; Cancel keeps it, Delete removes it.
    frame.get_by_role("button", name="Conversations").click()
    frame.get_by_role("button", name="Delete “echo:second topic”").click()
    expect(frame.get_by_text("Delete “echo:second topic”? This cannot be undone.")).to_be_visible()
    frame.get_by_role("button", name="Cancel").click()
    expect(items).to_have_count(2)
    frame.get_by_role("button", name="Delete “echo:second topic”").click()
    frame.get_by_role("group").get_by_role("button", name="Delete").click()
    expect(items).to_have_count(1)
    assert api(relay, token, f"/conversations/{listing['echo:second topic']['id']}").status_code == 404


MARKDOWN = """Here is code:

```python
print("<b>hi</b>")
```

- one
- **two**

1. first
2. second

A [bad link](javascript:window.__pwned=1) and a [good one](https://example.com/docs), `inline` and *em*.
<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>"""


def test_markdown_reply_is_rendered_safely(page, hosts_and_relay):
    hosts, _ = hosts_and_relay
    frame = open_chat(page, f"{hosts.allowed}/")
    send(frame, f"echo:{MARKDOWN}")
    reply = frame.locator(".msg.assistant .reply").last
    expect(reply.locator("pre code")).to_have_text('print("<b>hi</b>")')
    expect(reply.locator(".code-bar")).to_contain_text("python")
    expect(reply.get_by_role("button", name="Copy python block")).to_be_visible()
    expect(reply.locator("ul > li")).to_have_text(["one", "two"])
    expect(reply.locator("ul strong")).to_have_text("two")
    expect(reply.locator("ol > li")).to_have_text(["first", "second"])
    expect(reply.locator("code").filter(has_text="inline")).to_have_count(1)
    expect(reply.locator("em")).to_have_text("em")
    links = reply.locator("a")
    expect(links).to_have_count(1)
    assert links.get_attribute("href") == "https://example.com/docs"
    assert links.get_attribute("rel") == "noopener noreferrer" and links.get_attribute("target") == "_blank"
    assert "bad link" in reply.text_content() and "javascript:" not in reply.text_content()
    expect(reply).to_contain_text('<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>')
    widget = frame_object(page)
    assert widget.evaluate("document.querySelectorAll('.reply img, .reply script, .reply b').length") == 0
    assert widget.evaluate("window.__pwned === undefined && window.__cspViolations.length === 0")
    assert not [m for m in page.console_messages if m.startswith(("error", "dialog"))]


def test_the_whole_flow_works_from_the_keyboard(page, hosts_and_relay):
    hosts, _ = hosts_and_relay
    page.goto(f"{hosts.allowed}/")
    launcher = page.get_by_role("button", name="Ask Relay")
    expect(launcher).to_be_visible()
    for _ in range(10):
        page.keyboard.press("Tab")
        if launcher.evaluate("(b) => b.getRootNode().activeElement === b"):
            break
    else:
        pytest.fail("Tab never reached the launcher")
    page.keyboard.press("Enter")
    frame = widget_frame(page)
    expect(frame.get_by_label("Message")).to_be_focused()
    page.keyboard.type("echo:typed by keyboard")
    page.keyboard.press("Enter")
    expect(frame.locator(".msg.assistant .meta")).to_contain_text("(stop)")
    assert frame.locator(".msg.assistant .reply").text_content() == "typed by keyboard"
    expect(frame.get_by_label("Message")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator(".relay-embed iframe")).to_be_hidden()
    assert launcher.evaluate("(b) => b.getRootNode().activeElement === b")
    assert launcher.get_attribute("aria-expanded") == "false"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_violation_opened_or_closed(page, hosts_and_relay, scheme):
    from axe_playwright_python.sync_playwright import Axe

    hosts, _ = hosts_and_relay
    axe = Axe()  # axe-core bundled in the package: nothing is fetched
    page.emulate_media(color_scheme=scheme)
    page.goto(f"{hosts.allowed}/")
    expect(page.get_by_role("button", name="Ask Relay")).to_be_visible()
    found = {"closed": axe.run(page)}
    frame = open_chat(page, f"{hosts.allowed}/")
    send(frame, f"echo:{MARKDOWN}")
    frame.get_by_role("button", name="Conversations").click()
    expect(frame.locator("#history-list li")).to_have_count(1)
    found["open, host page"] = axe.run(page, options={"iframes": False})
    found["open, widget"] = axe.run(frame_object(page))
    assert found["open, widget"].response["testEngine"]["name"] == "axe-core"
    if scheme == "light":  # control: a real violation is reported
        page.evaluate(
            "() => { const i = document.createElement('img'); i.src = '/favicon.ico'; document.body.append(i); }"
        )
        assert "image-alt" in {v["id"] for v in axe.run(page, options={"iframes": False}).response["violations"]}
    for where, results in found.items():
        bad = [
            f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert bad == [], f"{scheme}, {where}: {bad}"


def test_screenshots(browser, hosts_and_relay, tmp_path):
    """The README's pictures; written to docs/screenshots/ with RELAY_WRITE_SCREENSHOTS=1, else to a temp dir."""
    hosts, relay = hosts_and_relay
    where = ROOT / "docs" / "screenshots" if os.environ.get("RELAY_WRITE_SCREENSHOTS") == "1" else tmp_path
    where.mkdir(parents=True, exist_ok=True)
    shots = []

    context = browser.new_context(viewport={"width": 480, "height": 720}, color_scheme="light")
    try:
        page = context.new_page()
        page.goto(f"{relay.base_url}/widget")
        expect(page.locator("#status")).to_have_text(re.compile("^Ready"))
        box = page.get_by_label("Message")
        box.fill(f"echo:{MARKDOWN.split('A [bad')[0]}And then some more words, {LONG}")
        box.press("Enter")
        expect(page.locator(".reply").last).to_contain_text("word005")
        assert page.locator(".msg.assistant .meta").count() == 0  # still streaming
        page.screenshot(path=where / "widget-mid-reply.png")
        shots.append("widget-mid-reply.png")
        expect(page.locator(".msg.assistant .meta")).to_contain_text("(stop)", timeout=30_000)
        page.set_viewport_size({"width": 320, "height": 640})
        page.locator(".msg.assistant").last.scroll_into_view_if_needed()
        assert page.evaluate("document.documentElement.scrollWidth") <= 320  # no sideways scrolling
        page.screenshot(path=where / "widget-320px.png")
        shots.append("widget-320px.png")
    finally:
        context.close()

    context = browser.new_context(viewport={"width": 1100, "height": 760}, color_scheme="light")
    try:
        page = context.new_page()
        frame = open_chat(page, f"{hosts.allowed}/")
        send(
            frame,
            "echo:Our **lamps** ship in two days. Cups:\n\n- stoneware\n- porcelain\n\nSee [the shop](https://shop.example/cups).",
        )
        page.screenshot(path=where / "widget-embedded.png")
        shots.append("widget-embedded.png")
    finally:
        context.close()
    for name in shots:
        assert (where / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
