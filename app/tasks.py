"""Flask's Celery pattern: one Celery app per Flask app, tasks run in its app context."""

from __future__ import annotations

from celery import Celery, Task
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutting_down
from flask import Flask

TASK_MODULES = ("workers.generate", "workers.deliver", "workers.plan")


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
            "broker_transport_options": {
                "global_keyprefix": config["REDIS_KEY_PREFIX"] + "celery:",
                # A worker's green threads ack through its consuming channel's own pool, which
                # fails rather than waits when full: room for every one. Connections open on
                # demand, so a web process (one publisher per pooled connection) uses few.
                "max_connections": 1000,
            },
            # Publishers share this many broker connections per process and wait for a free one.
            "broker_pool_limit": config["BROKER_POOL_SIZE"],
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
    _serve_hooks(app)
    return celery


@worker_init.connect
def _warm_remote_providers(**_: object) -> None:
    # Importing a provider SDK takes about a second; pay it at start-up, not on the first stream.
    import importlib

    for module in ("openai", "anthropic"):
        importlib.import_module(module)


def _warm_tokenizers(app: Flask) -> None:
    # A worker counts tokens when a provider reports no usage: load o200k_base (a second) before
    # the first job. The local model's vocabulary loads in milliseconds, and not beside its proof.
    from app import tokens

    with app.app_context():
        tokens.warm(
            spec for spec in app.extensions["relay.streams"].catalog.models.values() if spec.provider != "local"
        )


def _serve_hooks(app: Flask) -> None:
    """Start each serving process's heartbeat (and, in local-model workers, the model's proof):
    in each prefork child after fork (and solo's process), or in the process of a green or thread pool."""

    def serving(**_: object) -> None:
        from workers import liveness

        runtime = app.extensions["relay.streams"]
        beat = liveness.start(
            runtime.journal.client,
            runtime.journal.worker_key(liveness.worker_id()),
            app.config["REDIS_KEY_PREFIX"],
            app.config["WORKER_LOST_SECONDS"],
        )
        if app.config["RELAY_PRELOAD_LOCAL_MODEL"]:
            liveness.prove_local_model(beat, app.config)
        liveness.in_background(_warm_tokenizers, app)

    def ready(sender: object = None, **_: object) -> None:
        from celery.concurrency.prefork import TaskPool as PreforkPool

        if not isinstance(getattr(sender, "pool", None), PreforkPool):  # prefork: each child starts its own
            serving()
        from workers import direct

        direct.start(app, sender)  # a gevent worker of the remote providers' queue listens for offers

    def shutting_down(**_: object) -> None:
        from workers import direct

        direct.stop()

    def lifecycle(**_: object) -> None:
        from workers import lifecycle  # the stream log line, and the shutdown grace

        lifecycle.install(app)

    # One app per worker process; the uid keeps apps built later (tests) from stacking handlers.
    worker_init.connect(lifecycle, weak=False, dispatch_uid="relay.lifecycle")
    worker_process_init.connect(serving, weak=False, dispatch_uid="relay.serving")
    worker_ready.connect(ready, weak=False, dispatch_uid="relay.ready")
    worker_shutting_down.connect(shutting_down, weak=False, dispatch_uid="relay.direct.stop")
