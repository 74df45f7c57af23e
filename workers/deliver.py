"""Webhook delivery on the `webhooks` queue: one attempt per wake-up, and the sweep that re-wakes.

A message carries only the delivery id. The attempt claims the row under a
lease (app/webhooks/deliveries.py), so a duplicate or early message does
nothing. Acks are late (celery_app settings): a message whose worker dies is
not lost. Independently of the broker's redelivery (which, on Redis, waits for
its visibility timeout), every worker that consumes `webhooks` sweeps the
database at start and every WEBHOOK_SWEEP_SECONDS for deliveries whose lease
ran out or whose wake-up never came, and wakes them again.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task
from celery.signals import worker_ready
from flask import current_app

from app.webhooks import deliveries

log = logging.getLogger("relay.workers.deliver")

SWEEP_TASK = "workers.deliver_sweep"


@shared_task(name=deliveries.TASK, ignore_result=True, acks_late=True)
def deliver(delivery_id: str) -> None:
    """Make the delivery's next attempt if it is due and nobody else holds it."""
    outcome = deliveries.attempt(delivery_id, current_app.config)
    if outcome is not None:
        log.info("delivery %s: %s", delivery_id, outcome)


@shared_task(name=SWEEP_TASK, ignore_result=True)
def sweep() -> float:
    """Wake every overdue delivery once; returns the seconds until the next sweep."""
    config = current_app.config
    try:
        overdue = deliveries.overdue_ids(config)
    except Exception as exc:  # noqa: BLE001 - the database may be away for a while; sweep again later
        log.warning("webhook sweep skipped: %s", type(exc).__name__)
        overdue = []
    if overdue:
        log.info("webhook sweep: waking %d overdue deliveries", len(overdue))
        deliveries.enqueue(overdue)
    return float(config["WEBHOOK_SWEEP_SECONDS"])


def _sweep_forever() -> None:
    while True:
        interval = sweep()  # called directly: in the Flask app context the task class provides, without a trace
        time.sleep(interval)


@worker_ready.connect
def _start_sweeper(sender: object = None, **_: object) -> None:
    """Only in workers that consume the webhooks queue (a green thread under the gevent pool)."""
    queues = getattr(getattr(sender, "task_consumer", None), "queues", None) or []
    if deliveries.QUEUE not in {queue.name for queue in queues}:
        return
    threading.Thread(target=_sweep_forever, name="webhook-sweeper", daemon=True).start()
