"""The Celery application, built through create_app() (Flask's Celery pattern).

celery -A celery_app worker -P gevent -Q generate,webhooks      remote providers
celery -A celery_app worker -P prefork -Q generate_local         the local CPU model
"""

from app import create_app

flask_app = create_app()
celery = flask_app.extensions["celery"]
