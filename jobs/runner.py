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
from .events import job_changed, jobs_changed
from .finishing import announce_finished, job_finished_without_running
from .models import JobStatus, Lane, RenderJob, RenderOutput
from .pipelining import BackgroundFinishing

if TYPE_CHECKING:
    from engine.postprocess import RenderedImage

logger = logging.getLogger(__name__)

# Progress is written at most this often, so a fast sampler cannot flood the database.
PROGRESS_MIN_INTERVAL_S = 0.25

# Finishes a rendered job: wait for its post-processed images, screen, store, succeed.
Completion = Callable[[], None]

# This process's render jobs still finishing while the next one denoises (jobs.pipelining).
finishing = BackgroundFinishing()


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
        job_changed(job.pk)

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
    """Avatars (LoRAs and identity embeddings) come from the avatar provider; their owner's
    face embedding ranks outputs (every output of a render of a person carries its likeness).

    Outputs of kinds registered as labelled carry the AIGC labels: visible text, XMP metadata
    and an invisible watermark with the job id.
    """
    from engine.postprocess import LabelOptions

    options: dict[str, Any] = {
        "avatar_source": providers.load_avatar_lora,
        "identity_source": providers.load_identity,
    }
    person = spec.avatar or spec.identity
    if person is not None:
        embedding = providers.reference_embedding(person.id)
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


def _fail_engine(job: RenderJob, exc: EngineError) -> None:
    logger.error("job %s failed in the engine: %s: %s", job.id, type(exc).__name__, exc)
    # Studio users choose models and controls, so they see the engine's reason; consumers
    # get a plain sentence (the engine's text may name files and models).
    consumer = registry.get(job.kind).consumer_facing
    _fail_running(
        job,
        code="engine_error",
        message=(
            "The image could not be rendered because of a technical problem. You were not charged."
            if consumer
            else f"{exc}"
        ),
    )


def _fail_crashed(job: RenderJob) -> None:
    _fail_running(
        job,
        code="internal_error",
        message="The job failed because of an internal error. You were not charged.",
    )


def _start_render(job: RenderJob) -> Completion | None:
    """Denoises the job's images (on this thread: the one that owns the GPU) and returns what
    finishes it: wait for the post-processed images, screen, store, succeed. None when the
    job already ended here (canceled, or failed with its reason recorded)."""
    started = time.monotonic()
    try:
        spec = RenderSpec.from_dict(resolve_asset_refs(job.spec))
        pending = get_engine().start_render(
            spec,
            on_progress=_progress_writer(job),
            should_cancel=_canceled(job),
            **_render_options(job, spec),
        )
    except RenderCanceled:
        logger.info("job %s stopped: canceled or lease lost", job.id)
        return None
    except SpecError as exc:
        _fail_running(job, code="invalid_spec", message=f"{exc.field}: {exc.message}")
        return None
    except EngineError as exc:
        _fail_engine(job, exc)
        return None
    except FileNotFoundError:
        _fail_running(
            job, code="asset_missing", message="A control image is missing. You were not charged."
        )
        return None

    def complete() -> None:
        try:
            images = pending.result(timeout=settings.ENGINE_POSTPROCESS_TIMEOUT_S)
        except EngineError as exc:
            _fail_engine(job, exc)
            return
        _keep_outputs(job, images, spec.steps, started)

    return complete


def _keep_outputs(job: RenderJob, images: list[RenderedImage], steps: int, started: float) -> None:
    """Screens, stores and succeeds the job (or fails it with the reason)."""
    images = _screen_outputs(images)
    if not images:
        _fail_running(
            job,
            code="unsafe_output",
            message=("Every image was withheld by the content-safety check. You were not charged."),
        )
        return
    try:
        _store_outputs(job, images, steps)
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


def _run_render(job: RenderJob) -> None:
    """Renders and finishes one job on this thread."""
    complete = _start_render(job)
    if complete is not None:
        complete()


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


