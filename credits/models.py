"""The credit ledger: grants, charges and refunds per (API client, end user)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class CreditType(models.TextChoices):
    AVATAR = "avatar", "Avatar training"
    GENERATION = "generation", "Generation"


class CreditEntry(models.Model):
    """An append-only ledger per (client, end user). The balance is the sum of amounts.

    Grants come from the client's server (idempotent by key); charges are negative; a
    technical failure or a cancel before start adds a refund pointing at its job.
    """

    class Reason(models.TextChoices):
        GRANT = "grant", "Grant"
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Refund"

    end_user = models.ForeignKey(
        "accounts.EndUser", on_delete=models.CASCADE, related_name="credit_entries"
    )
    credit_type = models.CharField(max_length=16, choices=CreditType.choices)
    amount = models.IntegerField()
    reason = models.CharField(max_length=16, choices=Reason.choices)
    note = models.CharField(max_length=300, blank=True)
    job = models.ForeignKey(
        "jobs.RenderJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="credit_entries",
    )
    avatar = models.ForeignKey(
        "avatars.Avatar", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    idempotency_key = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "rendering_creditentry"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["end_user", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="unique_grant_idempotency_key",
            ),
            models.UniqueConstraint(
                fields=["job"], condition=Q(reason="refund"), name="one_refund_per_job"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reason} {self.amount} {self.credit_type}"
