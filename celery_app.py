"""The Celery application, built through create_app() (Flask's Celery pattern).

celery -A celery_app worker -P gevent -Q generate,webhooks      remote providers
celery -A celery_app worker -P prefork -Q generate_local         the local CPU model

A refused setting, or a database or Redis that does not answer, stops the worker
before it starts: one line on stderr, exit status 2 (app/startup.py).
"""

from app import create_app
from app.startup import check_stores, refusing

with refusing():
    flask_app = create_app()
    check_stores(flask_app.config)
celery = flask_app.extensions["celery"]
