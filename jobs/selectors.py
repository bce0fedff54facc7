"""Reads over the queue: a job's position and ETA under the fair policy (the one place that
computes them), and rolling run times."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F

from .dispatch import live_workers, owner_order
from .models import JobStatus, RenderJob


@dataclass(frozen=True)
class QueueEstimate:
    position: int  # jobs that will start before this one
    eta_seconds: float


def average_seconds(kind: str) -> float:
    """Rolling mean run time of the last 50 finished jobs of a kind (cached for 10 s)."""
    key = f"job-seconds:{kind}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    recent = RenderJob.objects.filter(
        kind=kind, status=JobStatus.SUCCEEDED, started_at__isnull=False
    ).order_by("-finished_at")[:50]
    mean = RenderJob.objects.filter(pk__in=list(recent.values_list("pk", flat=True))).aggregate(
        mean=Avg(duration)
    )["mean"]
    seconds = mean.total_seconds() if mean else settings.JOB_DEFAULT_SECONDS.get(kind, 10.0)
    cache.set(key, seconds, 10)
    return seconds


def queue_estimate(job: RenderJob) -> QueueEstimate | None:
    """Where `job` stands under the fair policy, and when it should start.

    Ahead of it: every queued job of a higher class; in its class, its owner's older jobs, and
    from each other owner at most as many jobs as rounds it waits (one more for owners whose
    turn comes before its owner's).
    """
    if job.status != JobStatus.QUEUED:
        return None
    queued = RenderJob.objects.filter(lane=job.lane, status=JobStatus.QUEUED)
    higher = queued.filter(priority__lt=job.priority).count()
    mine_ahead = queued.filter(
        owner_key=job.owner_key, priority=job.priority, created_at__lt=job.created_at
    ).count()
    # The counts below are separate reads: an owner whose first job arrived in between is not
    # in `order` yet, and counts as after this job's owner (its turn comes last).
    turn_of = {
        owner: turn for turn, owner in enumerate(owner_order(job.lane, job.priority, queued))
    }
    my_turn = turn_of.get(job.owner_key, len(turn_of))
    per_owner = dict(
        queued.filter(priority=job.priority)
        .exclude(owner_key=job.owner_key)
        .values_list("owner_key")
        .annotate(n=Count("pk"))
        .values_list("owner_key", "n")
    )
    others = sum(
        min(n, mine_ahead + (1 if turn_of.get(owner, len(turn_of)) < my_turn else 0))
        for owner, n in per_owner.items()
    )
    position = higher + mine_ahead + others
    running = RenderJob.objects.filter(lane=job.lane, status=JobStatus.RUNNING).count()
    workers = max(live_workers(job.lane), 1)
    per_job = average_seconds(job.kind)
    eta = (position + running) / workers * per_job
    return QueueEstimate(position=position, eta_seconds=round(eta, 1))
