"""Consent, avatars, their (short-lived) photos, the audit trail and erasure receipts."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from workstation.engine_host import get_registry
from workstation.ownership import ConsumerOwned, ConsumerOwnedQuerySet


class ConsentRecord(ConsumerOwned):
    """One end user's consent to one agreement version, exactly as it was shown."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agreement_version = models.CharField(max_length=32)
    agreement_hash = models.CharField(max_length=64)
    # The language version shown and hashed (avatars.consent.LANGUAGES): "en" or "zh-Hans".
    language = models.CharField(max_length=16, default="en")
    text_shown = models.TextField()
    items = models.JSONField()  # the item keys consented to
    age_confirmation = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"ConsentRecord({self.id}, {self.agreement_version})"

    @property
    def is_active(self) -> bool:
        return self.withdrawn_at is None


class AvatarStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PREPARING = "preparing", "Preparing photos"
    TRAINING = "training", "Training"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


IN_FLIGHT = (AvatarStatus.QUEUED, AvatarStatus.PREPARING, AvatarStatus.TRAINING)


class LoraStatus(models.TextChoices):
    """The studio tier: the avatar's LoRA, trained on the queue after the instant tier."""

    NOT_REQUESTED = "not_requested", "Not requested"
    WAITING = "waiting", "Waiting for the photo checks"
    QUEUED = "queued", "Queued"
    TRAINING = "training", "Training"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class Identity(models.TextChoices):
    """How a render carries the avatar's identity."""

    INSTANT = "instant", "Identity adapter (instant tier)"
    LORA = "lora", "LoRA (studio tier)"
    BOTH = "both", "LoRA and identity adapter"


