# The preview cell's job: its own migration since the queue moved to the `jobs` app (ADR 0002);
# databases made before the move already have the column.

import django.db.models.deletion
from django.db import migrations, models

from workstation.migration_operations import AddFieldIfMissing


class Migration(migrations.Migration):
    dependencies = [
        ("templates_studio", "0001_initial"),
        ("jobs", "0001_initial"),
    ]

    operations = [
        AddFieldIfMissing(
            model_name="previewcell",
            name="job",
            field=models.OneToOneField(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="preview_cell",
                to="jobs.renderjob",
            ),
        ),
    ]
