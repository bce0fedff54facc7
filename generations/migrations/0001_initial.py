# Tables that moved here from the former `rendering` app keep their names; a database made
# before the move has them already, so each step applies only what is missing (ADR 0002).

import django.db.models.deletion
import django.utils.timezone
import uuid
from django.db import migrations, models

from workstation.migration_operations import CreateModelIfMissing


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0002_apiclient_webhook_secret_apiclient_webhook_url"),
    ]

    operations = [
        CreateModelIfMissing(
            name="WebhookDelivery",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("event_type", models.CharField(max_length=32)),
                ("payload", models.JSONField()),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("next_attempt_at", models.DateTimeField(blank=True, null=True)),
                ("delivered_at", models.DateTimeField(blank=True, null=True)),
                ("last_error", models.CharField(blank=True, max_length=200)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "client",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="webhook_deliveries",
                        to="accounts.apiclient",
                    ),
                ),
                (
                    "end_user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.enduser",
                    ),
                ),
            ],
            options={
                "db_table": "rendering_webhookdelivery",
                "ordering": ["-created_at"],
                "indexes": [
                    models.Index(fields=["delivered_at", "next_attempt_at"], name="webhook_due")
                ],
            },
        ),
    ]
