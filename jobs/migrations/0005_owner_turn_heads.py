"""The turn index (jobs.turns): each owner's oldest queued job per lane and class, so that a
claim reads a bounded number of rows. Existing queues get their heads filled in here."""

from django.db import migrations, models
from django.db.models import Min, Q

NEVER_SERVED = "2000-01-01T00:00:00+00:00"


def fill_heads(apps, schema_editor):
    RenderJob = apps.get_model("jobs", "RenderJob")
    OwnerTurn = apps.get_model("jobs", "OwnerTurn")
    heads = (
        RenderJob.objects.filter(status="queued")
        .values_list("lane", "priority", "owner_key")
        .annotate(first=Min("created_at"))
        .values_list("lane", "priority", "owner_key", "first")
    )
    for lane, priority, owner_key, first in heads.iterator():
        turn, created = OwnerTurn.objects.get_or_create(
            lane=lane,
            priority=priority,
            owner_key=owner_key,
            defaults={"last_served_at": NEVER_SERVED, "head_at": first},
        )
        if not created:
            OwnerTurn.objects.filter(pk=turn.pk).update(head_at=first)


class Migration(migrations.Migration):
    dependencies = [("jobs", "0004_error_details")]

    operations = [
        migrations.AddField(
            model_name="ownerturn",
            name="head_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="ownerturn",
            index=models.Index(
                condition=Q(head_at__isnull=False),
                fields=["lane", "priority", "last_served_at", "head_at"],
                name="owner_turn_ready_order",
            ),
        ),
        migrations.AddIndex(
            model_name="renderjob",
            index=models.Index(
                condition=Q(status="queued"),
                fields=["lane", "priority", "owner_key", "created_at"],
                name="job_queued_owner_head",
            ),
        ),
        migrations.AddIndex(
            model_name="renderjob",
            index=models.Index(
                condition=Q(status="queued", deadline_at__isnull=False),
                fields=["deadline_at"],
                name="job_queued_deadline",
            ),
        ),
        migrations.RunPython(fill_heads, migrations.RunPython.noop),
    ]
