# Tables that moved here from the former `rendering` app keep their names; a database made
# before the move has them already, so each step applies only what is missing (ADR 0002).

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from workstation.migration_operations import (
    AddConstraintIfMissing,
    AddFieldIfMissing,
    CreateModelIfMissing,
)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0002_apiclient_webhook_secret_apiclient_webhook_url"),
        ("avatars", "0002_remove_avatar_lease_expires_at"),
        ("jobs", "0001_initial"),
    ]

    operations = [
        CreateModelIfMissing(
            name="CreditEntry",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "credit_type",
                    models.CharField(
                        choices=[("avatar", "Avatar training"), ("generation", "Generation")],
                        max_length=16,
                    ),
                ),
                ("amount", models.IntegerField()),
                (
                    "reason",
                    models.CharField(
                        choices=[("grant", "Grant"), ("charge", "Charge"), ("refund", "Refund")],
                        max_length=16,
                    ),
                ),
                ("note", models.CharField(blank=True, max_length=300)),
                ("idempotency_key", models.CharField(blank=True, max_length=128)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "avatar",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="avatars.avatar",
                    ),
                ),
                (
                    "end_user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="credit_entries",
                        to="accounts.enduser",
                    ),
                ),
            ],
            options={
                "db_table": "rendering_creditentry",
                "ordering": ["-created_at", "-id"],
            },
        ),
        AddFieldIfMissing(
            model_name="creditentry",
            name="job",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="credit_entries",
                to="jobs.renderjob",
            ),
        ),
        AddConstraintIfMissing(
            model_name="creditentry",
            constraint=models.UniqueConstraint(
                condition=models.Q(("idempotency_key", ""), _negated=True),
                fields=("end_user", "idempotency_key"),
                name="unique_grant_idempotency_key",
            ),
        ),
        AddConstraintIfMissing(
            model_name="creditentry",
            constraint=models.UniqueConstraint(
                condition=models.Q(("reason", "refund")), fields=("job",), name="one_refund_per_job"
            ),
        ),
    ]
