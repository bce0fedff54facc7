"""Reads for avatars: queue position and an honest ETA (until the avatar is ready)."""

from __future__ import annotations

from collections.abc import Callable

from jobs.models import JobStatus, RenderJob
from jobs.selectors import QueueEstimate, average_seconds, queue_estimate

from .kinds import TRAINING
from .models import IN_FLIGHT, Avatar, AvatarStatus


def avatar_training_job(*, avatar: Avatar) -> RenderJob | None:
    """The avatar's training job while it waits in the queue."""
    return avatar.jobs.filter(status=JobStatus.QUEUED).first()


def avatar_training_eta() -> Callable[[QueueEstimate], QueueEstimate]:
    """Maps the queued training job's estimate to the avatar's: the wait plus one training."""
    per_avatar = average_seconds(TRAINING)
    return lambda estimate: QueueEstimate(
        estimate.position, round(estimate.eta_seconds + per_avatar, 1)
    )


def avatar_queue_estimate(*, avatar: Avatar) -> QueueEstimate | None:
    """Position of the avatar's training job under the fair policy (0 = training now), and
    seconds until the avatar should be ready: the wait plus one training run."""
    if avatar.status not in IN_FLIGHT:
        return None
    per_avatar = average_seconds(TRAINING)
    if avatar.status != AvatarStatus.QUEUED:
        done = avatar.progress_step / avatar.progress_total if avatar.progress_total else 0.0
        return QueueEstimate(0, round(per_avatar * (1 - done), 1))
    job = avatar_training_job(avatar=avatar)
    estimate = queue_estimate(job) if job is not None else None
    if estimate is None:
        return QueueEstimate(0, round(per_avatar, 1))
    return QueueEstimate(estimate.position, round(estimate.eta_seconds + per_avatar, 1))
