"""Queue positions for open event streams, without a query per stream per tick.

A queued job's position moves with every claim in its lane, so it is not published per job.
Each web process keeps one `PositionHub` per event loop instead: while streams watch queued
jobs, it reads each watched lane's shared snapshot (`jobs.selectors.lane_snapshot`, rebuilt at
most once per QUEUE_POSITION_TICK_S by whichever process finds it stale) once per tick and
recomputes every watched job's estimate from it (`estimate_from_snapshot`, the arithmetic of
`queue_estimate`). The only query of a tick is for the watched jobs whose owner has more than
one job queued in their class: how many of the owner's jobs are ahead of each, all at once.
A stream is poked only when its position changed; it then sends an event without reading.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import random
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce

from workstation.api.sse import stream_executor
from workstation.pubsub import Listener

from .models import JobStatus, RenderJob
from .selectors import LaneSnapshot, QueueEstimate, average_seconds, lane_snapshot

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The hub never ticks faster than this, even when QUEUE_POSITION_TICK_S is 0 (tests).
MIN_TICK_S = 0.1
# Streams poked per turn of the event loop.
POKE_BATCH = 50


@dataclass(frozen=True)
class WatchedJob:
    """What a position needs, taken from the row when the stream started (none of it changes
    while the job waits)."""

    id: uuid.UUID
    lane: str
    priority: int
    owner_key: str
    created_at: datetime
    kind: str


class _ClassIndex:
    """Per snapshot: the jobs queued in classes above each priority, summed once per tick."""

    def __init__(self, snapshot: LaneSnapshot):
        self.snapshot = snapshot
        self.higher: dict[int, int] = {}

    def jobs_in_higher_classes(self, priority: int) -> int:
        if priority not in self.higher:
            self.higher[priority] = sum(
                c.total for p, c in self.snapshot.classes.items() if p < priority
            )
        return self.higher[priority]


def estimate_from_snapshot(
    *,
    snapshot: LaneSnapshot,
    priority: int,
    owner_key: str,
    mine_ahead: int,
    per_job: float,
    index: _ClassIndex | None = None,
) -> QueueEstimate:
    """`jobs.selectors.queue_estimate` for a job whose owner has `mine_ahead` older jobs queued
    in its class, without its count query (tests/unit/jobs/test_streams.py checks the two
    agree)."""
    index = index if index is not None else _ClassIndex(snapshot)
    higher = index.jobs_in_higher_classes(priority)
    mine = snapshot.classes.get(priority)
    # An owner whose first job arrived after the snapshot is not in it: after everyone.
    others = mine.jobs_ahead_from_others(owner_key, mine_ahead) if mine else 0
    position = higher + mine_ahead + others
    eta = (position + snapshot.running) / snapshot.workers * per_job
    return QueueEstimate(position=position, eta_seconds=round(eta, 1))


def _owner_jobs_ahead(watched: list[WatchedJob]) -> dict[uuid.UUID, int]:
    """For each watched job: its owner's older jobs still queued in its class (one query)."""
    older = (
        RenderJob.objects.filter(
            lane=OuterRef("lane"),
            status=JobStatus.QUEUED,
            owner_key=OuterRef("owner_key"),
            priority=OuterRef("priority"),
            created_at__lt=OuterRef("created_at"),
        )
        .order_by()
        .values("owner_key")
        .annotate(n=Count("pk"))
        .values("n")
    )
    rows = (
        RenderJob.objects.filter(pk__in=[w.id for w in watched])
        .annotate(ahead=Coalesce(Subquery(older), 0))
        .values_list("pk", "ahead")
    )
    return dict(rows)


def estimate_watched(watched: list[WatchedJob]) -> list[QueueEstimate]:
    """Estimates for many queued jobs: one snapshot per lane (shared through the cache), and at
    most one query, for the jobs whose owner has several queued."""
    snapshots = {lane: lane_snapshot(lane) for lane in {w.lane for w in watched}}
    per_kind = {kind: average_seconds(kind) for kind in {w.kind for w in watched}}

    def owner_queued(w: WatchedJob) -> int:
        mine = snapshots[w.lane].classes.get(w.priority)
        return mine.counts.get(w.owner_key, 0) if mine is not None else 0

    several = [w for w in watched if owner_queued(w) > 1]
    ahead = _owner_jobs_ahead(several) if several else {}
    indexes = {lane: _ClassIndex(snapshot) for lane, snapshot in snapshots.items()}
    return [
        estimate_from_snapshot(
            snapshot=snapshots[w.lane],
            priority=w.priority,
            owner_key=w.owner_key,
            mine_ahead=ahead.get(w.id, 0),
            per_job=per_kind[w.kind],
            index=indexes[w.lane],
        )
        for w in watched
    ]


