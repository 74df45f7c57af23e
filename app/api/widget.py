"""The browser chat widget (static/magic/): `/` opens it; `/widget` is the page the one-line embed frames.

Only `/widget` may be framed, and only by the origins in ALLOWED_ORIGINS (CSP
`frame-ancestors`, without X-Frame-Options, which would block every framer).
Every other response, `/` and the static files included, keeps Talisman's
`frame-ancestors 'none'` and `X-Frame-Options: DENY`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

from flask import Blueprint, Flask, Response, redirect, request
from flask.blueprints import BlueprintSetupState
from markupsafe import escape

from ..extensions import talisman

bp = Blueprint("widget", __name__)
PAGE = "/widget"
PAGE_FILE = Path(__file__).resolve().parents[2] / "static" / "magic" / "index.html"
# An origin as a browser sends it (scheme, host, optional port): nothing a CSP could read as another source.
ORIGIN = re.compile(r"^https?://(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
ORIGINS_META = '<meta name="relay-embed-origins" content="">'


def framing_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """The ALLOWED_ORIGINS that are concrete http(s) origins (a wildcard or a path frames nothing)."""
    return tuple(origin.rstrip("/") for origin in origins if ORIGIN.fullmatch(origin.rstrip("/")))


def _index() -> Response:
    """Replaced in each app by its own _WidgetView (see _bind_view)."""
    raise NotImplementedError  # pragma: no cover


bp.add_url_rule("/", endpoint="index", view_func=_index, methods=["GET"])
bp.add_url_rule(PAGE, endpoint="index", view_func=_index, methods=["GET"])


class _WidgetView:
    """This app's view of both rules, with Talisman options that depend on the path it answers.

    Its settings are read on the first request, not when the blueprint is registered:
    an app that only lists routes has neither ALLOWED_ORIGINS nor Talisman bound."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        functools.update_wrapper(self, _index)  # extensions (the limiter, metrics) name views by __qualname__

    @functools.cached_property
    def _settings(self) -> tuple[dict, dict, str]:
        origins = framing_origins(self.app.config["ALLOWED_ORIGINS"])
        defaults = {
            "force_https": talisman.force_https,
            "frame_options": talisman.frame_options,
            "content_security_policy": talisman.content_security_policy,
        }
        policy = {**talisman.content_security_policy, "frame-ancestors": " ".join(origins) or "'none'"}
        framed = {**defaults, "frame_options": None, "content_security_policy": policy}
        meta = f'<meta name="relay-embed-origins" content="{escape(" ".join(origins))}">'
        return defaults, framed, PAGE_FILE.read_text(encoding="utf-8").replace(ORIGINS_META, meta)

    @property
    def talisman_view_options(self) -> dict:
        """Read by Talisman per request; a fresh dict, because Talisman fills it in with setdefault."""
        defaults, framed, _ = self._settings
        return dict(framed if request.path == PAGE else defaults)

    def __call__(self) -> Response:
        if request.path != PAGE:
            return redirect("/static/magic/index.html", code=302)
        return Response(self._settings[2], mimetype="text/html", headers={"Cache-Control": "no-cache"})


@bp.record
def _bind_view(state: BlueprintSetupState) -> None:
    """Each app gets a view of its own: its ALLOWED_ORIGINS and Talisman settings, read once."""
    state.app.view_functions["widget.index"] = _WidgetView(state.app)
