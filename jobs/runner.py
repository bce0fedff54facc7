"""Running claimed jobs in a worker: render (or the kind's own `run`), store, finish.

A job is run under a lease kept by a background thread. A render job's spec is an engine
RenderSpec; the images are screened (jobs.providers), stored, and the job succeeds with its
outputs in one transaction. Every way a job can fail ends in `_fail_running`, which records a
consumer-safe reason (the kind says whether consumers see it) and runs the terminal hooks
(refunds among them).
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from PIL import Image

from engine.errors import EngineError, RenderCanceled, SpecError
from engine.spec import RenderSpec
from workstation.engine_host import get_engine

from . import dispatch, providers, registry
from .assets import resolve_asset_refs
from .finishing import announce_finished, job_finished_without_running
from .models import JobStatus, Lane, RenderJob, RenderOutput

if TYPE_CHECKING:
    from engine.runtime import RenderedImage

logger = logging.getLogger(__name__)

# Progress is written at most this often, so a fast sampler cannot flood the database.
PROGRESS_MIN_INTERVAL_S = 0.25


class LeaseLost(Exception):
    """This worker no longer holds the job (its lease expired and it was re-queued)."""


def _fail_running(job: RenderJob, *, code: str, message: str) -> None:
    with transaction.atomic():
        if RenderJob.objects.held(job).exists():
            job_finished_without_running(job, status=JobStatus.FAILED, code=code, message=message)


def _progress_writer(job: RenderJob) -> Callable[[int, int], None]:
    last_write = 0.0

    def on_progress(step: int, total: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if step < total and now - last_write < PROGRESS_MIN_INTERVAL_S:
            return
        last_write = now
        RenderJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            progress_step=step, progress_total=total
        )

    return on_progress


def _canceled(job: RenderJob) -> Callable[[], bool]:
    last_check = 0.0

    def should_cancel() -> bool:
        nonlocal last_check
        now = time.monotonic()
        if now - last_check < 0.5:
            return False
        last_check = now
        return not RenderJob.objects.held(job).exists()

    return should_cancel


def _render_options(job: RenderJob, spec: RenderSpec) -> dict[str, Any]:
    """Avatars come from the avatar provider; their owner's face embedding ranks outputs.

    Outputs of kinds registered as labelled carry the AIGC labels: visible text, XMP metadata
    and an invisible watermark with the job id.
    """
    from engine.runtime import LabelOptions  # torch: only in processes that render

    options: dict[str, Any] = {"avatar_source": providers.load_avatar_lora}
    if spec.avatar is not None:
        embedding = providers.reference_embedding(spec.avatar.id)
        if embedding is not None:
            options["reference_embedding"] = embedding
    if registry.get(job.kind).labelled:
        options["label"] = LabelOptions(
            job_id=str(job.id),
            producer=settings.LABEL_PRODUCER,
            text=settings.LABEL_TEXT,
            format="PNG",
        )
    return options


def _screen_outputs(images: list[RenderedImage]) -> list[RenderedImage]:
    """Drops outputs the installed output screen flags (none installed: all pass)."""
    screen = providers.output_screen()
    if screen is None or not images:
        return images
    flagged = screen([Image.open(io.BytesIO(image.png_bytes)) for image in images])
    return [image for image, bad in zip(images, flagged, strict=True) if not bad]


def _store_outputs(job: RenderJob, images: list[RenderedImage], steps: int) -> None:
    stored: list[str] = []
    try:
        with transaction.atomic():
            owned = RenderJob.objects.held(job).select_for_update()
            if not owned.exists():
                raise LeaseLost()
            for index, image in enumerate(images):
                name = default_storage.save(
                    f"renders/{job.id}/{index}-{image.seed}.png", ContentFile(image.png_bytes)
                )
                stored.append(name)
                RenderOutput.objects.create(
                    job=job,
                    index=index,
                    storage_name=name,
                    width=image.width,
                    height=image.height,
                    seed=image.seed,
                    likeness=image.likeness,
                    sha256=hashlib.sha256(image.png_bytes).hexdigest(),
                    content_sha256=image.content_sha256,
                )
            owned.update(
                status=JobStatus.SUCCEEDED,
                finished_at=timezone.now(),
                progress_step=steps,
                progress_total=steps,
                lease_expires_at=None,
            )
            announce_finished(job)
    except Exception:
        # No half-stored result: remove what reached storage.
        for name in stored:
            default_storage.delete(name)
        raise


def _run_render(job: RenderJob) -> None:
    started = time.monotonic()
    try:
        spec = RenderSpec.from_dict(resolve_asset_refs(job.spec))
        images = get_engine().render(
            spec,
            on_progress=_progress_writer(job),
            should_cancel=_canceled(job),
            **_render_options(job, spec),
        )
    except RenderCanceled:
        logger.info("job %s stopped: canceled or lease lost", job.id)
        return
    except SpecError as exc:
        _fail_running(job, code="invalid_spec", message=f"{exc.field}: {exc.message}")
        return
    except EngineError as exc:
        logger.error("job %s failed in the engine: %s: %s", job.id, type(exc).__name__, exc)
        # Studio users choose models and controls, so they see the engine's reason; consumers
        # get a plain sentence (the engine's text may name files and models).
        consumer = registry.get(job.kind).consumer_facing
        _fail_running(
            job,
            code="engine_error",
            message=(
                "The image could not be rendered because of a technical problem. "
                "You were not charged."
                if consumer
                else f"{exc}"
            ),
        )
        return
    except FileNotFoundError:
        _fail_running(
            job, code="asset_missing", message="A control image is missing. You were not charged."
        )
        return
    images = _screen_outputs(images)
    if not images:
        _fail_running(
            job,
            code="unsafe_output",
            message=("Every image was withheld by the content-safety check. You were not charged."),
        )
        return
    try:
        _store_outputs(job, images, spec.steps)
    except LeaseLost:
        logger.warning("job %s: lease lost before storing; result discarded", job.id)
        return
    except Exception:
        logger.exception("job %s: storing results failed", job.id)
        _fail_running(
            job,
            code="storage_error",
            message="The result could not be stored. You were not charged.",
        )
        return
    logger.info(
        "job %s succeeded in %.2fs (%d images)", job.id, time.monotonic() - started, len(images)
    )


def _run_own(job: RenderJob, run: registry.RunFunction) -> None:
    """A kind that runs itself (e.g. avatar training); the runner records its outcome."""
    outcome = run(job)
    with transaction.atomic():
        owned = RenderJob.objects.held(job).select_for_update()
        if not owned.exists():
            return
        if outcome.succeeded:
            owned.update(
                status=JobStatus.SUCCEEDED, finished_at=timezone.now(), lease_expires_at=None
            )
            announce_finished(job)
        else:
            job_finished_without_running(
                job,
                status=JobStatus.FAILED,
                code=outcome.code,
                message=outcome.message,
                details=list(outcome.details),
            )


def execute_job(job: RenderJob) -> None:
    """Runs a job this worker has claimed, renewing its lease until it is done."""
    with dispatch.LeaseKeeper(job):
        try:
            run = registry.get(job.kind).run
            if run is not None:
                _run_own(job, run)
            else:
                _run_render(job)
        except Exception:
            logger.exception("job %s crashed", job.id)
            _fail_running(
                job,
                code="internal_error",
                message="The job failed because of an internal error. You were not charged.",
            )


def _run_render_batch(jobs: list[RenderJob]) -> None:
    """Renders compatible jobs of different owners in one forward pass (per-sample avatar
    adapters), then stores each job's outputs under its own lease. If the batch fails as a
    whole, each job is retried on its own, so one bad job cannot fail the others."""
    try:
        specs = [RenderSpec.from_dict(resolve_asset_refs(job.spec)) for job in jobs]
        options = [_render_options(job, spec) for job, spec in zip(jobs, specs, strict=True)]
        ids = [job.pk for job in jobs]

        def on_progress(step: int, total: int) -> None:
            RenderJob.objects.filter(pk__in=ids, status=JobStatus.RUNNING).update(
                progress_step=step, progress_total=total
            )

        results = get_engine().render_batch(
            specs,
            avatar_source=providers.load_avatar_lora,
            on_progress=on_progress,
            reference_embeddings=[o.get("reference_embedding") for o in options],
            labels=[o.get("label") for o in options],
        )
    except Exception:
        logger.warning("batch of %d failed; running its jobs one by one", len(jobs), exc_info=True)
        for job in jobs:
            _run_render(job)
        return
    for job, images, spec in zip(jobs, results, specs, strict=True):
        images = _screen_outputs(images)
        if not images:
            _fail_running(
                job,
                code="unsafe_output",
                message=(
                    "Every image was withheld by the content-safety check. You were not charged."
                ),
            )
            continue
        try:
            _store_outputs(job, images, spec.steps)
        except LeaseLost:
            logger.warning("job %s: lease lost before storing; result discarded", job.id)
        except Exception:
            logger.exception("job %s: storing results failed", job.id)
            _fail_running(
                job,
                code="storage_error",
                message="The result could not be stored. You were not charged.",
            )
    logger.info("batch of %d jobs done (%s)", len(jobs), ", ".join(str(j.pk) for j in jobs))


def execute_batch(jobs: list[RenderJob]) -> None:
    if len(jobs) == 1:
        execute_job(jobs[0])
        return
    keepers = [dispatch.LeaseKeeper(job) for job in jobs]
    for keeper in keepers:
        keeper.__enter__()
    try:
        _run_render_batch(jobs)
    except Exception:
        logger.exception("batch crashed")
        for job in jobs:
            _fail_running(
                job,
                code="internal_error",
                message="The job failed because of an internal error. You were not charged.",
            )
    finally:
        for keeper in keepers:
            keeper.__exit__(None, None, None)


def dispatch_once(*, lane: str, worker: str) -> RenderJob | None:
    """Claims the next job of `lane` by the fair policy (with compatible jobs to batch, on the
    render lane) and runs it. Returns the first job, or None if none waited."""
    dispatch.heartbeat(worker=worker, lanes=lane)
    limit = settings.RENDER_BATCH_LIMIT if lane == Lane.RENDER else 1
    jobs = dispatch.claim_batch(lane=lane, worker=worker, limit=max(limit, 1))
    if not jobs:
        return None
    execute_batch(jobs)
    dispatch.heartbeat(worker=worker, lanes=lane)
    return jobs[0]


def render_job_execute(*, job_id: uuid.UUID | str, worker: str = "direct") -> None:
    """Runs one specific job if it is still queued (a no-op otherwise)."""
    job = dispatch.claim_job(job_id=job_id, worker=worker)
    if job is not None:
        execute_job(job)
