# Terminal hooks that raised, kept for the sweeper to retry (jobs/finishing.py).

from django.db import migrations, models

from workstation.migration_operations import AddFieldIfMissing


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
    ]

    operations = [
        AddFieldIfMissing(
            model_name="renderjob",
            name="pending_hooks",
            field=models.JSONField(blank=True, default=list),
        ),
        AddFieldIfMissing(
            model_name="renderjob",
            name="has_pending_hooks",
            field=models.BooleanField(db_index=True, default=False),
        ),
    ]
