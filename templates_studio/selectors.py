"""Reads for templates that other apps need."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TypedDict

from django.db.models import Avg, Count, QuerySet

from avatars.models import Identity

from .models import CellStatus, PreviewCell, Template, TemplateStatus


def published_templates() -> QuerySet[Template]:
    """The catalog: templates with a live revision (also while a newer revision is in review),
    in catalog order. Unpublishing and retiring clear the live revision."""
    return (
        Template.objects.filter(live_revision__isnull=False)
        .exclude(status=TemplateStatus.RETIRED)
        .select_related("live_revision")
        .order_by("catalog_order", "title")
    )


class TierLikeness(TypedDict):
    mean: float
    cells: int


def panel_likeness_by_template(
    *, templates: Iterable[Template]
) -> dict[uuid.UUID, dict[str, TierLikeness]]:
    """Per template, the mean likeness per identity (`avatars.models.Identity`: "instant",
    "lora", "both") over its live revision's succeeded preview cells that have a likeness,
    e.g. {"instant": {"mean": 0.71, "cells": 8}, "lora": {...}}. An identity without such
    cells is left out; a template without a live revision gets {}. One query for all."""
    live = {t.live_revision_id: t.pk for t in templates if t.live_revision_id is not None}
    result: dict[uuid.UUID, dict[str, TierLikeness]] = {pk: {} for pk in live.values()}
    if not live:
        return result
    rows = (
        PreviewCell.objects.filter(
            revision_id__in=live, status=CellStatus.SUCCEEDED, likeness__isnull=False
        )
        .order_by()
        .values("revision_id", "identity")
        .annotate(mean=Avg("likeness"), cells=Count("id"))
    )
    found = {(row["revision_id"], row["identity"]): row for row in rows}
    for revision_id, template_id in live.items():
        for identity in Identity.values:  # a fixed order: instant, lora, both
            row = found.get((revision_id, identity))
            if row is not None:
                result[template_id][identity] = {
                    "mean": round(row["mean"], 4),
                    "cells": row["cells"],
                }
    return result


def template_panel_likeness(*, template: Template) -> dict[str, TierLikeness]:
    """`panel_likeness_by_template` for one template."""
    return panel_likeness_by_template(templates=[template]).get(template.pk, {})
