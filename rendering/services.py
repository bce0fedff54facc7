"""Writes for render jobs: create, execute (in a worker), store results."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from workstation.accounts.models import User
from workstation.api.errors import InvalidInput

from .assets import resolve_asset_refs
from .models import JobKind, JobStatus, RenderJob, RenderOutput
from .signals import render_job_finished

logger = logging.getLogger(__name__)

# Progress is written at most this often, so a fast sampler cannot flood the database.
PROGRESS_MIN_INTERVAL_S = 0.25


def validate_render_spec(spec: dict) -> dict:
    """Checks a spec with the engine's own validator; errors name the field."""
    from engine.errors import SpecError
    from engine.spec import RenderSpec

    try:
        RenderSpec.from_dict(spec)
    except SpecError as exc:
        raise InvalidInput({exc.field: [exc.message]}) from exc
    return spec


def render_job_create(*, kind: str, spec: dict, created_by: User | None = None,
                      end_user=None) -> RenderJob:
    """Creates a queued job and sends its message once the caller's transaction commits.

    `spec` is an engine spec whose images may be {"asset": sha256} references.
    """
    from .tasks import run_render_job

    with transaction.atomic():
        job = RenderJob.objects.create(kind=kind, created_by=created_by, end_user=end_user,
                                       spec=spec)
        run_render_job.delay_on_commit(str(job.id))
    logger.info("render job %s created (kind=%s)", job.id, job.kind)
    return job


def test_render_create(*, user: User, spec: dict) -> RenderJob:
    """An operator's smoke test of the whole path: API -> queue -> worker -> storage."""
    validate_render_spec(spec)
    return render_job_create(kind=JobKind.TEST_RENDER, spec=spec, created_by=user)


def _claim(job_id: uuid.UUID | str) -> RenderJob | None:
    """Locks the row and moves a queued job to running; None when there is nothing to do."""
    with transaction.atomic():
        job = RenderJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            logger.warning("render job %s not found; message dropped", job_id)
            return None
        if job.status != JobStatus.QUEUED:
            logger.info("render job %s is %s; nothing to do", job.id, job.status)
            return None
        job.status = JobStatus.RUNNING
        job.started_at = timezone.now()
        job.attempts += 1
        job.save(update_fields=["status", "started_at", "attempts"])
    return job


def _progress_writer(job: RenderJob):
    last_write = 0.0

    def on_progress(step: int, total: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if step < total and now - last_write < PROGRESS_MIN_INTERVAL_S:
            return
        last_write = now
        RenderJob.objects.filter(pk=job.pk).update(progress_step=step, progress_total=total)

    return on_progress


def _fail(job: RenderJob, *, code: str, message: str) -> None:
    RenderJob.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED, error_code=code, error_message=message,
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    render_job_finished.send(sender=RenderJob, job=job)


def _render_options(job: RenderJob, spec) -> dict:
    """Avatars come decrypted from our storage; their owner's face embedding ranks outputs.

    Every output except an operator's test render (a diagnostic, never published) carries the
    AIGC labels: visible text, XMP metadata and an invisible watermark with the job id.
    """
    from engine.runtime import LabelOptions

    from .avatar_source import load_avatar_lora

    options: dict = {"avatar_source": load_avatar_lora}
    if spec.avatar is not None:
        from avatars.models import Avatar
        from avatars.services import avatar_reference_embedding

        avatar = Avatar.objects.filter(pk=spec.avatar.id).first()
        if avatar is not None and avatar.reference_embedding:
            options["reference_embedding"] = avatar_reference_embedding(avatar=avatar)
    if job.kind != JobKind.TEST_RENDER:
        options["label"] = LabelOptions(job_id=str(job.id), producer=settings.LABEL_PRODUCER,
                                        text=settings.LABEL_TEXT, format="PNG")
    return options


def render_job_execute(*, job_id: uuid.UUID | str) -> None:
    """Runs one job to completion. Safe to call twice: a job that is not queued is skipped."""
    from engine.errors import EngineError, SpecError
    from engine.spec import RenderSpec

    from .engine_host import get_engine

    job = _claim(job_id)
    if job is None:
        return
    started = time.monotonic()
    try:
        spec = RenderSpec.from_dict(resolve_asset_refs(job.spec))
        images = get_engine().render(spec, on_progress=_progress_writer(job),
                                     **_render_options(job, spec))
    except SpecError as exc:
        _fail(job, code="invalid_spec", message=f"{exc.field}: {exc.message}")
        return
    except EngineError as exc:
        logger.error("render job %s failed in the engine: %s", job.id, type(exc).__name__)
        _fail(job, code="engine_error", message=str(exc))
        return
    except Exception:
        logger.exception("render job %s failed unexpectedly", job.id)
        _fail(job, code="internal_error", message="The render failed because of an internal error.")
        return

    stored: list[str] = []
    try:
        with transaction.atomic():
            for index, image in enumerate(images):
                name = default_storage.save(
                    f"renders/{job.id}/{index}-{image.seed}.png", ContentFile(image.png_bytes)
                )
                stored.append(name)
                RenderOutput.objects.create(
                    job=job, index=index, storage_name=name, width=image.width,
                    height=image.height, seed=image.seed, likeness=image.likeness,
                    sha256=hashlib.sha256(image.png_bytes).hexdigest(),
                )
            RenderJob.objects.filter(pk=job.pk).update(
                status=JobStatus.SUCCEEDED, finished_at=timezone.now(),
                progress_step=spec.steps, progress_total=spec.steps,
            )
    except Exception:
        # No half-stored result: remove what reached storage, record the failure.
        for name in stored:
            default_storage.delete(name)
        logger.exception("render job %s: storing results failed", job.id)
        _fail(job, code="storage_error", message="The result could not be stored.")
        return
    logger.info("render job %s succeeded in %.2fs (%d images)", job.id,
                time.monotonic() - started, len(images))
    job.refresh_from_db()
    render_job_finished.send(sender=RenderJob, job=job)
