"""gunicorn entry point (and `flask --app wsgi`). gevent's monkey-patching must happen before anything else."""

from gevent import monkey

monkey.patch_all()

from app import create_app  # noqa: E402
from app.startup import refusing  # noqa: E402

with refusing():  # a refused setting: one line and status 2 (gunicorn's master checked it already)
    app = create_app()
