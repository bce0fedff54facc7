"""Reads over the queue: a job's position and ETA under the fair policy (the one place that
computes them, from a per-lane snapshot shared by every reader), and rolling run times."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Min

from .dispatch import live_workers, turn_order
from .models import JobStatus, OwnerTurn, RenderJob


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


@dataclass(frozen=True)
class ClassSnapshot:
    """One priority class of a lane: its queued jobs per owner, and each owner's turn."""

    total: int
    counts: dict[str, int]
    turn_of: dict[str, int]


@dataclass(frozen=True)
class LaneSnapshot:
    """What every position estimate of a lane needs, read once per tick and shared."""

    built_at: float
    classes: dict[int, ClassSnapshot]
    running: int
    workers: int


_local_snapshots: dict[str, LaneSnapshot] = {}
_local_lock = threading.Lock()


def _build_lane_snapshot(lane: str) -> LaneSnapshot:
    queued = RenderJob.objects.filter(lane=lane, status=JobStatus.QUEUED)
    oldest: dict[int, dict[str, datetime]] = {}
    counts: dict[int, dict[str, int]] = {}
    for priority, owner, n, first in (
        queued.values_list("priority", "owner_key")
        .annotate(n=Count("pk"), first=Min("created_at"))
        .values_list("priority", "owner_key", "n", "first")
    ):
        counts.setdefault(priority, {})[owner] = n
        oldest.setdefault(priority, {})[owner] = first
    served: dict[int, dict[str, datetime]] = {}
    owners = {owner for per_class in counts.values() for owner in per_class}
    for priority, owner, at in OwnerTurn.objects.filter(
        lane=lane, owner_key__in=list(owners)
    ).values_list("priority", "owner_key", "last_served_at"):
        served.setdefault(priority, {})[owner] = at
    classes = {
        priority: ClassSnapshot(
            total=sum(per_class.values()),
            counts=per_class,
            turn_of={
                owner: turn
                for turn, owner in enumerate(turn_order(oldest[priority], served.get(priority, {})))
            },
        )
        for priority, per_class in counts.items()
    }
    return LaneSnapshot(
        built_at=time.time(),
        classes=classes,
        running=RenderJob.objects.filter(lane=lane, status=JobStatus.RUNNING).count(),
        workers=max(live_workers(lane), 1),
    )


def lane_snapshot(lane: str) -> LaneSnapshot:
    """The lane's snapshot, at most QUEUE_POSITION_TICK_S old: kept in this process, shared
    between processes through the cache (Redis in production), rebuilt by whoever finds it
    stale. So a queue of 100,000 jobs costs one grouped read per lane per tick, however many
    people are watching their position."""
    tick = settings.QUEUE_POSITION_TICK_S
    if tick <= 0:
        return _build_lane_snapshot(lane)
    now = time.time()
    local = _local_snapshots.get(lane)
    if local is not None and now - local.built_at < tick:
        return local
    key = f"queue-snapshot:{lane}"
    shared = cache.get(key)
    if not isinstance(shared, LaneSnapshot) or now - shared.built_at >= tick:
        shared = _build_lane_snapshot(lane)
        cache.set(key, shared, timeout=max(1, int(tick * 2)))
    with _local_lock:
        _local_snapshots[lane] = shared
    return shared


def queue_estimate(job: RenderJob) -> QueueEstimate | None:
    """Where `job` stands under the fair policy, and when it should start.

    Ahead of it: every queued job of a higher class; in its class, its owner's older jobs, and
    from each other owner at most as many jobs as rounds it waits (one more for owners whose
    turn comes before its owner's). Everything but the owner's own older jobs (one indexed
    count) comes from the lane's shared snapshot, so it may be up to QUEUE_POSITION_TICK_S old.
    """
    if job.status != JobStatus.QUEUED:
        return None
    snapshot = lane_snapshot(job.lane)
    higher = sum(c.total for p, c in snapshot.classes.items() if p < job.priority)
    mine_ahead = RenderJob.objects.filter(
        lane=job.lane,
        status=JobStatus.QUEUED,
        owner_key=job.owner_key,
        priority=job.priority,
        created_at__lt=job.created_at,
    ).count()
    others = 0
    mine = snapshot.classes.get(job.priority)
    if mine is not None:
        # An owner whose first job arrived after the snapshot is not in it: after everyone.
        my_turn = mine.turn_of.get(job.owner_key, len(mine.turn_of))
        for owner, n in mine.counts.items():
            if owner != job.owner_key:
                before_me = mine.turn_of[owner] < my_turn
                others += min(n, mine_ahead + (1 if before_me else 0))
    position = higher + mine_ahead + others
    per_job = average_seconds(job.kind)
    eta = (position + snapshot.running) / snapshot.workers * per_job
    return QueueEstimate(position=position, eta_seconds=round(eta, 1))
