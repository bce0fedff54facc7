"""Fair dispatch over the queue of record.

Policy, per lane (render, training): priority classes first (consumers before designer
previews before operator test renders); inside a class, round-robin between owners (the
owner served longest ago goes next); inside an owner, first in first out. Celery messages are
dispatch tokens for a lane: the receiving worker claims the next job by this policy with
SELECT ... FOR UPDATE SKIP LOCKED, so two workers never claim the same job, a duplicate token
finds nothing, and a lost token is re-sent by the sweeper.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from engine.batching import batch_key
from engine.errors import SpecError
from engine.spec import RenderSpec
from workstation.ownership import owner_key

from . import registry
from .assets import with_placeholder_images
from .finishing import job_finished_without_running, retry_pending_hooks
from .models import JobStatus, OwnerTurn, RenderJob, WorkerHeartbeat

logger = logging.getLogger(__name__)
T = TypeVar("T")


def batch_group_for(spec: dict) -> str:
    """The engine's batch compatibility key of a job spec, hashed; "" if it cannot batch."""
    try:
        key = batch_key(RenderSpec.from_dict(with_placeholder_images(spec)))
    except SpecError:
        return ""
    return hashlib.sha256(repr(key).encode()).hexdigest() if key is not None else ""


def prepare_job(job: RenderJob) -> RenderJob:
    """Fills the dispatch fields of a new job from its registered kind and its owner."""
    kind = registry.get(job.kind)
    job.lane = kind.lane
    job.priority = kind.priority
    if not job.owner_key:
        job.owner_key = owner_key(user_id=job.created_by_id, end_user_id=job.end_user_id)
    job.max_attempts = settings.JOB_MAX_ATTEMPTS
    if kind.renders and kind.batchable and settings.RENDER_BATCH_LIMIT > 1:
        job.batch_group = batch_group_for(job.spec)
    return job


def send_token(lane: str) -> None:
    """Sends one dispatch token for `lane` once the current transaction commits."""
    from .tasks import dispatch

    def send() -> None:
        dispatch.apply_async(args=[lane], queue=lane)

    transaction.on_commit(send)


# --- Claiming ----------------------------------------------------------------------------------------


def _skip_locked(queryset: QuerySet[RenderJob]) -> QuerySet[RenderJob]:
    return queryset.select_for_update(
        skip_locked=connection.features.has_select_for_update_skip_locked
    )


NEVER_SERVED = datetime(2000, 1, 1, tzinfo=UTC)


def turn_order(oldest: dict[str, datetime], last_served: dict[str, datetime]) -> list[str]:
    """The owners of `oldest` (owner -> their oldest queued job's time) in turn order: the
    least recently served first; never served ones by their oldest job."""
    return sorted(oldest, key=lambda o: (last_served.get(o, NEVER_SERVED), oldest[o]))


def owner_order(lane: str, priority: int, queued: QuerySet[RenderJob]) -> list[str]:
    """Owners with queued jobs in this class, the least recently served first."""
    owners = dict(
        queued.filter(priority=priority)
        .values_list("owner_key")
        .annotate(first=Min("created_at"))
        .values_list("owner_key", "first")
    )
    turns = dict(
        OwnerTurn.objects.filter(
            lane=lane, priority=priority, owner_key__in=list(owners)
        ).values_list("owner_key", "last_served_at")
    )
    return turn_order(owners, turns)


def claim_next(*, lane: str, worker: str, batch_group: str = "") -> RenderJob | None:
    """Claims the next job of `lane` by the fair policy; None when nothing is waiting.

    With `batch_group`, only jobs of that group are considered (filling a batch).
    """
    now = timezone.now()
    if not batch_group:
        abort_expired(now=now)
    with transaction.atomic():
        queued = RenderJob.objects.filter(lane=lane, status=JobStatus.QUEUED)
        if batch_group:
            queued = queued.filter(batch_group=batch_group)
        for priority in sorted(set(queued.values_list("priority", flat=True))):
            for owner in owner_order(lane, priority, queued):
                job = _skip_locked(
                    queued.filter(priority=priority, owner_key=owner).order_by("created_at")
                ).first()
                if job is None:
                    continue  # another worker holds this owner's next job; try the next owner
                _start(job, worker=worker, now=now)
                OwnerTurn.objects.update_or_create(
                    lane=lane, priority=priority, owner_key=owner, defaults={"last_served_at": now}
                )
                return job
    return None


