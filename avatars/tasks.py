"""Thin Celery tasks: ids in, one service call. (Training runs through the queue of record:
jobs.tasks.dispatch on the training lane.)"""

from celery import shared_task

from . import services


@shared_task(name="avatars.tasks.maintenance_retention_sweep")
def maintenance_retention_sweep() -> dict:
    return services.retention_sweep()
