"""Reads over the queue: a job's position and ETA under the fair policy (the one place that
computes them, from a per-lane snapshot shared by every reader), and rolling run times."""

from __future__ import annotations

import logging
import threading
import time
from array import array
from bisect import bisect_right
from dataclasses import dataclass, replace
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F

from .dispatch import live_workers
from .models import JobStatus, OwnerTurn, RenderJob
from .turns import NEVER_SERVED

logger = logging.getLogger(__name__)


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


# Owners with at most this many older jobs of their own get their position from precomputed
# tables; beyond it, one pass over the owners ahead of them.
_TABLED_ROUNDS = 8


@dataclass(frozen=True)
class ClassSnapshot:
    """One priority class of a lane: its queued jobs per owner, each owner's turn, and tables
    that make a position O(log owners) instead of a pass over every owner."""

    total: int
    counts: dict[str, int]
    turn_of: dict[str, int]
    # Every owner's count, ascending, and their running sums (prefix[i] = sum of the first i).
    sorted_counts: array
    prefix: array
    # Counts in turn order; above[k][t]: owners among the first t in turn order with > k jobs.
    order_counts: array
    above: list[array]
    # When each owner was last served (POSIX seconds), in turn order: never decreasing.
    served_order: array

    def turn_after(self, last_served: datetime | None) -> int:
        """The turn of an owner the snapshot does not know (its first job came after it),
        from when it was last served (None: never): after every owner served before it and
        every never-served one (their jobs are older), before everyone served since."""
        at = (last_served or NEVER_SERVED).timestamp()
        return bisect_right(self.served_order, at)

    @classmethod
    def build(
        cls, counts: dict[str, int], turn_of: dict[str, int], served_order: array
    ) -> ClassSnapshot:
        ascending = array("q", sorted(counts.values()))
        prefix = array("q", [0])
        for n in ascending:
            prefix.append(prefix[-1] + n)
        order = array("q", [counts[owner] for owner in sorted(turn_of, key=turn_of.__getitem__)])
        above = []
        for k in range(_TABLED_ROUNDS):
            running = array("q", [0])
            for n in order:
                running.append(running[-1] + (n > k))
            above.append(running)
        return cls(
            total=prefix[-1],
            counts=counts,
            turn_of=turn_of,
            sorted_counts=ascending,
            prefix=prefix,
            order_counts=order,
            above=above,
            served_order=served_order,
        )

    def jobs_ahead_from_others(self, owner: str, rounds: int, turn: int | None = None) -> int:
        """Jobs of other owners that start before `owner`'s job that has `rounds` older jobs
        of its own: from each other owner, as many as `rounds` (one more if its turn comes
        before `owner`'s), and never more than it has. `turn`: the owner's turn if the
        snapshot does not know it (`turn_after`); without one, after everyone."""
        my_turn = self.turn_of.get(owner, len(self.turn_of) if turn is None else turn)
        split = bisect_right(self.sorted_counts, rounds)
        capped = self.prefix[split] + rounds * (len(self.sorted_counts) - split)
        capped -= min(self.counts.get(owner, 0), rounds)  # not the owner's own
        if rounds < _TABLED_ROUNDS:
            earlier = self.above[rounds][my_turn]
        else:
            earlier = sum(1 for n in self.order_counts[:my_turn] if n > rounds)
        return capped + earlier


_BUILD_SHARE = 10


@dataclass(frozen=True)
class LaneSnapshot:
    """What every position estimate of a lane needs, read once per tick and shared."""

    built_at: float
    classes: dict[int, ClassSnapshot]
    running: int
    workers: int
    build_seconds: float = 0.0

    def lifetime(self, tick: float) -> float:
        """How long this snapshot stays fresh: a tick, or ten times what building it took,
        so that rebuilding a very long queue's snapshot never takes more than a tenth of one
        process's time (positions a few seconds old, at 100,000 jobs waiting)."""
        return max(tick, self.build_seconds * _BUILD_SHARE)


_local_snapshots: dict[str, LaneSnapshot] = {}
_local_lock = threading.Lock()


def _build_lane_snapshot(lane: str) -> LaneSnapshot:
    started = time.perf_counter()
    snapshot = _read_lane_snapshot(lane)
    return replace(snapshot, build_seconds=time.perf_counter() - started)


def _read_lane_snapshot(lane: str) -> LaneSnapshot:
    """Two reads: queued jobs counted per class and owner (an index-only scan of the
    `job_queued_owner_head` index), and the owners' turn order from the turn index."""
    counts: dict[int, dict[str, int]] = {}
    for priority, owner, n in (
        RenderJob.objects.filter(lane=lane, status=JobStatus.QUEUED)
        .values_list("priority", "owner_key")
        .annotate(n=Count("pk"))
        .values_list("priority", "owner_key", "n")
    ):
        counts.setdefault(priority, {})[owner] = n
    turn_of: dict[int, dict[str, int]] = {priority: {} for priority in counts}
    served: dict[int, array] = {priority: array("d") for priority in counts}
    for priority, owner, last_served in (
        OwnerTurn.objects.filter(lane=lane, head_at__isnull=False)
        .order_by("priority", "last_served_at", "head_at")
        .values_list("priority", "owner_key", "last_served_at")
    ):
        if owner in counts.get(priority, ()):
            turn_of[priority][owner] = len(turn_of[priority])
            served[priority].append(last_served.timestamp())
    for priority, per_class in counts.items():
        # A job queued between the two reads, or a head the sweeper has yet to reconcile.
        for owner in sorted(per_class.keys() - turn_of[priority].keys()):
            turn_of[priority][owner] = len(turn_of[priority])
            served[priority].append(float("inf"))
    classes = {
        priority: ClassSnapshot.build(per_class, turn_of[priority], served[priority])
        for priority, per_class in counts.items()
    }
    return LaneSnapshot(
        built_at=time.time(),
        classes=classes,
        running=RenderJob.objects.filter(lane=lane, status=JobStatus.RUNNING).count(),
        workers=max(live_workers(lane), 1),
    )


