"""Where content-addressed control assets live in storage, and how job specs refer to them.

Job specs are JSON: an image appears as {"asset": "<sha256>"}. Just before rendering, the
worker replaces each reference with the asset's bytes (the engine takes bytes, never URLs).
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any

from django.core.files.storage import default_storage
from PIL import Image


def asset_storage_name(sha256: str) -> str:
    return f"assets/{sha256[:2]}/{sha256}.png"


def resolve_asset_refs(value: Any) -> Any:
    """A copy of `value` with every {"asset": sha256} replaced by that asset's bytes."""
    if isinstance(value, dict):
        if set(value) == {"asset"} and isinstance(value["asset"], str):
            with default_storage.open(asset_storage_name(value["asset"]), "rb") as handle:
                return handle.read()
        return {key: resolve_asset_refs(item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_asset_refs(item) for item in value]
    return value


@lru_cache(maxsize=1)
def _placeholder_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    return buffer.getvalue()


def with_placeholder_images(value: Any) -> Any:
    """A copy of a job spec with every {"asset": sha256} replaced by a 1x1 PNG: for reading a
    spec's shape and numbers (batch keys, refinement) without touching storage."""
    if isinstance(value, dict):
        if set(value) == {"asset"}:
            return _placeholder_png()
        return {key: with_placeholder_images(item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_placeholder_images(item) for item in value]
    return value
