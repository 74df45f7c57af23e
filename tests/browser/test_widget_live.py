"""The widget against a running Relay (gunicorn, Celery, the fake provider): the real
CSP from Talisman, the real anonymous session, SSE over fetch() and the saved reply."""

from __future__ import annotations

import re

import pytest
import requests

from tests.browser.conftest import RECORD_PROBLEMS, Widget, expect

pytestmark = pytest.mark.slow


@pytest.fixture
def live_widget(browser, stack):
    context = browser.new_context(viewport={"width": 360, "height": 640})
    context.add_init_script(RECORD_PROBLEMS)
    try:
        yield Widget(context.new_page(), stack)
    finally:
        context.close()


def test_chat_through_the_real_stack(live_widget: Widget, stack):
    page = live_widget.page
    response = page.goto(f"{stack.base_url}/")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    live_widget.wait_ready()
    page.get_by_label("Model").select_option("gpt-4o-mini")
    live_widget.send("echo:<b>bold?</b> & <i>more</i>")
    expect(live_widget.reply().locator(".meta")).to_contain_text("stop")
    assert live_widget.reply().locator(".reply").text_content() == "<b>bold?</b> & <i>more</i>"
    assert page.locator("#transcript b").count() == 0
    live_widget.assert_clean()

    # The conversation was saved server-side under the widget's anonymous session.
    token = page.evaluate("sessionStorage.getItem('relay.magic.anon_token')")
    token = re.search(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", token).group(0)
    listing = requests.get(
        f"{stack.base_url}/api/v1/conversations", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    assert listing["count"] == 1
    assert listing["conversations"][0]["message_count"] == 2
