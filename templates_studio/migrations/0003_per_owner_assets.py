# Control assets become per owner (security probe: identical bytes uploaded by a second designer
# answered "already there" with the first designer's upload time and made them a co-owner).
#
# Before: one row per content hash, shared by every uploader (`owners`), one storage object
# `assets/<sha[:2]>/<sha>.png`. After: one row per (owner, content hash) with its own id, time
# and storage object `assets/<owner id>/<sha[:2]>/<sha>.png`.
#
# The split gives every owner of a shared asset a row of their own, and also every author of
# a revision whose spec names the hash (revision specs refer to assets by sha256 among their
# author's assets, so every revision keeps resolving, published ones included). Storage is
# copied, never moved: the old shared objects stay where they are, because job specs written
# before this migration refer to them by bare sha256 (`jobs.assets.ref_storage_name`), and a
# copy is the only step that cannot lose an image if the migration is rolled back.
#
# Times: the first uploader (the lowest row of the old owners table) keeps the asset's time;
# every other owner gets the time of their own earliest revision that uses it, else the
# migration's time: never another owner's upload time.
#
# An asset with no owner and no revision naming it (unreachable by anyone) is not carried over.

from __future__ import annotations

import re
import uuid
from collections import defaultdict

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import migrations, models

_SHA = re.compile(r"^[0-9a-f]{64}$")


def _shared_name(sha256: str) -> str:
    return f"assets/{sha256[:2]}/{sha256}.png"


def _owner_name(sha256: str, owner_id: int) -> str:
    # Frozen copy of jobs.assets.asset_storage_name(sha256, owner_id) as of this migration.
    return f"assets/{int(owner_id)}/{sha256[:2]}/{sha256}.png"


def _copy(source: str, target: str) -> str:
    """Copies `source` to `target` in storage (kept if already there); the name to use.
    A source that is missing is left as the row's name: there is nothing to copy."""
    if default_storage.exists(target):
        return target
    try:
        with default_storage.open(source, "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, OSError):
        return source
    return default_storage.save(target, ContentFile(data))


def _revision_uses(apps) -> dict[str, dict[int, object]]:
    """sha256 -> {author id: their earliest revision's time} over every revision spec."""
    Revision = apps.get_model("templates_studio", "TemplateRevision")
    uses: dict[str, dict[int, object]] = defaultdict(dict)
    rows = Revision.objects.order_by("created_at").values_list(
        "created_by_id", "spec", "created_at"
    )
    for author_id, spec, created_at in rows.iterator():
        controls = spec.get("controls") if isinstance(spec, dict) else None
        for control in controls if isinstance(controls, list) else []:
            sha = control.get("asset") if isinstance(control, dict) else None
            if isinstance(sha, str) and _SHA.match(sha):
                uses[sha].setdefault(author_id, created_at)
    return uses


def split_shared_assets(apps, schema_editor) -> None:
    Legacy = apps.get_model("templates_studio", "LegacyControlAsset")
    Asset = apps.get_model("templates_studio", "ControlAsset")
    Through = Legacy.owners.through
    uses = _revision_uses(apps)
    now = django.utils.timezone.now()
    for legacy in Legacy.objects.order_by("created_at").iterator():
        in_order = list(
            Through.objects.filter(legacycontrolasset_id=legacy.pk)
            .order_by("pk")
            .values_list("user_id", flat=True)
        )
        authors = uses.get(legacy.sha256, {})
        owners = list(dict.fromkeys([*in_order, *sorted(authors)]))
        for position, owner_id in enumerate(owners):
            created_at = legacy.created_at if position == 0 else authors.get(owner_id, now)
            Asset.objects.create(
                id=uuid.uuid4(),
                owner_id=owner_id,
                sha256=legacy.sha256,
                kind=legacy.kind,
                storage_name=_copy(legacy.storage_name, _owner_name(legacy.sha256, owner_id)),
                width=legacy.width,
                height=legacy.height,
                keypoints=legacy.keypoints,
                created_at=created_at,
            )


def merge_owner_assets(apps, schema_editor) -> None:
    """Back to one shared row per hash (the earliest row's fields, every owner)."""
    Legacy = apps.get_model("templates_studio", "LegacyControlAsset")
    Asset = apps.get_model("templates_studio", "ControlAsset")
    merged: dict[str, object] = {}
    for asset in Asset.objects.order_by("created_at", "pk").iterator():
        legacy = merged.get(asset.sha256)
        if legacy is None:
            legacy = Legacy.objects.create(
                sha256=asset.sha256,
                kind=asset.kind,
                storage_name=_copy(asset.storage_name, _shared_name(asset.sha256)),
                width=asset.width,
                height=asset.height,
                keypoints=asset.keypoints,
                created_at=asset.created_at,
            )
            merged[asset.sha256] = legacy
        legacy.owners.add(asset.owner_id)


class Migration(migrations.Migration):
    dependencies = [
        ("templates_studio", "0002_previewcell_job"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameModel("ControlAsset", "LegacyControlAsset"),
        migrations.AlterField(
            model_name="legacycontrolasset",
            name="owners",
            field=models.ManyToManyField(related_name="+", to=settings.AUTH_USER_MODEL),
        ),
        migrations.CreateModel(
            name="ControlAsset",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("sha256", models.CharField(db_index=True, max_length=64)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("pose", "Pose"),
                            ("canny", "Canny edges"),
                            ("depth", "Depth"),
                            ("lighting", "Lighting map"),
                            ("reference", "Reference image"),
                        ],
                        max_length=16,
                    ),
                ),
                ("storage_name", models.CharField(max_length=255)),
                ("width", models.PositiveIntegerField()),
                ("height", models.PositiveIntegerField()),
                ("keypoints", models.JSONField(blank=True, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "owner",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="control_assets",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("owner", "sha256"), name="unique_asset_per_owner"
                    )
                ],
            },
        ),
        migrations.RunPython(split_shared_assets, merge_owner_assets),
        migrations.DeleteModel("LegacyControlAsset"),
    ]