# A stale snapshot is still served (while one process rebuilds it in the background) for up
# to this many ticks; older than that, or none at all, the reader rebuilds it itself.
_STALE_TICKS = 10
_refreshing: set[str] = set()


def _store(lane: str, snapshot: LaneSnapshot, tick: float) -> None:
    timeout = max(1, int(snapshot.lifetime(tick) * _STALE_TICKS))
    cache.set(f"queue-snapshot:{lane}", snapshot, timeout=timeout)
    with _local_lock:
        _local_snapshots[lane] = snapshot


def _adopt(lane: str, snapshot: object) -> LaneSnapshot | None:
    """Keeps a snapshot read from the cache in this process if it is newer than ours."""
    if not isinstance(snapshot, LaneSnapshot):
        return _local_snapshots.get(lane)
    with _local_lock:
        local = _local_snapshots.get(lane)
        if local is None or snapshot.built_at > local.built_at:
            _local_snapshots[lane] = local = snapshot
    return local


def _refresh(lane: str, tick: float) -> None:
    """Takes the fleet's newer snapshot from the cache, or rebuilds it if that one is stale
    too and no other process is rebuilding it (a cache lock)."""
    current = _adopt(lane, cache.get(f"queue-snapshot:{lane}"))
    if current is not None and time.time() - current.built_at < current.lifetime(tick):
        return
    lock = f"queue-snapshot-lock:{lane}"
    if not cache.add(lock, 1, timeout=max(1, int(tick * 5))):
        return
    try:
        _store(lane, _build_lane_snapshot(lane), tick)
    finally:
        cache.delete(lock)


def _refresh_in_background(lane: str, tick: float) -> None:
    """`_refresh` off the request path, one thread per process and lane at a time."""
    with _local_lock:
        if lane in _refreshing:
            return
        _refreshing.add(lane)

    def run() -> None:
        try:
            _refresh(lane, tick)
        except Exception:
            logger.exception("queue snapshot of lane %s: refresh failed", lane)
        finally:
            with _local_lock:
                _refreshing.discard(lane)
            connection.close()

    threading.Thread(target=run, daemon=True, name=f"queue-snapshot-{lane}").start()


def lane_snapshot(lane: str) -> LaneSnapshot:
    """The lane's snapshot, kept in this process and shared between processes through the
    cache (Redis in production). Once older than its lifetime (QUEUE_POSITION_TICK_S, or ten
    times what it took to build for a very long queue), a background thread
    fetches the fleet's newer one or, if none, rebuilds it (one process at a time), while
    readers keep the one they have: a queue of 100,000 jobs costs one grouped read per lane
    per tick, off the request path, however many people are watching their position. Only a
    process with no snapshot (or one over _STALE_TICKS old) reads or builds it inline."""
    tick = settings.QUEUE_POSITION_TICK_S
    if tick <= 0:
        return _build_lane_snapshot(lane)
    local = _local_snapshots.get(lane)
    if local is not None:
        age = time.time() - local.built_at
        if age < local.lifetime(tick):
            return local
        if age < local.lifetime(tick) * _STALE_TICKS:
            _refresh_in_background(lane, tick)
            return local
    shared = _adopt(lane, cache.get(f"queue-snapshot:{lane}"))
    if shared is not None:
        age = time.time() - shared.built_at
        if age < shared.lifetime(tick) * _STALE_TICKS:
            if age >= shared.lifetime(tick):
                _refresh_in_background(lane, tick)
            return shared
    built = _build_lane_snapshot(lane)
    _store(lane, built, tick)
    return built


def queue_estimate(job: RenderJob) -> QueueEstimate | None:
    """Where `job` stands under the fair policy, and when it should start.

    Ahead of it: every queued job of a higher class; in its class, its owner's older jobs, and
    from each other owner at most as many jobs as rounds it waits (one more for owners whose
    turn comes before its owner's). Everything but the owner's own older jobs (one indexed
    count) comes from the lane's shared snapshot, so it may be as old as its lifetime.
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
    mine = snapshot.classes.get(job.priority)
    others = 0
    if mine is not None:
        turn = None
        if job.owner_key not in mine.turn_of:
            # Its first job came after the snapshot: place it by when it was last served.
            last_served = (
                OwnerTurn.objects.filter(
                    lane=job.lane, priority=job.priority, owner_key=job.owner_key
                )
                .values_list("last_served_at", flat=True)
                .first()
            )
            turn = mine.turn_after(last_served)
        others = mine.jobs_ahead_from_others(job.owner_key, mine_ahead, turn)
    position = higher + mine_ahead + others
    per_job = average_seconds(job.kind)
    eta = (position + snapshot.running) / snapshot.workers * per_job
    return QueueEstimate(position=position, eta_seconds=round(eta, 1))
