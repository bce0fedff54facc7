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
    ahead = Avatar.objects.filter(status__in=IN_FLIGHT, created_at__lt=avatar.created_at).count()
    return QueueEstimate(ahead, round(per_avatar * (ahead + 1), 1))
