"""Render jobs: the record of every image the backend makes.

A job row is the source of truth; a Celery message only says "look at job X". States follow
Replicate's predictions: queued -> running -> succeeded | failed | canceled, plus aborted (a
deadline passed before it started).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class JobKind(models.TextChoices):
    TEST_RENDER = "test_render", "Operator test render"
    PREVIEW = "preview", "Designer preview"
    GENERATION = "generation", "Consumer generation"
    REFINEMENT = "refinement", "Consumer refinement"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    ABORTED = "aborted", "Aborted"


TERMINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.ABORTED)


class RenderJob(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    # Exactly one owner: a studio user or a consumer end user (see the constraint).
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
        related_name="render_jobs",
    )
    end_user = models.ForeignKey(
        "accounts.EndUser", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
    )
    spec = models.JSONField()
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(created_by__isnull=False, end_user__isnull=True)
                           | Q(created_by__isnull=True, end_user__isnull=False)),
                name="render_job_has_exactly_one_owner",
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
    likeness = models.FloatField(null=True, blank=True)  # similarity to the avatar owner's face
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="unique_output_index_per_job"),
        ]

    def __str__(self) -> str:
        return f"RenderOutput({self.job_id}#{self.index})"
