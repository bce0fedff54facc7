"""Thin Celery tasks. Messages are dispatch tokens: they carry a lane name, never a payload."""

import logging

from celery import shared_task
from celery.signals import worker_process_shutdown, worker_shutdown
from celery.worker import state as worker_state
from django.conf import settings

from . import dispatch as dispatching
from . import runner, turns

logger = logging.getLogger(__name__)


def worker_is_stopping() -> bool:
    """Ctrl-C / SIGTERM started this worker's warm shutdown."""
    # The flags hold an exit code once set, and EX_OK is 0: test against None, not truth.
    return worker_state.should_stop is not None or worker_state.should_terminate is not None


@shared_task(name="jobs.tasks.dispatch", bind=True)
def dispatch(self, lane: str) -> str | None:
    """Claims the next job of `lane` by the fair policy and runs it; a no-op if none waits.

    A worker that is shutting down claims nothing new: the job stays queued and the sweeper
    re-sends its token (TOKEN_RESEND_S), so a stop never waits for a job it did not have.
    """
    if worker_is_stopping():
        logger.info("worker stopping: the %s token is left to the sweeper", lane)
        return None
    job = runner.dispatch_once(lane=lane, worker=self.request.hostname or "worker")
    return str(job.pk) if job else None


@shared_task(name="jobs.tasks.maintenance_sweep")
def maintenance_sweep() -> dict:
    return dispatching.sweep()


@shared_task(name="jobs.tasks.maintenance_reconcile_turns")
def maintenance_reconcile_turns() -> int:
    return turns.reconcile()


@worker_shutdown.connect
@worker_process_shutdown.connect
def finish_pipelined_jobs(**_kwargs: object) -> None:
    """A stopping worker first finishes the jobs it rendered (jobs.pipelining); what does not
    finish in time keeps its lease until it expires and is re-queued by the sweeper."""
    running = runner.finishing.running
    if not running:
        return
    logger.info("worker stopping: finishing %d rendered job(s)", running)
    if not runner.finishing.drain(timeout=settings.ENGINE_POSTPROCESS_TIMEOUT_S + 30):
        logger.warning("worker stopping with rendered jobs unfinished; the sweeper re-queues them")
