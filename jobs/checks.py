"""System check: every kind found in the job table has a registered handler."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.db import DatabaseError

from . import registry
from .models import RenderJob


def check_job_kinds_registered(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Tagged `database`: runs with `check --database default` and before `migrate`."""
    if not kwargs.get("databases"):
        return []
    try:
        kinds = set(RenderJob.objects.values_list("kind", flat=True).distinct())
    except DatabaseError:  # not migrated yet
        return []
    unknown = sorted(kinds - set(registry.registered()))
    return [
        checks.Error(
            f"Jobs of kind {kind!r} exist but no installed app registers that kind.",
            hint="Install the app that owns it, or fail/delete those jobs.",
            id="jobs.E001",
        )
        for kind in unknown
    ]
