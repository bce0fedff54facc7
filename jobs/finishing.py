"""A job's terminal state and its hooks.

The terminal state commits with the job's result. Each terminal hook of the job's kind (and
each hook registered for every kind) then runs inside its own savepoint, so a hook that raises
rolls back only its own writes: the stored result stays, the failure is logged with the job id
and the hook's name is kept in `pending_hooks` for the sweeper to retry. Hooks must therefore
be idempotent (a refund is one per job by constraint; a webhook event one per job and state).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from . import registry, turns
from .events import job_changed
from .models import JobStatus, RenderJob

logger = logging.getLogger(__name__)


def run_finished_hooks(job: RenderJob, *, only: list[str] | None = None) -> list[str]:
    """Runs the job's terminal hooks (or only those named), each in a savepoint. Records and
    returns the names of those that raised. Call inside the transaction that holds the row."""
    failed: list[str] = []
    for hook in registry.finished_hooks(job.kind):
        name = registry.hook_name(hook)
        if only is not None and name not in only:
            continue
        try:
            with transaction.atomic():
                hook(job)
        except Exception:
            logger.exception(
                "job %s: terminal hook %s failed; the sweeper retries it", job.pk, name
            )
            failed.append(name)
    if failed or job.pending_hooks:
        RenderJob.objects.filter(pk=job.pk).update(
            pending_hooks=failed, has_pending_hooks=bool(failed)
        )
        job.pending_hooks = failed
    return failed


def announce_finished(job: RenderJob) -> None:
    """Reloads the job in its terminal state and runs its hooks (same transaction)."""
    job.refresh_from_db()
    job_changed(job.pk)  # every terminal state passes here; published on commit
    run_finished_hooks(job)


def job_finished_without_running(
    job: RenderJob,
    *,
    status: str,
    code: str,
    message: str,
    details: list[dict[str, str]] | None = None,
) -> None:
    """Fails, aborts or cancels a job that produced nothing (its hooks refund what it cost).

    Called with the job row locked.
    """
    was_queued = job.status == JobStatus.QUEUED
    RenderJob.objects.filter(pk=job.pk).update(
        status=status,
        error_code=code,
        error_message=message,
        error_details=details or [],
        finished_at=timezone.now(),
        lease_expires_at=None,
    )
    if was_queued:
        turns.job_left_queue(job)
    announce_finished(job)


def retry_pending_hooks(*, limit: int = 200) -> tuple[int, int]:
    """The sweeper's part: runs again the hooks that raised. Returns (retried, still failing)."""
    retried = failing = 0
    waiting = RenderJob.objects.filter(has_pending_hooks=True).values_list("pk", flat=True)[:limit]
    for pk in list(waiting):
        try:
            with transaction.atomic():
                job = RenderJob.objects.select_for_update().filter(pk=pk).first()
                if job is None or not job.pending_hooks:
                    continue
                retried += 1
                if run_finished_hooks(job, only=list(job.pending_hooks)):
                    failing += 1
        except Exception:
            logger.exception("job %s: retrying its terminal hooks failed", pk)
            failing += 1
    return retried, failing
