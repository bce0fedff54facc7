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
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, DateTimeField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from engine.batching import batch_key
from engine.errors import SpecError
from engine.spec import RenderSpec
from workstation.ownership import owner_key

from . import registry, turns
from .assets import with_placeholder_images
from .events import job_changed
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


# Owners considered when filling a batch: the first ones in turn order among those with work.
BATCH_FILL_OWNER_WINDOW = 256


# A claim scans again (at most _CLAIM_REREADS times) when the owner it found was served less
# than _CLAIM_RACE_S before the scan: another claimer may have moved it to the back meanwhile.
_CLAIM_REREADS = 3
_CLAIM_RACE_S = timedelta(seconds=2)


class _ClaimSql:
    """The claim's statements, written once per database vendor: a claim runs hundreds of
    times a second at scale, and building its queries through the ORM each time cost more CPU
    than the database spent running them. Plain SQL that SQLite and PostgreSQL share; only
    the row lock differs (SQLite has none and serialises writers instead). Every value is a
    query parameter; only the tables' names and the lock clause are written in."""

    _by_vendor: dict[str, _ClaimSql] = {}

    OWNER_JOBS = (
        "FROM {job} WHERE lane = %s AND status = 'queued' AND priority = %s AND owner_key = %s"
    )
    TURN = (
        "SELECT id, priority, owner_key, last_served_at FROM {turn} "
        "WHERE lane = %s AND head_at IS NOT NULL "
        "{tried} ORDER BY priority, last_served_at, head_at LIMIT 1{lock}"
    )
    HEAD = (
        "SELECT id, deadline_at IS NOT NULL AND deadline_at < %s {owner_jobs} "
        "ORDER BY created_at LIMIT 1{lock}"
    )
    ANY_QUEUED = "SELECT 1 {owner_jobs} LIMIT 1"
    ANY_READY = "SELECT 1 FROM {turn} WHERE lane = %s AND head_at IS NOT NULL LIMIT 1"
    CLEAR_HEAD = "UPDATE {turn} SET head_at = NULL WHERE id = %s"
    START = (
        "UPDATE {job} SET status = 'running', started_at = %s, attempts = attempts + 1, "
        "worker = %s, lease_expires_at = %s WHERE id = %s RETURNING *"
    )
    SERVED = (
        "UPDATE {turn} SET last_served_at = %s, head_at = (SELECT created_at {owner_jobs} "
        "ORDER BY created_at LIMIT 1) WHERE id = %s"
    )
    EXPIRED = (
        "SELECT 1 FROM {job} WHERE status = 'queued' AND deadline_at IS NOT NULL "
        "AND deadline_at < %s LIMIT 1"
    )

    def __init__(self) -> None:
        q = connection.ops.quote_name
        skip_locked = connection.features.has_select_for_update_skip_locked
        # Claimers that run at once (PostgreSQL); SQLite serialises them.
        self.concurrent = skip_locked
        names = {
            "turn": q(OwnerTurn._meta.db_table),
            "job": q(RenderJob._meta.db_table),
            "lock": " FOR UPDATE SKIP LOCKED" if skip_locked else "",
            "tried": "{tried}",  # filled in per call: how many owners were passed over
        }
        names["owner_jobs"] = self.OWNER_JOBS.format(**names)
        self.turn = self.TURN.format(**names)
        self.head = self.HEAD.format(**names)
        self.any_queued = self.ANY_QUEUED.format(**names)
        self.any_ready = self.ANY_READY.format(**names)
        self.clear_head = self.CLEAR_HEAD.format(**names)
        self.start = self.START.format(**names)
        self.served = self.SERVED.format(**names)
        self.expired = self.EXPIRED.format(**names)

    @classmethod
    def get(cls) -> _ClaimSql:
        if connection.vendor not in cls._by_vendor:
            cls._by_vendor[connection.vendor] = cls()
        return cls._by_vendor[connection.vendor]

    def next_turn(self, tried: int) -> str:
        excluded = "AND id NOT IN ({})".format(", ".join(["%s"] * tried)) if tried else ""
        return self.turn.format(tried=excluded)


def _db_time(value: datetime) -> Any:
    """A time as this database's driver takes it (SQLite: text)."""
    return connection.ops.adapt_datetimefield_value(value)


