"""Reads for templates that other apps need."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Template, TemplateStatus


def published_templates() -> QuerySet[Template]:
    """The catalog: templates with a live revision (also while a newer revision is in review),
    in catalog order. Unpublishing and retiring clear the live revision."""
    return (
        Template.objects.filter(live_revision__isnull=False)
        .exclude(status=TemplateStatus.RETIRED)
        .select_related("live_revision")
        .order_by("catalog_order", "title")
    )
