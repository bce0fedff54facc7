"""Pluggable content-safety screening for uploads and outputs.

`CONTENT_SAFETY_CHECKER=none` (the default) screens nothing, and says so in health, the admin
and `check --deploy`. `diffusers:<path or hub id>` loads diffusers'
`StableDiffusionSafetyChecker` with its CLIP image processor through `from_pretrained`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from django.conf import settings
from PIL import Image


@dataclass(frozen=True)
class SafetyVerdict:
    flagged: bool
    detail: str = ""


class ContentSafetyChecker(Protocol):
    name: str

    def check(self, images: list[Image.Image]) -> list[SafetyVerdict]: ...


class DiffusersSafetyChecker:
    def __init__(self, source: str):
        from diffusers.pipelines.stable_diffusion.safety_checker import (
            StableDiffusionSafetyChecker,
        )
        from transformers import CLIPImageProcessor

        self.name = f"diffusers:{source}"
        self._model = StableDiffusionSafetyChecker.from_pretrained(source).eval()
        self._processor = CLIPImageProcessor.from_pretrained(source)

    def check(self, images: list[Image.Image]) -> list[SafetyVerdict]:
        import numpy as np
        import torch

        inputs = self._processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        # The checker also blanks flagged images; we only want its verdicts, so it gets
        # placeholders instead of our pixels.
        placeholders = np.zeros((len(images), 1, 1, 3), dtype=np.float32)
        with torch.no_grad():
            _, flags = self._model(clip_input=inputs.pixel_values, images=placeholders)
        return [
            SafetyVerdict(bool(flag), "flagged by the safety checker" if flag else "")
            for flag in flags
        ]


@lru_cache(maxsize=1)
def get_checker() -> ContentSafetyChecker | None:
    configured = settings.CONTENT_SAFETY_CHECKER
    if configured == "none":
        return None
    kind, _, source = configured.partition(":")
    if kind != "diffusers" or not source:
        raise ValueError(
            f"CONTENT_SAFETY_CHECKER must be 'none' or 'diffusers:<path>', not {configured!r}"
        )
    return DiffusersSafetyChecker(source)


def describe() -> str:
    if settings.CONTENT_SAFETY_CHECKER == "none":
        return "NOT CONFIGURED: uploads and outputs are not screened (CONTENT_SAFETY_CHECKER=none)"
    return f"configured: {settings.CONTENT_SAFETY_CHECKER}"
