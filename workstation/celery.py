"""The one Celery app.

Messages are JSON and carry ids only (never images, keys or personal data). Tasks are
acknowledged late with prefetch 1, so a worker that dies mid-task hands its message back
instead of losing it; a worker lost mid-task rejects (requeues) the message. Tasks are sent
only after the surrounding transaction commits (`task.delay_on_commit`), so a worker never
looks for a row that is not there yet.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready

from workstation.queues import ALL_QUEUES, RENDER_QUEUE, TASK_ROUTES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workstation.settings")

app = Celery("workstation")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,  # the database is the record of every job's outcome
    task_default_queue=RENDER_QUEUE,
    task_routes=TASK_ROUTES,
    task_create_missing_queues=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    task_track_started=False,
    enable_utc=True,
)
app.autodiscover_tasks()


@worker_ready.connect
def load_models_before_first_job(sender=None, **kwargs) -> None:
    """Pay the model load, compile and warm-up renders once at start-up, not inside the first
    user's job (engine.serving: the profile's warm-up batch sizes)."""
    from django.conf import settings

    if not settings.ENGINE_WARM_ON_START:
        return
    from workstation.engine_host import warm_up

    try:
        warm_up()
    except Exception:  # a broken model must not stop the worker; jobs report it
        import logging

        logging.getLogger(__name__).exception("engine warm-up failed")


__all__ = ["app", "ALL_QUEUES"]
