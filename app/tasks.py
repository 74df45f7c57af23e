"""Flask's Celery pattern: one Celery app per Flask app, tasks run in its app context."""

from __future__ import annotations

from celery import Celery, Task
from celery.signals import worker_init, worker_process_init
from flask import Flask

TASK_MODULES = ("workers.generate", "workers.deliver")


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app from the Flask settings (JSON only, acks late, prefetch 1)."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    config = app.config
    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(
        {
            "broker_url": config["CELERY_BROKER_URL"],
            "broker_connection_retry_on_startup": True,
            # Hundreds of green threads ack through the broker pool: size it like the pool.
            "broker_transport_options": {
                "global_keyprefix": config["REDIS_KEY_PREFIX"] + "celery:",
                "max_connections": 1000,
            },
            "broker_pool_limit": 100,
            "task_serializer": "json",
            "result_serializer": "json",
            "accept_content": ["json"],
            "task_ignore_result": True,
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "task_default_queue": "generate",
            "worker_hijack_root_logger": False,
            "worker_send_task_events": False,
            "imports": TASK_MODULES,
        }
    )
    celery.set_default()
    app.extensions["celery"] = celery
    if config["RELAY_PRELOAD_LOCAL_MODEL"]:
        _preload_local_model(app)
    return celery


@worker_init.connect
def _warm_remote_providers(**_: object) -> None:
    # Importing a provider SDK takes about a second; pay it at start-up, not on the first stream.
    import importlib

    for module in ("openai", "anthropic"):
        importlib.import_module(module)


def _preload_local_model(app: Flask) -> None:
    """In the local model's workers (RELAY_PRELOAD_LOCAL_MODEL=1 in the Procfile), load
    the model once per process at start, so the first stream does not wait for it."""

    @worker_process_init.connect(weak=False)
    def load(**_: object) -> None:
        from workers.providers import get_provider

        get_provider("local", app.config).warm()
