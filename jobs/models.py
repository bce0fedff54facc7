"""The queue of record: every job the GPU backend runs (renders and avatar training).

Infrastructure: this app imports no product app. The kinds of job (what a job does, its lane,
priority and what happens when it ends) are registered by the apps that own them
(jobs/registry.py). The tables keep the names they had in the former `rendering` app.

A job row is the source of truth; a Celery message is only a dispatch token ("a job may be
waiting in lane L"): the worker that receives it claims the next job by the fair policy with
SELECT ... FOR UPDATE SKIP LOCKED. States follow Replicate's predictions: queued -> running ->
succeeded | failed | canceled, plus aborted (a Cancel-After deadline passed before it started).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Lane(models.TextChoices):
    RENDER = "render", "Render"
    TRAINING = "training", "Training"


# Priority classes, lower first: consumers before designers, designers before smoke tests.
PRIORITY_CONSUMER = 0
PRIORITY_STUDIO = 1
PRIORITY_DIAGNOSTIC = 2


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    ABORTED = "aborted", "Aborted"


TERMINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.ABORTED)


class RenderJobQuerySet(models.QuerySet["RenderJob"]):
    def held(self, job: RenderJob) -> RenderJobQuerySet:
        """The job's row while the worker that claimed it still holds it: still running, by
        the same worker, in the same attempt (a re-queued job is someone else's now)."""
        return self.filter(
            pk=job.pk, status=JobStatus.RUNNING, worker=job.worker, attempts=job.attempts
        )


class RenderJob(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # A kind registered in jobs.registry (a system check fails on rows of unknown kinds).
    kind = models.CharField(max_length=16)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    # Exactly one owner: a studio user or a consumer end user (see the constraint).
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="render_jobs",
    )
    end_user = models.ForeignKey(
        "accounts.EndUser",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    spec = models.JSONField()
    lane = models.CharField(max_length=16, choices=Lane.choices, default=Lane.RENDER)
    priority = models.PositiveSmallIntegerField(default=PRIORITY_STUDIO)
    # "eu:<end user id>" or "u:<user id>": the unit of round-robin fairness.
    owner_key = models.CharField(max_length=48, db_index=True, default="")
    # SET_NULL: deleting an avatar must not orphan its generated portraits in storage; they
    # stay the end user's (exported, and erased with the end user).
    avatar = models.ForeignKey(
        "avatars.Avatar", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    template = models.ForeignKey(
        "templates_studio.Template",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="refinements"
    )
    idempotency_key = models.CharField(max_length=128, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)  # Cancel-After
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=128, blank=True)
    token_sent_at = models.DateTimeField(null=True, blank=True)
    # Jobs with the same non-empty group can share one forward pass (engine.batching).
    batch_group = models.CharField(max_length=64, blank=True, db_index=True)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    # Structured reasons behind the error, e.g. one entry per unusable photo:
    # [{"field": "photos.3", "code": "no_face", "reason": "..."}]. Never personal data.
    error_details = models.JSONField(default=list, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Terminal hooks (jobs.registry) that raised: retried by the sweeper until they succeed.
    pending_hooks = models.JSONField(default=list, blank=True)
    has_pending_hooks = models.BooleanField(default=False, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RenderJobQuerySet.as_manager()

    class Meta:
        db_table = "rendering_renderjob"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(created_by__isnull=False, end_user__isnull=True)
                    | Q(created_by__isnull=True, end_user__isnull=False)
                    | Q(kind="training")
                ),
                name="render_job_has_exactly_one_owner",
            ),
            models.UniqueConstraint(
                fields=["owner_key", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="unique_idempotency_key_per_owner",
            ),
        ]
        indexes = [
            models.Index(
                fields=["lane", "status", "priority", "created_at"], name="job_dispatch_order"
            ),
            models.Index(fields=["kind", "status", "finished_at"], name="job_recent_by_kind"),
            # An owner's next job in a class (jobs.turns): the claim's second lookup.
            models.Index(
                fields=["lane", "priority", "owner_key", "created_at"],
                condition=Q(status="queued"),
                name="job_queued_owner_head",
            ),
            # Cancel-After deadlines, checked before every claim.
            models.Index(
                fields=["deadline_at"],
                condition=Q(status="queued", deadline_at__isnull=False),
                name="job_queued_deadline",
            ),
        ]

    def __str__(self) -> str:
        return f"RenderJob({self.id}, {self.kind}, {self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class RenderOutput(models.Model):
    job = models.ForeignKey(RenderJob, on_delete=models.CASCADE, related_name="outputs")
    index = models.PositiveSmallIntegerField()
    storage_name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=32, default="image/png")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    seed = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    # The pixels' hash before labels (which carry the job id): equal renders, equal hashes.
    content_sha256 = models.CharField(max_length=64, blank=True, default="")
    likeness = models.FloatField(null=True, blank=True)  # similarity to the avatar owner's face
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "rendering_renderoutput"
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="unique_output_index_per_job"),
        ]

    def __str__(self) -> str:
        return f"RenderOutput({self.job_id}#{self.index})"


class OwnerTurn(models.Model):
    """When each owner was last served in a lane and class, and its oldest queued job there:
    round-robin's memory, and the index a claim starts from (jobs.turns)."""

    lane = models.CharField(max_length=16, choices=Lane.choices)
    priority = models.PositiveSmallIntegerField()
    owner_key = models.CharField(max_length=48)
    last_served_at = models.DateTimeField()
    # Creation time of the owner's oldest queued job in this lane and class; null: none queued.
    head_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "rendering_ownerturn"
        constraints = [
            models.UniqueConstraint(
                fields=["lane", "priority", "owner_key"], name="unique_owner_turn"
            ),
        ]
        indexes = [
            # The fair policy's order over owners with queued work: a claim reads its first row.
            models.Index(
                fields=["lane", "priority", "last_served_at", "head_at"],
                condition=Q(head_at__isnull=False),
                name="owner_turn_ready_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lane}/{self.priority}/{self.owner_key}"


class WorkerHeartbeat(models.Model):
    """Live workers (for ETAs, metrics and the operators' dashboard)."""

    name = models.CharField(max_length=128, primary_key=True)
    lanes = models.CharField(max_length=64)
    last_seen = models.DateTimeField(db_index=True)
    current_job = models.UUIDField(null=True, blank=True)

    class Meta:
        db_table = "rendering_workerheartbeat"

    def __str__(self) -> str:
        return self.name
