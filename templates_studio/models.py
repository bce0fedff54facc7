"""Portrait templates: immutable revisions, control assets, previews, reviews, the catalog."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from avatars.models import Identity


class Category(models.TextChoices):
    ID_PHOTO = "id_photo", "ID photo"
    BUSINESS = "business", "Business"
    URBAN = "urban", "Urban"
    CASUAL = "casual", "Casual"
    ANCIENT_STYLE = "ancient_style", "Ancient Chinese style"
    OTHER = "other", "Other"


class TemplateStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    PUBLISHED = "published", "Published"
    RETIRED = "retired", "Retired"


class Template(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="templates"
    )
    title = models.CharField(max_length=120)
    slug = models.SlugField(max_length=140, unique=True)
    category = models.CharField(max_length=24, choices=Category.choices)
    tags = models.JSONField(default=list, blank=True)
    intended_gender = models.CharField(max_length=16, blank=True)
    intended_age = models.CharField(max_length=16, blank=True)
    status = models.CharField(
        max_length=24, choices=TemplateStatus.choices, default=TemplateStatus.DRAFT, db_index=True
    )
    # The revision consumers get. Stays put while a newer draft is edited and reviewed.
    live_revision = models.ForeignKey(
        "TemplateRevision", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    cover = models.ForeignKey(
        "PreviewCell", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    catalog_order = models.IntegerField(default=0, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return self.title


class TemplateRevision(models.Model):
    """A numbered, immutable snapshot of a template's spec."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    spec = models.JSONField()
    change_note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["template", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "number"], name="unique_revision_number"),
        ]

    def __str__(self) -> str:
        return f"{self.template_id} r{self.number}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Template revisions are immutable; create a new revision.")
        super().save(*args, **kwargs)


class AssetKind(models.TextChoices):
    POSE = "pose", "Pose"
    CANNY = "canny", "Canny edges"
    DEPTH = "depth", "Depth"
    LIGHTING = "lighting", "Lighting map"
    REFERENCE = "reference", "Reference image"


class ControlAsset(models.Model):
    """A control or reference image of one owner.

    Each owner's assets are their own: deduplicated only within the owner (the same bytes
    uploaded twice by one designer are one asset), stored under the owner's own storage
    prefix (`jobs.assets.asset_storage_name`). Nothing about one owner's asset is reachable
    from, or derived for, another owner's upload. Revision specs refer to an asset by its
    `sha256`, which is unique among the revision author's assets.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="control_assets"
    )
    sha256 = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=16, choices=AssetKind.choices)
    storage_name = models.CharField(max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    keypoints = models.JSONField(null=True, blank=True)  # the editable pose, for poses
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "sha256"], name="unique_asset_per_owner"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.sha256[:12]}"


class CellStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class PreviewCell(models.Model):
    """One render of a revision on one test avatar with one seed and one identity (how the
    avatar entered the render: its LoRA, the instant identity adapter, or both); cached across
    previews."""

    revision = models.ForeignKey(TemplateRevision, on_delete=models.CASCADE, related_name="cells")
    avatar = models.ForeignKey("avatars.Avatar", on_delete=models.CASCADE, related_name="+")
    seed = models.BigIntegerField()
    engine_version = models.CharField(max_length=64)
    # Cells from before the instant tier were all rendered with the LoRA.
    identity = models.CharField(max_length=16, choices=Identity.choices, default=Identity.LORA)
    job = models.OneToOneField(
        "jobs.RenderJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="preview_cell",
    )
    status = models.CharField(max_length=16, choices=CellStatus.choices, default=CellStatus.PENDING)
    output_name = models.CharField(max_length=255, blank=True)
    likeness = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["avatar_id", "seed"]
        constraints = [
            models.UniqueConstraint(
                fields=["revision", "avatar", "seed", "engine_version", "identity"],
                name="unique_preview_cell",
            ),
        ]

    def __str__(self) -> str:
        return f"cell {self.revision_id}/{self.avatar_id}/{self.seed}/{self.identity}"


class Preview(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    revision = models.ForeignKey(
        TemplateRevision, on_delete=models.CASCADE, related_name="previews"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    cells = models.ManyToManyField(PreviewCell, related_name="previews")
    avatar_ids = models.JSONField()  # row order of the grid
    seeds = models.JSONField()  # column order of the grid
    full_panel = models.BooleanField(default=False)
    new_cells = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Preview({self.id})"


class ReviewState(models.TextChoices):
    OPEN = "open", "Open"
    APPROVED = "approved", "Approved"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"


class Review(models.Model):
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="reviews")
    revision = models.ForeignKey(TemplateRevision, on_delete=models.CASCADE, related_name="reviews")
    preview = models.ForeignKey(Preview, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=24, choices=ReviewState.choices, default=ReviewState.OPEN)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    note = models.TextField(blank=True)
    submitted_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    comment = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-submitted_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["template"], condition=Q(state="open"), name="one_open_review_per_template"
            ),
        ]

    def __str__(self) -> str:
        return f"Review({self.template_id} r{self.revision_id}, {self.state})"


class TemplateEvent(models.Model):
    """The audit trail of every workflow transition, also the feed the frontend shows."""

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="events")
    revision = models.ForeignKey(
        TemplateRevision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=32)
    from_status = models.CharField(max_length=24, blank=True)
    to_status = models.CharField(max_length=24, blank=True)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.template_id}"


class TemplateStats(models.Model):
    """Counters the consumer side (generations) increments: the designers' feedback loop."""

    template = models.OneToOneField(
        Template, on_delete=models.CASCADE, related_name="stats", primary_key=True
    )
    generations = models.PositiveIntegerField(default=0)
    refinements = models.PositiveIntegerField(default=0)
    downloads = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"stats {self.template_id}"
