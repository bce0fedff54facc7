"""Reads for templates that other apps need."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Template, TemplateStatus


def published_templates() -> QuerySet[Template]:
    """The catalog: published templates with a live revision, in catalog order."""
    return (Template.objects.filter(status=TemplateStatus.PUBLISHED,
                                    live_revision__isnull=False)
            .select_related("live_revision").order_by("catalog_order", "title"))