def execute_job(job: RenderJob, *, pipelined: bool = False) -> None:
    """Runs a job this worker has claimed, renewing its lease until it is done.

    ``pipelined``: a render job's finishing (post-processed images, screening, storage) is
    handed to `FinishingPipeline` once its denoising is done, and this returns so the worker
    can claim and denoise the next job meanwhile; the lease is kept until it is finished.
    """
    keeper = dispatch.LeaseKeeper(job).__enter__()
    completion: Completion | None = None
    try:
        run = registry.get(job.kind).run
        if run is not None:
            _run_own(job, run)
        else:
            completion = _start_render(job)
    except Exception:
        logger.exception("job %s crashed", job.id)
        _fail_crashed(job)
    if completion is None:
        keeper.__exit__(None, None, None)
        return
    finishing.run(
        completion,
        jobs=[job],
        keepers=[keeper],
        on_crash=_fail_crashed,
        background=pipelined,
        depth=settings.WORKER_PIPELINE_DEPTH,
    )


def _start_render_batch(jobs: list[RenderJob]) -> Completion | None:
    """Renders compatible jobs of different owners in one forward pass (per-sample avatar
    adapters) and returns what finishes them, each under its own lease. If the batch fails as
    a whole, each job is run on its own now (None returned), so one bad job cannot fail the
    others."""
    started = time.monotonic()
    try:
        specs = [RenderSpec.from_dict(resolve_asset_refs(job.spec)) for job in jobs]
        options = [_render_options(job, spec) for job, spec in zip(jobs, specs, strict=True)]
        ids = [job.pk for job in jobs]

        def on_progress(step: int, total: int) -> None:
            RenderJob.objects.filter(pk__in=ids, status=JobStatus.RUNNING).update(
                progress_step=step, progress_total=total
            )
            jobs_changed(ids)

        pending = get_engine().start_render_batch(
            specs,
            avatar_source=providers.load_avatar_lora,
            identity_source=providers.load_identity,
            on_progress=on_progress,
            reference_embeddings=[o.get("reference_embedding") for o in options],
            labels=[o.get("label") for o in options],
        )
    except Exception:
        logger.warning("batch of %d failed; running its jobs one by one", len(jobs), exc_info=True)
        for job in jobs:
            _run_render(job)
        return None

    def complete() -> None:
        try:
            results = pending.results(timeout=settings.ENGINE_POSTPROCESS_TIMEOUT_S)
        except EngineError as exc:
            for job in jobs:
                _fail_engine(job, exc)
            return
        for job, images, spec in zip(jobs, results, specs, strict=True):
            _keep_outputs(job, images, spec.steps, started)
        logger.info("batch of %d jobs done (%s)", len(jobs), ", ".join(str(j.pk) for j in jobs))

    return complete


def execute_batch(jobs: list[RenderJob], *, pipelined: bool = False) -> None:
    if len(jobs) == 1:
        execute_job(jobs[0], pipelined=pipelined)
        return
    keepers = [dispatch.LeaseKeeper(job).__enter__() for job in jobs]
    completion: Completion | None = None
    try:
        completion = _start_render_batch(jobs)
    except Exception:
        logger.exception("batch crashed")
        for job in jobs:
            _fail_crashed(job)
    if completion is None:
        for keeper in keepers:
            keeper.__exit__(None, None, None)
        return
    finishing.run(
        completion,
        jobs=jobs,
        keepers=keepers,
        on_crash=_fail_crashed,
        background=pipelined,
        depth=settings.WORKER_PIPELINE_DEPTH,
    )


def dispatch_once(*, lane: str, worker: str) -> RenderJob | None:
    """Claims the next job of `lane` by the fair policy (with compatible jobs to batch, on the
    render lane) and runs it. Returns the first job, or None if none waited."""
    dispatch.heartbeat(worker=worker, lanes=lane)
    limit = settings.RENDER_BATCH_LIMIT if lane == Lane.RENDER else 1
    # The hand-off waits while WORKER_PIPELINE_DEPTH jobs are finishing (jobs.pipelining), so
    # the queue keeps the waiting work (and its fair order) rather than this worker's memory.
    pipelined = lane == Lane.RENDER and settings.WORKER_PIPELINE_DEPTH > 0
    jobs = dispatch.claim_batch(lane=lane, worker=worker, limit=max(limit, 1))
    if not jobs:
        return None
    execute_batch(jobs, pipelined=pipelined)
    dispatch.heartbeat(worker=worker, lanes=lane)
    return jobs[0]


def render_job_execute(*, job_id: uuid.UUID | str, worker: str = "direct") -> None:
    """Runs one specific job if it is still queued (a no-op otherwise)."""
    job = dispatch.claim_job(job_id=job_id, worker=worker)
    if job is not None:
        execute_job(job)
