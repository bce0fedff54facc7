"""The webhook outbox. Generations themselves are jobs of the queue of record (jobs.RenderJob)."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class WebhookDelivery(models.Model):
    """One job event for an API client's webhook (generations/webhooks.py): the outbox row.

    Created in the transaction that records the job's terminal state, so an event exists
    exactly when the state does. `id` is the event id receivers deduplicate on (it is the same
    on every retry). Undelivered rows with `next_attempt_at` due are (re)sent; after the last
    attempt `next_attempt_at` is cleared and the row is kept for inspection.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(
        "accounts.ApiClient", on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    # Erasing an end user erases their pending and past events too.
    end_user = models.ForeignKey(
        "accounts.EndUser", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    event_type = models.CharField(max_length=32)
    payload = models.JSONField()
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "rendering_webhookdelivery"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["delivered_at", "next_attempt_at"], name="webhook_due"),
        ]

    def __str__(self) -> str:
        return f"WebhookDelivery({self.id}, {self.event_type})"
