"""Who may frame the widget (app/api/widget.py): /widget by ALLOWED_ORIGINS only, nothing else at all."""

from __future__ import annotations

import re

import pytest


def policy(response) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    return {name: value for name, value in parts}


def test_only_the_widget_page_may_be_framed_and_only_by_allowed_origins(make_app):
    app = make_app(ALLOWED_ORIGINS="http://localhost:8080,https://shop.example/,*,https://x.example;script-src *")
    client = app.test_client()
    page = client.get("/widget")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = policy(page)
    # Concrete http(s) origins only: a wildcard or anything a CSP would read as more is left out.
    assert csp["frame-ancestors"] == "http://localhost:8080 https://shop.example"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert "X-Frame-Options" not in page.headers  # it would block the allowed framers
    meta = re.search(r'<meta name="relay-embed-origins" content="([^"]*)">', page.get_data(as_text=True))
    assert meta.group(1) == "http://localhost:8080 https://shop.example"

    for path in ("/", "/static/magic/index.html", "/static/magic/embed.js", "/api/v1/models", "/health", "/nope"):
        response = client.get(path)
        assert policy(response)["frame-ancestors"] == "'none'", path
        assert response.headers["X-Frame-Options"] == "DENY", path
    assert client.get("/").headers["Location"].endswith("/static/magic/index.html")


@pytest.mark.parametrize("origins", ["", "*", "javascript:alert(1)"])
def test_without_a_concrete_allowed_origin_nobody_may_frame_it(make_app, origins):
    client = make_app(ALLOWED_ORIGINS=origins).test_client()
    page = client.get("/widget")
    assert policy(page)["frame-ancestors"] == "'none'"
    assert 'name="relay-embed-origins" content=""' in page.get_data(as_text=True)


def test_each_app_keeps_its_own_policy(make_app):
    first = make_app(ALLOWED_ORIGINS="https://a.example").test_client()
    second = make_app(ALLOWED_ORIGINS="https://b.example").test_client()
    assert policy(second.get("/widget"))["frame-ancestors"] == "https://b.example"
    assert policy(first.get("/widget"))["frame-ancestors"] == "https://a.example"
