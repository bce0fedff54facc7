"""Thin Celery tasks: ids in, one service call."""

from celery import shared_task

from . import services


@shared_task(name="avatars.tasks.train_avatar")
def train_avatar(avatar_id: str) -> None:
    services.avatar_train_execute(avatar_id=avatar_id)


@shared_task(name="avatars.tasks.maintenance_retention_sweep")
def maintenance_retention_sweep() -> dict:
    return services.retention_sweep()
