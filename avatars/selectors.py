"""Reads for avatars: queue position and an honest ETA."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Avg, DurationField, ExpressionWrapper, F

from .models import IN_FLIGHT, Avatar, AvatarStatus

DEFAULT_TRAINING_SECONDS = 60.0


@dataclass(frozen=True)
class QueueEstimate:
    position: int  # 0 = being trained now; N = N avatars train before this one
    eta_seconds: float | None


def recent_training_seconds() -> float:
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    recent = (Avatar.objects.filter(status=AvatarStatus.READY, started_at__isnull=False,
                                    finished_at__isnull=False)
              .order_by("-finished_at")[:20])
    average = Avatar.objects.filter(pk__in=recent.values("pk")).aggregate(
        average=Avg(duration))["average"]
    return average.total_seconds() if average else DEFAULT_TRAINING_SECONDS


def avatar_queue_estimate(*, avatar: Avatar) -> QueueEstimate | None:
    if avatar.status not in IN_FLIGHT:
        return None
    per_avatar = recent_training_seconds()
    if avatar.status != AvatarStatus.QUEUED:
        done = avatar.progress_step / avatar.progress_total if avatar.progress_total else 0.0
        return QueueEstimate(0, round(per_avatar * (1 - done), 1))
    from rendering.dispatch import queue_estimate
    from rendering.models import JobStatus

    job = avatar.jobs.filter(status=JobStatus.QUEUED).first()
    estimate = queue_estimate(job) if job is not None else None
    if estimate is None:
        return QueueEstimate(0, round(per_avatar, 1))
    return QueueEstimate(estimate.position, round(estimate.eta_seconds + per_avatar, 1))
