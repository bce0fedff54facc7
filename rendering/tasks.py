"""Celery tasks stay thin: they carry a job id and call a service."""

from celery import shared_task

from . import services


@shared_task(name="rendering.tasks.run_render_job")
def run_render_job(job_id: str) -> None:
    services.render_job_execute(job_id=job_id)
