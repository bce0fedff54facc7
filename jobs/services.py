"""Writes for jobs outside a worker: create (queue of record + token) and cancel.

Running is jobs/runner.py; a job's terminal state and hooks are jobs/finishing.py.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from engine.errors import SpecError
from engine.spec import RenderSpec
from workstation.accounts.models import EndUser, User
from workstation.errors import ConflictError, InvalidInput

from . import dispatch, turns
from .finishing import job_finished_without_running
from .kinds import TEST_RENDER
from .models import JobStatus, RenderJob

logger = logging.getLogger(__name__)


def validate_render_spec(spec: dict) -> dict:
    """Checks a spec with the engine's own validator; errors name the field."""
    try:
        RenderSpec.from_dict(spec)
    except SpecError as exc:
        raise InvalidInput({exc.field: [exc.message]}) from exc
    return spec


def job_create(
    *,
    kind: str,
    spec: dict,
    created_by: User | None = None,
    end_user: EndUser | None = None,
    **fields: Any,
) -> RenderJob:
    """Creates a queued job of a registered kind and sends a dispatch token once the
    transaction commits.

    `spec` is an engine spec whose images may be {"asset": "<owner id>/<sha256>"} references
    (`jobs.assets.asset_ref`).
    """
    with transaction.atomic():
        job = dispatch.prepare_job(
            RenderJob(kind=kind, created_by=created_by, end_user=end_user, spec=spec, **fields)
        )
        job.token_sent_at = timezone.now()
        job.save()
        turns.job_queued(job)
        dispatch.send_token(job.lane)
    logger.info("job %s created (kind=%s, lane=%s)", job.id, job.kind, job.lane)
    return job


def test_render_create(*, user: User, spec: dict) -> RenderJob:
    """An operator's smoke test of the whole path: API -> queue -> worker -> storage."""
    validate_render_spec(spec)
    return job_create(kind=TEST_RENDER, spec=spec, created_by=user)


@transaction.atomic
def job_cancel(*, job: RenderJob) -> RenderJob:
    """Cancels a queued or running job. Before it starts, the user is refunded."""
    locked = RenderJob.objects.select_for_update().get(pk=job.pk)
    if locked.is_terminal:
        raise ConflictError(f"The job is already {locked.status}.")
    message = (
        "Canceled before it started. You were not charged."
        if locked.status == JobStatus.QUEUED
        else "Canceled while running."
    )
    job_finished_without_running(
        locked, status=JobStatus.CANCELED, code="canceled", message=message
    )
    locked.refresh_from_db()
    return locked
