"""Thin Celery tasks. Messages are dispatch tokens: they carry a lane name, never a payload."""

from celery import shared_task

from . import dispatch as dispatching
from . import runner


@shared_task(name="jobs.tasks.dispatch", bind=True)
def dispatch(self, lane: str) -> str | None:
    """Claims the next job of `lane` by the fair policy and runs it; a no-op if none waits."""
    job = runner.dispatch_once(lane=lane, worker=self.request.hostname or "worker")
    return str(job.pk) if job else None


@shared_task(name="jobs.tasks.maintenance_sweep")
def maintenance_sweep() -> dict:
    return dispatching.sweep()
