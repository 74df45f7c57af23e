"""gunicorn entry point. gevent's monkey-patching must happen before anything else."""

from gevent import monkey

monkey.patch_all()

from app import create_app  # noqa: E402

app = create_app()