def claim_next(*, lane: str, worker: str, batch_group: str = "") -> RenderJob | None:
    """Claims the next job of `lane` by the fair policy; None when nothing is waiting.

    The owner comes from the turn index (jobs.turns) and its job from the queued jobs' owner
    index, so a claim reads a bounded number of rows however long the queue. Concurrent
    claimers skip each other's owners (SKIP LOCKED) rather than wait.

    With `batch_group`, only jobs of that group are considered (filling a batch).
    """
    now = timezone.now()
    if batch_group:
        return _claim_in_group(lane=lane, worker=worker, batch_group=batch_group, now=now)
    sql = _ClaimSql.get()
    at = _db_time(now)
    with connection.cursor() as cursor:
        cursor.execute(sql.expired, [at])
        if cursor.fetchone():
            abort_expired(now=now)
    tried: list[int] = []
    rereads = 0
    suspect: int | None = None
    with transaction.atomic(), connection.cursor() as cursor:
        while True:
            scan_started = timezone.now()
            cursor.execute(sql.next_turn(len(tried)), [lane, *tried])
            turn = cursor.fetchone()
            if turn is None:
                cursor.execute(sql.any_ready, [lane])
                if cursor.fetchone() is not None:
                    # Every owner with work is held by another claim (one owner's jobs are
                    # claimed one at a time): this token must not be lost, so it goes back to
                    # the lane for when that claim commits.
                    send_token(lane)
                return None
            turn_id, priority, owner, last_served = turn
            if (
                sql.concurrent
                and last_served >= scan_started - _CLAIM_RACE_S
                and turn_id != suspect
                and rereads < _CLAIM_REREADS
            ):
                # Served moments ago, maybe by another claimer while we scanned: PostgreSQL
                # then locks the row's new version without re-checking the order (its turn
                # is now at the back). We hold it, so a new scan sees the committed order
                # and either returns it again (it is first: take it) or the owner that is.
                suspect = turn_id
                rereads += 1
                continue
            tried.append(turn_id)
            # The time of the claim is taken once the owner is held, so that turns and start
            # times follow the order claims really happened in, whatever the claimers' speed.
            now = timezone.now()
            at = _db_time(now)
            cursor.execute(sql.head, [at, lane, priority, owner])
            head = cursor.fetchone()
            if head is None:
                cursor.execute(sql.any_queued, [lane, priority, owner])
                if cursor.fetchone() is None:
                    # A stale head (its job left the queue without telling): clear it.
                    cursor.execute(sql.clear_head, [turn_id])
                continue  # else another transaction holds this owner's next job: next owner
            job_id, expired = head
            if expired:  # its Cancel-After passed since the check above: abort, look again
                # Only this job, which we hold (as its owner's turn): aborting others here
                # would wait on rows other claims hold.
                job_finished_without_running(
                    RenderJob.objects.get(pk=job_id),
                    status=JobStatus.ABORTED,
                    code="deadline",
                    message=DEADLINE_MESSAGE,
                )
                tried.pop()
                continue
            lease = now + timedelta(seconds=settings.JOB_LEASE_S)
            job = next(
                iter(RenderJob.objects.raw(sql.start, [at, worker, _db_time(lease), job_id]))
            )
            cursor.execute(sql.served, [at, lane, priority, owner, turn_id])
            job_changed(job.pk)
            logger.info("job %s claimed by %s (attempt %d)", job.id, worker, job.attempts)
            return job


def _claim_in_group(*, lane: str, worker: str, batch_group: str, now: datetime) -> RenderJob | None:
    """The next job of `batch_group` by the same policy, among the first
    BATCH_FILL_OWNER_WINDOW owners in turn order (a batch is an optimisation: beyond them it
    stays smaller rather than scan the queue)."""
    window = (
        OwnerTurn.objects.filter(lane=lane, head_at__isnull=False)
        .order_by("priority", "last_served_at", "head_at")
        .values("owner_key")[:BATCH_FILL_OWNER_WINDOW]
    )
    last_served = Coalesce(
        Subquery(
            OwnerTurn.objects.filter(
                lane=OuterRef("lane"),
                priority=OuterRef("priority"),
                owner_key=OuterRef("owner_key"),
            ).values("last_served_at")[:1]
        ),
        Value(turns.NEVER_SERVED, output_field=DateTimeField()),
    )
    with transaction.atomic():
        job = _skip_locked(
            RenderJob.objects.filter(
                lane=lane,
                status=JobStatus.QUEUED,
                batch_group=batch_group,
                owner_key__in=Subquery(window),
            )
            .annotate(turn_served=last_served)
            .order_by("priority", "turn_served", "created_at")
        ).first()
        if job is None:
            return None
        _start(job, worker=worker, now=now)
        turn = (
            OwnerTurn.objects.select_for_update()
            .filter(lane=lane, priority=job.priority, owner_key=job.owner_key)
            .first()
        )
        if turn is not None:
            turns.served(turn, at=now)
        else:  # a job queued without its turn row (the sweeper's reconcile would add it)
            # Adds the row, race-free, if the owner has more work queued.
            turns.refresh_head(lane=lane, priority=job.priority, owner_key=job.owner_key)
            OwnerTurn.objects.filter(
                lane=lane, priority=job.priority, owner_key=job.owner_key
            ).update(last_served_at=now)
        return job


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
        turns.job_left_queue(job)
        return job


def _start(job: RenderJob, *, worker: str, now: datetime) -> None:
    job.status = JobStatus.RUNNING
    job.started_at = now
    job.attempts += 1
    job.worker = worker
    job.lease_expires_at = now + timedelta(seconds=settings.JOB_LEASE_S)
    job.save(update_fields=["status", "started_at", "attempts", "worker", "lease_expires_at"])
    job_changed(job.pk)
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


DEADLINE_MESSAGE = "The Cancel-After deadline passed before the job started. You were not charged."


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
                message=DEADLINE_MESSAGE,
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
    turns.job_queued(locked)
    job_changed(locked.pk)
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
