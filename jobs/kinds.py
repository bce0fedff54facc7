"""The one kind the queue owns itself: the operators' test render (a diagnostic that runs the
whole path, API -> queue -> worker -> engine -> storage). Product kinds are registered by
their apps (avatars: training; templates_studio: preview; generations: generation, refinement).
"""

from __future__ import annotations

from .models import PRIORITY_DIAGNOSTIC, Lane
from .registry import JobKindSpec, register

TEST_RENDER = "test_render"


def register_kinds() -> None:
    # Labelled like every other output (visible text, XMP, watermark with the job id): a test
    # render is an AI-generated image too, and may leave the building. Reproducibility is
    # checked on RenderOutput.content_sha256 (the pixels before the labels).
    register(
        JobKindSpec(name=TEST_RENDER, lane=Lane.RENDER, priority=PRIORITY_DIAGNOSTIC, labelled=True)
    )