class PositionWatch:
    """A stream's overlay (`workstation.api.sse.Overlay`) for one job: while the job is queued,
    the hub's ticks replace the body's `queue` with the latest estimate (`adjust` maps it, e.g.
    an avatar adds its training time), and poke the stream when the position moved."""

    def __init__(
        self,
        job: RenderJob,
        *,
        adjust: Callable[[QueueEstimate], QueueEstimate] | None = None,
    ):
        self.job = WatchedJob(
            id=job.pk,
            lane=job.lane,
            priority=job.priority,
            owner_key=job.owner_key,
            created_at=job.created_at,
            kind=job.kind,
        )
        self.adjust = adjust
        self.queued = job.status == JobStatus.QUEUED
        self.estimate: QueueEstimate | None = None
        self._shown: int | None = None  # the position in the body the stream holds
        self._next_poke = time.monotonic()  # a position event is due from then on
        self._listener: Listener | None = None
        self._hub: PositionHub | None = None

    def start(self, listener: Listener) -> None:
        self._listener = listener
        self._hub = PositionHub.for_running_loop()
        self._hub.add(self)

    def observe(self, body: dict[str, Any]) -> None:
        """A fresh read: its position was computed just now; ticks take over from it."""
        queue = body.get("queue")
        self.queued = body.get("status") == JobStatus.QUEUED and queue is not None
        self._shown = queue["position"] if queue else None
        self.estimate = None

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.queued or self.estimate is None or body.get("queue") is None:
            return body
        estimate = self.adjust(self.estimate) if self.adjust else self.estimate
        self._shown = estimate.position
        return {
            **body,
            "queue": {"position": estimate.position, "eta_seconds": estimate.eta_seconds},
        }

    def stop(self) -> None:
        if self._hub is not None:
            self._hub.remove(self)
            self._hub = None

    def tick(self, estimate: QueueEstimate) -> bool:
        """On the loop: the hub's latest estimate. True if the stream should be poked: its
        position moved, and SSE_POSITION_EVERY_S (give or take half, so streams drift apart)
        has passed since its last one, or it reached the front. When the queue moves, every
        watcher's position moves with it; thousands of streams each sending an event every
        tick would cost the web process more than the people watching gain."""
        if not self.queued:
            return False
        self.estimate = estimate
        if estimate.position == self._shown or self._listener is None:
            return False
        now = time.monotonic()
        if estimate.position != 0 and now < self._next_poke:
            return False
        self._next_poke = now + settings.SSE_POSITION_EVERY_S * random.uniform(0.5, 1.5)
        return True

    def poke(self) -> None:
        if self._listener is not None:
            self._listener.poke()


class PositionHub:
    """One per event loop: ticks while any stream watches a queued job."""

    _hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PositionHub] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, executor: Executor | None):
        self.watches: set[PositionWatch] = set()
        self.ticks = 0
        self._executor = executor
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_running_loop(cls) -> PositionHub:
        loop = asyncio.get_running_loop()
        hub = cls._hubs.get(loop)
        if hub is None:
            hub = cls._hubs[loop] = cls(stream_executor())
        return hub

    def add(self, watch: PositionWatch) -> None:
        self.watches.add(watch)
        if self._task is None or self._task.done():
            loop = asyncio.get_running_loop()
            # Under the ASGI server the hub outlives the request that started it: a context of
            # its own. Driven from a sync caller (tests), it keeps the caller's thread.
            context = contextvars.Context() if self._executor is not None else None
            self._task = loop.create_task(self._run(), context=context)

    def remove(self, watch: PositionWatch) -> None:
        self.watches.discard(watch)
        if not self.watches and self._task is not None:
            self._task.cancel()
            self._task = None

    def _run_sync(self, fn: Callable[[], T]) -> Awaitable[T]:
        if self._executor is not None:
            return asyncio.get_running_loop().run_in_executor(self._executor, fn)
        return sync_to_async(fn, thread_sensitive=True)()

    async def _run(self) -> None:
        spent = 0.0
        while True:
            interval = max(settings.QUEUE_POSITION_TICK_S, MIN_TICK_S)
            await asyncio.sleep(max(interval - spent, MIN_TICK_S))
            spent = 0.0
            watches = [w for w in self.watches if w.queued]
            if not watches:
                continue
            jobs = [w.job for w in watches]
            try:
                compute = _estimate_safely if self._executor is not None else estimate_watched
                estimates = await self._run_sync(functools.partial(compute, jobs))
            except Exception:
                logger.exception("queue positions for %d streams failed", len(jobs))
                continue
            self.ticks += 1
            due = [w for w, e in zip(watches, estimates, strict=True) if w.tick(e)]
            # Spread the pokes over most of the tick, a batch at a time: woken streams send
            # their events between other requests instead of in one long turn of the loop.
            batches = [due[i : i + POKE_BATCH] for i in range(0, len(due), POKE_BATCH)]
            pause = interval * 0.8 / len(batches) if len(batches) > 1 else 0.0
            for batch in batches:
                for watch in batch:
                    watch.poke()
                if pause:
                    await asyncio.sleep(pause)
                    spent += pause


def _estimate_safely(jobs: list[WatchedJob]) -> list[QueueEstimate]:
    """On a stream thread, outside any request."""
    try:
        return estimate_watched(jobs)
    except Exception:
        # Outside any request: drop a broken connection here, or every later tick fails too.
        close_old_connections()
        raise
