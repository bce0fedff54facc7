"""The consumer's job kinds: a generation from a published template, and "more like me"."""

from __future__ import annotations

from jobs.models import PRIORITY_CONSUMER, Lane
from jobs.registry import JobKindSpec, register

GENERATION = "generation"
REFINEMENT = "refinement"
CONSUMER_KINDS = (GENERATION, REFINEMENT)


def register_kinds() -> None:
    from .services import refund_identical_refinement

    register(
        JobKindSpec(
            name=GENERATION, lane=Lane.RENDER, priority=PRIORITY_CONSUMER, consumer_facing=True
        )
    )
    register(
        JobKindSpec(
            name=REFINEMENT,
            lane=Lane.RENDER,
            priority=PRIORITY_CONSUMER,
            consumer_facing=True,
            on_finished=(refund_identical_refinement,),
        )
    )
