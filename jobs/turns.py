"""Round-robin's memory, kept so that a claim touches a bounded number of rows.

One `OwnerTurn` row per (lane, priority class, owner): when the owner was last served, and
`head_at`, the creation time of its oldest queued job in that class (null: nothing queued).
The fair policy's next owner is then the first row of an index ordered by (priority,
last_served_at, head_at) among rows with a head, and its next job is the first entry of the
queued jobs' (lane, priority, owner, created_at) index: a claim costs the same with 100 or
100,000 jobs waiting.

Every path that queues a job calls `job_queued` in its transaction; every path that takes a
job out of the queue without claiming it (cancel, deadline abort, a direct claim) calls
`refresh_head`. A head that went stale anyway (a row written by hand, a crash between two
statements) costs a claim one extra lookup and is cleared there; `reconcile`, run by the
sweeper every minute, rebuilds every head from the queue of record.

Lock order: a claim locks the owner's turn row first and takes jobs with SKIP LOCKED, so it
never waits on a job row; everything else locks the job first and then waits for the turn row.
A head is always computed by a statement that starts after the turn row is locked, so it sees
every job committed by a transaction that wrote the row before us.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, F, Min, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Least

from .models import JobStatus, OwnerTurn, RenderJob

logger = logging.getLogger(__name__)

NEVER_SERVED = datetime(2000, 1, 1, tzinfo=UTC)


def queued_of(*, lane: str, priority: int, owner_key: str) -> QuerySet[RenderJob]:
    """One owner's queued jobs in a lane and class (the `job_queued_owner_head` index)."""
    return RenderJob.objects.filter(
        lane=lane, status=JobStatus.QUEUED, priority=priority, owner_key=owner_key
    )


def _turn(*, lane: str, priority: int, owner_key: str) -> QuerySet[OwnerTurn]:
    return OwnerTurn.objects.filter(lane=lane, priority=priority, owner_key=owner_key)


def owner_ready(*, lane: str, priority: int, owner_key: str, queued_at: datetime) -> None:
    """The owner has a queued job created at `queued_at`: its head moves back to it if that
    is older. Call in the transaction that queues the job."""
    at = Value(queued_at, output_field=DateTimeField())
    earliest = Least(Coalesce(F("head_at"), at), at)
    turn = _turn(lane=lane, priority=priority, owner_key=owner_key)
    if turn.update(head_at=earliest):
        return
    try:
        with transaction.atomic():
            OwnerTurn.objects.create(
                lane=lane,
                priority=priority,
                owner_key=owner_key,
                last_served_at=NEVER_SERVED,
                head_at=queued_at,
            )
    except IntegrityError:  # created meanwhile by another transaction of the same owner
        turn.update(head_at=earliest)


def job_queued(job: RenderJob) -> None:
    owner_ready(
        lane=job.lane, priority=job.priority, owner_key=job.owner_key, queued_at=job.created_at
    )


def _oldest_queued(*, lane: str, priority: int, owner_key: str) -> Subquery:
    return Subquery(
        queued_of(lane=lane, priority=priority, owner_key=owner_key)
        .order_by("created_at")
        .values("created_at")[:1]
    )


def refresh_head(*, lane: str, priority: int, owner_key: str) -> bool:
    """Sets the owner's head to its oldest queued job (none: no head), after a job left the
    queue other than by a fair claim. True if the head was wrong."""
    with transaction.atomic():
        turn = _turn(lane=lane, priority=priority, owner_key=owner_key)
        recorded = list(turn.select_for_update().values_list("head_at", flat=True))
        # A new statement, so it sees what was committed while we waited for the lock.
        actual = (
            queued_of(lane=lane, priority=priority, owner_key=owner_key)
            .order_by("created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if not recorded:
            if actual is None:
                return False
            owner_ready(lane=lane, priority=priority, owner_key=owner_key, queued_at=actual)
            return True
        if recorded[0] == actual:
            return False
        turn.update(head_at=actual)
        return True


def job_left_queue(job: RenderJob) -> None:
    refresh_head(lane=job.lane, priority=job.priority, owner_key=job.owner_key)


def served(turn: OwnerTurn, *, at: datetime) -> None:
    """Records that `turn`'s owner was just served (its row locked by the caller): its turn
    moves to the back, and its head to its next queued job."""
    head = _oldest_queued(lane=turn.lane, priority=turn.priority, owner_key=turn.owner_key)
    OwnerTurn.objects.filter(pk=turn.pk).update(last_served_at=at, head_at=head)


def reconcile(*, lane: str | None = None) -> int:
    """Rebuilds every head from the queue of record (one grouped read); returns how many
    rows were wrong. The sweeper's safety net: a correct table is left as it is."""
    queued = RenderJob.objects.filter(status=JobStatus.QUEUED)
    recorded_rows = OwnerTurn.objects.filter(head_at__isnull=False)
    if lane:
        queued = queued.filter(lane=lane)
        recorded_rows = recorded_rows.filter(lane=lane)
    truth = {
        (row_lane, priority, owner): first
        for row_lane, priority, owner, first in queued.values_list("lane", "priority", "owner_key")
        .annotate(first=Min("created_at"))
        .values_list("lane", "priority", "owner_key", "first")
    }
    recorded = {
        (row_lane, priority, owner): head
        for row_lane, priority, owner, head in recorded_rows.values_list(
            "lane", "priority", "owner_key", "head_at"
        )
    }
    # Owners with queued work and no row at all (rows written in bulk): added in one insert.
    missing = [
        OwnerTurn(
            lane=row_lane,
            priority=priority,
            owner_key=owner,
            last_served_at=NEVER_SERVED,
            head_at=first,
        )
        for (row_lane, priority, owner), first in truth.items()
        if (row_lane, priority, owner) not in recorded
    ]
    existing: set[tuple[str, int, str]] = set()
    if missing:  # rows there with no head (null) are not missing: they are re-checked below
        existing = set(
            OwnerTurn.objects.filter(
                owner_key__in=[turn.owner_key for turn in missing]
            ).values_list("lane", "priority", "owner_key")
        )
    added = [t for t in missing if (t.lane, t.priority, t.owner_key) not in existing]
    OwnerTurn.objects.bulk_create(added, ignore_conflicts=True, batch_size=1000)
    # The rest that differ when read are re-checked under their lock: a claim or a new job
    # between the reads above is not drift.
    suspects = {key for key, first in truth.items() if key in recorded and recorded[key] != first}
    suspects |= {key for key in truth if key in existing}
    suspects |= recorded.keys() - truth.keys()
    wrong = len(added) + sum(
        refresh_head(lane=row_lane, priority=priority, owner_key=owner)
        for row_lane, priority, owner in suspects
    )
    if wrong:
        logger.warning("owner turns: %d head(s) were out of step with the queue; fixed", wrong)
    return wrong
