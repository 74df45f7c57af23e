"""The browser chat widget (static/magic/)."""

from flask import Blueprint, redirect

bp = Blueprint("widget", __name__)


@bp.get("/")
def index():
    return redirect("/static/magic/index.html", code=302)
