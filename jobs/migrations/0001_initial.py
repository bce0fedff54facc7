# Tables that moved here from the former `rendering` app keep their names; a database made
# before the move has them already, so each step applies only what is missing (ADR 0002).

import django.db.models.deletion
import django.utils.timezone
import uuid
from django.conf import settings
from django.db import migrations, models

from workstation.migration_operations import (
    AddConstraintIfMissing,
    AddIndexIfMissing,
    CreateModelIfMissing,
)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0002_apiclient_webhook_secret_apiclient_webhook_url"),
        ("avatars", "0002_remove_avatar_lease_expires_at"),
        ("templates_studio", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        CreateModelIfMissing(
            name="WorkerHeartbeat",
            fields=[
                ("name", models.CharField(max_length=128, primary_key=True, serialize=False)),
                ("lanes", models.CharField(max_length=64)),
                ("last_seen", models.DateTimeField(db_index=True)),
                ("current_job", models.UUIDField(blank=True, null=True)),
            ],
            options={
                "db_table": "rendering_workerheartbeat",
            },
        ),
        CreateModelIfMissing(
            name="OwnerTurn",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "lane",
                    models.CharField(
                        choices=[("render", "Render"), ("training", "Training")], max_length=16
                    ),
                ),
                ("priority", models.PositiveSmallIntegerField()),
                ("owner_key", models.CharField(max_length=48)),
                ("last_served_at", models.DateTimeField()),
            ],
            options={
                "db_table": "rendering_ownerturn",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("lane", "priority", "owner_key"), name="unique_owner_turn"
                    )
                ],
            },
        ),
        CreateModelIfMissing(
            name="RenderJob",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("kind", models.CharField(max_length=16)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("succeeded", "Succeeded"),
                            ("failed", "Failed"),
                            ("canceled", "Canceled"),
                            ("aborted", "Aborted"),
                        ],
                        db_index=True,
                        default="queued",
                        max_length=16,
                    ),
                ),
                ("spec", models.JSONField()),
                (
                    "lane",
                    models.CharField(
                        choices=[("render", "Render"), ("training", "Training")],
                        default="render",
                        max_length=16,
                    ),
                ),
                ("priority", models.PositiveSmallIntegerField(default=1)),
                ("owner_key", models.CharField(db_index=True, default="", max_length=48)),
                ("idempotency_key", models.CharField(blank=True, max_length=128)),
                ("deadline_at", models.DateTimeField(blank=True, null=True)),
                ("lease_expires_at", models.DateTimeField(blank=True, null=True)),
                ("worker", models.CharField(blank=True, max_length=128)),
                ("token_sent_at", models.DateTimeField(blank=True, null=True)),
                ("batch_group", models.CharField(blank=True, db_index=True, max_length=64)),
                ("max_attempts", models.PositiveSmallIntegerField(default=3)),
                ("progress_step", models.PositiveIntegerField(default=0)),
                ("progress_total", models.PositiveIntegerField(default=0)),
                ("error_code", models.CharField(blank=True, max_length=64)),
                ("error_message", models.TextField(blank=True)),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                (
                    "created_at",
                    models.DateTimeField(db_index=True, default=django.utils.timezone.now),
                ),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "avatar",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="jobs",
                        to="avatars.avatar",
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="render_jobs",
                        to=settings.AUTH_USER_MODEL,
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
                (
                    "parent",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="refinements",
                        to="jobs.renderjob",
                    ),
                ),
                (
                    "template",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="templates_studio.template",
                    ),
                ),
            ],
            options={
                "db_table": "rendering_renderjob",
                "ordering": ["-created_at"],
            },
        ),
        CreateModelIfMissing(
            name="RenderOutput",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("index", models.PositiveSmallIntegerField()),
                ("storage_name", models.CharField(max_length=255)),
                ("content_type", models.CharField(default="image/png", max_length=32)),
                ("width", models.PositiveIntegerField()),
                ("height", models.PositiveIntegerField()),
                ("seed", models.BigIntegerField()),
                ("sha256", models.CharField(max_length=64)),
                ("likeness", models.FloatField(blank=True, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="outputs",
                        to="jobs.renderjob",
                    ),
                ),
            ],
            options={
                "db_table": "rendering_renderoutput",
                "ordering": ["job", "index"],
            },
        ),
        AddIndexIfMissing(
            model_name="renderjob",
            index=models.Index(
                fields=["lane", "status", "priority", "created_at"], name="job_dispatch_order"
            ),
        ),
        AddIndexIfMissing(
            model_name="renderjob",
            index=models.Index(fields=["kind", "status", "finished_at"], name="job_recent_by_kind"),
        ),
        AddConstraintIfMissing(
            model_name="renderjob",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("created_by__isnull", False), ("end_user__isnull", True)),
                    models.Q(("created_by__isnull", True), ("end_user__isnull", False)),
                    ("kind", "training"),
                    _connector="OR",
                ),
                name="render_job_has_exactly_one_owner",
            ),
        ),
        AddConstraintIfMissing(
            model_name="renderjob",
            constraint=models.UniqueConstraint(
                condition=models.Q(("idempotency_key", ""), _negated=True),
                fields=("owner_key", "idempotency_key"),
                name="unique_idempotency_key_per_owner",
            ),
        ),
        AddConstraintIfMissing(
            model_name="renderoutput",
            constraint=models.UniqueConstraint(
                fields=("job", "index"), name="unique_output_index_per_job"
            ),
        ),
    ]