class Avatar(models.Model):
    """A person's face, in two tiers. Owned by a consumer end user, or a test avatar owned by
    operators.

    - *instant*: an identity embedding for the tuning-free identity adapter, made seconds after
      upload by the intake job (photo checks, then the embedding). Needs no photos afterwards.
    - *studio*: a LoRA trained on the queue from the checked photos (optional per client or
      request); the photos are kept, encrypted, only until it is trained or fails.

    `status` is the avatar as a whole: queued / preparing (intake) -> training (the instant tier
    is ready when it has one; the LoRA waits or trains) -> ready (every requested tier done) or
    failed (nothing usable). `lora_status` follows the studio tier alone.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    end_user = models.ForeignKey(
        "accounts.EndUser", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    consent = models.ForeignKey(
        ConsentRecord, null=True, blank=True, on_delete=models.PROTECT, related_name="avatars"
    )
    # Test avatars (the designers' preview panel): photos uploaded by an operator who declared
    # they hold the rights. Never visible through consumer endpoints.
    is_test_avatar = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    rights_declaration = models.TextField(blank=True)
    panel_gender = models.CharField(max_length=16, blank=True)
    panel_age_band = models.CharField(max_length=16, blank=True)

    name = models.CharField(max_length=80, blank=True)
    status = models.CharField(
        max_length=16, choices=AvatarStatus.choices, default=AvatarStatus.QUEUED, db_index=True
    )
    failure_code = models.CharField(max_length=48, blank=True)
    failure_reason = models.TextField(blank=True)
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)

    # Envelope encryption: the per-avatar data key, wrapped by a master key. NULL = destroyed.
    wrapped_data_key = models.BinaryField(null=True, blank=True, editable=False)
    lora_object = models.CharField(max_length=255, blank=True)
    lora_status = models.CharField(
        max_length=16, choices=LoraStatus.choices, default=LoraStatus.WAITING
    )
    lora_failure_code = models.CharField(max_length=48, blank=True)
    lora_failure_reason = models.TextField(blank=True)
    lora_ready_at = models.DateTimeField(null=True, blank=True)
    # The instant tier: the identity embedding (biometric: encrypted with the data key, purpose
    # "identity_embedding"), the registry key of the identity adapter it was made for, its kind.
    identity_embedding = models.BinaryField(null=True, blank=True, editable=False)
    identity_adapter = models.CharField(max_length=120, blank=True)
    identity_kind = models.CharField(max_length=32, blank=True)
    instant_ready_at = models.DateTimeField(null=True, blank=True)
    reference_embedding = models.BinaryField(null=True, blank=True, editable=False)
    training_metadata = models.JSONField(default=dict, blank=True)
    # Photos received; after screening, the photos kept for training.
    photo_count = models.PositiveSmallIntegerField(default=0)
    # Why photos were not used: [{"field": "photos.3", "code": "no_face", "reason": "..."}],
    # found at upload (not an image, over the pixel budget) or by screening in the job.
    photo_issues = models.JSONField(default=list, blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(default=timezone.now)
    deletion_notice_at = models.DateTimeField(null=True, blank=True)

    objects = ConsumerOwnedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(is_test_avatar=False, end_user__isnull=False, consent__isnull=False)
                    | Q(is_test_avatar=True, end_user__isnull=True)
                ),
                name="avatar_is_consumer_with_consent_or_test",
            ),
        ]

    def __str__(self) -> str:
        return f"Avatar({self.id}, {self.status})"

    @property
    def is_in_flight(self) -> bool:
        return self.status in IN_FLIGHT

    @property
    def has_instant_tier(self) -> bool:
        """An identity embedding made for the identity adapter the engine serves now (after an
        operator changes the adapter, older embeddings cannot render: their tier is gone)."""
        if not self.identity_embedding or not self.identity_adapter:
            return False
        current = get_registry().identity_adapter()
        return current is not None and current.key == self.identity_adapter

    @property
    def has_studio_tier(self) -> bool:
        return bool(self.lora_object)

    @property
    def tier(self) -> str | None:
        """The best tier ready now: "studio", "instant" or None."""
        if self.has_studio_tier:
            return "studio"
        return "instant" if self.has_instant_tier else None

    def available_identities(self) -> list[str]:
        """The `Identity` values a render of this avatar can use now, best first."""
        available = []
        if self.has_studio_tier and self.has_instant_tier:
            available.append(Identity.BOTH.value)
        if self.has_studio_tier:
            available.append(Identity.LORA.value)
        if self.has_instant_tier:
            available.append(Identity.INSTANT.value)
        return available


class AvatarPhoto(models.Model):
    """An uploaded photo exactly as received (its header checked), encrypted with the avatar's
    data key. Index 0 is the front photo, index i+1 the upload's `photos.i`.

    Screening (decoding, faces, same person) happens in the avatar's training job, never in the
    web request. Lives only until its avatar is trained or fails, and never longer than the hard
    limit.
    """

    avatar = models.ForeignKey(Avatar, on_delete=models.CASCADE, related_name="photos")
    index = models.PositiveSmallIntegerField()
    storage_name = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["avatar", "index"]
        constraints = [
            models.UniqueConstraint(fields=["avatar", "index"], name="unique_photo_index"),
        ]

    def __str__(self) -> str:
        return f"AvatarPhoto({self.avatar_id}#{self.index})"


class AuditEvent(models.Model):
    """Who touched personal data, what, when and why — never the data itself.

    The end-user link is cleared when the end user is erased (SET_NULL), so the trail
    survives without pointing at anyone.
    """

    actor = models.CharField(max_length=64)  # "client:<id>", "user:<id>" or "system:<job>"
    action = models.CharField(max_length=48)
    object_type = models.CharField(max_length=32)
    object_id = models.CharField(max_length=64, blank=True)
    purpose = models.CharField(max_length=120)
    end_user = models.ForeignKey(
        "accounts.EndUser", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.object_type}:{self.object_id}"


class ErasureReceipt(models.Model):
    """What remains after an end user is erased: counts and consent history, no personal data.

    `end_user_digest` is an HMAC of the client's end-user reference, so the client can show
    which of its users was erased without us keeping the reference itself.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey("accounts.ApiClient", on_delete=models.CASCADE, related_name="+")
    end_user_digest = models.CharField(max_length=64, db_index=True)
    counts = models.JSONField()
    consents = models.JSONField()  # [{version, hash, given_at, withdrawn_at}]
    erased_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-erased_at"]

    def __str__(self) -> str:
        return f"ErasureReceipt({self.id})"
