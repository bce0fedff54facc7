"""Reads for avatars: queue positions and honest ETAs, per tier, until the avatar is ready."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jobs.models import JobStatus, RenderJob
from jobs.selectors import QueueEstimate, average_seconds, queue_estimate

from .kinds import INTAKE, TRAINING
from .models import IN_FLIGHT, Avatar, AvatarStatus, LoraStatus


def avatar_waiting_job(*, avatar: Avatar) -> RenderJob | None:
    """The avatar's own job waiting in the queue (intake, then training), if any; never one
    of its generations."""
    return (
        avatar.jobs.filter(status=JobStatus.QUEUED, kind__in=(INTAKE, TRAINING))
        .order_by("created_at")
        .first()
    )


# The name the event stream and older callers use.
avatar_training_job = avatar_waiting_job


@dataclass(frozen=True)
class StageEstimates:
    """Seconds until each tier should be ready (None: ready, failed or not coming)."""

    instant: float | None
    lora: float | None


def _intake_remaining(avatar: Avatar) -> float:
    """Seconds until the intake job is done: its wait (when queued) plus one intake run."""
    per_intake = average_seconds(INTAKE)
    if avatar.status == AvatarStatus.PREPARING:
        return per_intake / 2  # running: no progress steps, count half a run
    job = avatar.jobs.filter(status=JobStatus.QUEUED, kind=INTAKE).first()
    estimate = queue_estimate(job) if job is not None else None
    return (estimate.eta_seconds if estimate else 0.0) + per_intake


def _lora_remaining(avatar: Avatar, *, after_intake: float) -> float:
    per_training = average_seconds(TRAINING)
    if avatar.lora_status == LoraStatus.TRAINING:
        done = avatar.progress_step / avatar.progress_total if avatar.progress_total else 0.0
        return per_training * (1 - done)
    if avatar.lora_status == LoraStatus.QUEUED:
        job = avatar.jobs.filter(status=JobStatus.QUEUED, kind=TRAINING).first()
        estimate = queue_estimate(job) if job is not None else None
        return (estimate.eta_seconds if estimate else 0.0) + per_training
    # Waiting for intake: the training queue's wait is not known yet; count one run after it.
    return after_intake + per_training


def avatar_stage_estimates(*, avatar: Avatar) -> StageEstimates:
    intake = (
        _intake_remaining(avatar)
        if avatar.status in (AvatarStatus.QUEUED, AvatarStatus.PREPARING)
        else 0.0
    )
    instant = None
    if not avatar.has_instant_tier and avatar.status in (
        AvatarStatus.QUEUED,
        AvatarStatus.PREPARING,
    ):
        instant = round(intake, 1)
    lora = None
    lora_coming = avatar.lora_status in (LoraStatus.WAITING, LoraStatus.QUEUED, LoraStatus.TRAINING)
    if lora_coming and avatar.status != AvatarStatus.FAILED:
        lora = round(_lora_remaining(avatar, after_intake=intake), 1)
    return StageEstimates(instant=instant, lora=lora)


def avatar_training_eta() -> Callable[[QueueEstimate], QueueEstimate]:
    """Maps a queued avatar job's estimate to the avatar's: the wait plus one run of it."""
    per_avatar = average_seconds(TRAINING)
    return lambda estimate: QueueEstimate(
        estimate.position, round(estimate.eta_seconds + per_avatar, 1)
    )


def avatar_job_eta(job: RenderJob) -> Callable[[QueueEstimate], QueueEstimate]:
    """The wait of the avatar's queued job plus one run of its kind."""
    per_run = average_seconds(job.kind)
    return lambda estimate: QueueEstimate(
        estimate.position, round(estimate.eta_seconds + per_run, 1)
    )


def avatar_queue_estimate(*, avatar: Avatar) -> QueueEstimate | None:
    """Position of the avatar's waiting job under the fair policy (0 = running now), and
    seconds until every requested tier should be ready."""
    if avatar.status not in IN_FLIGHT:
        return None
    stages = avatar_stage_estimates(avatar=avatar)
    eta = max(value for value in (stages.instant, stages.lora, 0.0) if value is not None)
    job = avatar_waiting_job(avatar=avatar)
    estimate = queue_estimate(job) if job is not None else None
    return QueueEstimate(estimate.position if estimate else 0, round(eta, 1))