def claim_batch(*, lane: str, worker: str, limit: int) -> list[RenderJob]:
    """The next job by the fair policy, plus up to `limit - 1` compatible queued jobs, each
    chosen by the same policy among its group: a batch never jumps the order by more than
    itself."""
    first = claim_next(lane=lane, worker=worker)
    if first is None:
        return []
    batch = [first]
    while first.batch_group and len(batch) < limit:
        more = claim_next(lane=lane, worker=worker, batch_group=first.batch_group)
        if more is None:
            break
        batch.append(more)
    return batch


def claim_job(*, job_id: uuid.UUID | str, worker: str) -> RenderJob | None:
    """Claims one specific job if it is still queued (direct runs and tests)."""
    with transaction.atomic():
        job = RenderJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != JobStatus.QUEUED:
            return None
        _start(job, worker=worker, now=timezone.now())
        return job


def _start(job: RenderJob, *, worker: str, now: datetime) -> None:
    job.status = JobStatus.RUNNING
    job.started_at = now
    job.attempts += 1
    job.worker = worker
    job.lease_expires_at = now + timedelta(seconds=settings.JOB_LEASE_S)
    job.save(update_fields=["status", "started_at", "attempts", "worker", "lease_expires_at"])
    logger.info("job %s claimed by %s (attempt %d)", job.id, worker, job.attempts)


# --- Leases ------------------------------------------------------------------------------------------


def renew_lease(job: RenderJob) -> bool:
    """Extends the lease if this worker still holds it. False = the lease was lost."""
    return bool(
        RenderJob.objects.held(job).update(
            lease_expires_at=timezone.now() + timedelta(seconds=settings.JOB_LEASE_S)
        )
    )


