"""Designer previews as a job kind: one cell of a revision's preview grid per job."""

from __future__ import annotations

from jobs.models import PRIORITY_STUDIO, Lane
from jobs.registry import JobKindSpec, register

PREVIEW = "preview"


def register_kinds() -> None:
    from .services import preview_cell_finished

    register(
        JobKindSpec(
            name=PREVIEW,
            lane=Lane.RENDER,
            priority=PRIORITY_STUDIO,
            on_finished=(preview_cell_finished,),
        )
    )