@contextmanager
def _bounded_lock_wait(seconds: float = 2.0) -> Iterator[None]:
    """One transaction whose row-lock waits give up after `seconds` (PostgreSQL), so the
    lease thread never blocks behind a transaction that waits for the job to finish."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = %s", [f"{int(seconds * 1000)}ms"])
        yield


class LeaseKeeper:
    """Renews a running job's lease from a background thread while the job works, so a long
    model load or a slow step never looks like a dead worker."""

    def __init__(self, job: RenderJob):
        self.job = job
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"lease-{job.pk}")

    def _run(self) -> None:
        # Heartbeats every WORKER_HEARTBEAT_S (so a dead worker is noticed within seconds);
        # the lease is renewed every third of its length.
        tick = max(min(settings.WORKER_HEARTBEAT_S, settings.JOB_LEASE_S / 3), 0.2)
        renew_every = max(settings.JOB_LEASE_S / 3, 0.2)
        last_renewal = time.monotonic()
        try:
            while not self._stop.wait(tick):
                try:
                    with _bounded_lock_wait():
                        if time.monotonic() - last_renewal >= renew_every:
                            if not renew_lease(self.job):
                                self.lost = True
                                return
                            last_renewal = time.monotonic()
                        heartbeat(worker=self.job.worker, lanes=self.job.lane, job=self.job)
                except DatabaseError:
                    # A row held by another transaction (or a database hiccup): skip this
                    # tick rather than block the job; the lease has room for several misses.
                    logger.warning("job %s: heartbeat skipped (row busy)", self.job.pk)
        finally:
            connection.close()

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def heartbeat(*, worker: str, lanes: str, job: RenderJob | None = None) -> None:
    """Records that `worker` is alive; `lanes` accumulates every lane it has served."""
    known = WorkerHeartbeat.objects.filter(name=worker).values_list("lanes", flat=True).first()
    served = sorted(set(filter(None, (known or "").split(","))) | set(lanes.split(",")))
    WorkerHeartbeat.objects.update_or_create(
        name=worker,
        defaults={
            "lanes": ",".join(served),
            "last_seen": timezone.now(),
            "current_job": job.pk if job else None,
        },
    )


def live_workers(lane: str | None = None) -> int:
    since = timezone.now() - timedelta(seconds=settings.WORKER_LIVE_S)
    workers = WorkerHeartbeat.objects.filter(last_seen__gte=since)
    if lane:
        workers = workers.filter(lanes__contains=lane)
    return workers.count()


# --- Sweeper ------------------------------------------------------------------------------------------


class _Skipped:
    """A job whose sweep step raised (logged, left for the next sweep)."""


SKIPPED = _Skipped()


def _isolated(job_id: object, what: str, action: Callable[[], T]) -> T | _Skipped:
    """Runs one job's sweep step in its own transaction; a job that raises is logged and
    skipped, so one bad row never stops the sweep or the claims behind it."""
    try:
        with transaction.atomic():
            return action()
    except Exception:
        logger.exception("job %s: %s failed; skipped this time", job_id, what)
        return SKIPPED


def abort_expired(*, now: datetime | None = None) -> int:
    """Queued jobs whose Cancel-After deadline passed are aborted (and refunded)."""
    now = now or timezone.now()
    aborted = 0
    for pk in list(
        RenderJob.objects.filter(status=JobStatus.QUEUED, deadline_at__lt=now).values_list(
            "pk", flat=True
        )
    ):

        def abort(pk: uuid.UUID = pk) -> bool:
            locked = (
                RenderJob.objects.select_for_update().filter(pk=pk, status=JobStatus.QUEUED).first()
            )
            if locked is None:
                return False
            job_finished_without_running(
                locked,
                status=JobStatus.ABORTED,
                code="deadline",
                message="The Cancel-After deadline passed before the "
                "job started. You were not charged.",
            )
            return True

        if _isolated(pk, "deadline abort", abort) is True:
            aborted += 1
    return aborted


def _recover_expired(pk: uuid.UUID, now: datetime) -> str | None:
    """Re-queues (or, after its last attempt, fails) a running job whose lease expired or
    whose worker's heartbeat stopped. The row lock and the re-check make it exactly once."""
    silent = WorkerHeartbeat.objects.filter(
        last_seen__lt=now - timedelta(seconds=settings.WORKER_DEAD_AFTER_S)
    ).values("name")
    locked = (
        RenderJob.objects.select_for_update()
        .filter(pk=pk, status=JobStatus.RUNNING)
        .filter(Q(lease_expires_at__lt=now) | Q(worker__in=silent))
        .first()
    )
    if locked is None:
        return None
    logger.warning(
        "job %s: worker %s lost (lease expired or heartbeat stopped; attempt %d)",
        locked.pk,
        locked.worker,
        locked.attempts,
    )
    if locked.attempts >= locked.max_attempts:
        job_finished_without_running(
            locked,
            status=JobStatus.FAILED,
            code="worker_lost",
            message="The job was interrupted too many times. You were not charged.",
        )
        return "failed"
    RenderJob.objects.filter(pk=locked.pk).update(
        status=JobStatus.QUEUED,
        worker="",
        lease_expires_at=None,
        token_sent_at=None,
        progress_step=0,
        started_at=None,
    )
    return "requeued"


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Recovers from dead workers, a lost broker and failed hooks. Safe to run anywhere, any
    number of times; each job is handled on its own (one bad row is skipped and reported).

    - a running job whose lease expired goes back to the queue (attempt count kept), or fails
      (refunded) after its last attempt;
    - queued jobs whose token is older than TOKEN_RESEND_S get a new token (messages lost in a
      broker flush or restart are re-sent; surplus tokens are harmless no-ops);
    - deadlines are enforced;
    - terminal hooks that raised are run again.
    """
    now = now or timezone.now()
    counts = {
        "requeued": 0,
        "failed": 0,
        "tokens": 0,
        "aborted": abort_expired(now=now),
        "skipped": 0,
    }
    # A worker whose heartbeat stopped is dead: its jobs go back at once, not at lease end.
    silent = WorkerHeartbeat.objects.filter(
        last_seen__lt=now - timedelta(seconds=settings.WORKER_DEAD_AFTER_S)
    ).values("name")
    expired = RenderJob.objects.filter(status=JobStatus.RUNNING).filter(
        Q(lease_expires_at__lt=now) | Q(worker__in=silent)
    )
    for pk in list(expired.values_list("pk", flat=True)):
        outcome = _isolated(pk, "lease recovery", partial(_recover_expired, pk, now))
        if isinstance(outcome, _Skipped):
            counts["skipped"] += 1
        elif outcome:
            counts[outcome] += 1
    stale = now - timedelta(seconds=settings.TOKEN_RESEND_S)
    waiting = RenderJob.objects.filter(status=JobStatus.QUEUED).filter(
        Q(token_sent_at__isnull=True) | Q(token_sent_at__lt=stale)
    )
    for lane, count in waiting.values_list("lane").annotate(n=Count("pk")).values_list("lane", "n"):
        for _ in range(count):
            send_token(lane)
        counts["tokens"] += count
    waiting.update(token_sent_at=now)
    counts["hooks_retried"], counts["hooks_failing"] = retry_pending_hooks()
    return counts
