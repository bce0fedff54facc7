"""Where content-addressed control assets live in storage, and how job specs refer to them.

Job specs are JSON: an image appears as {"asset": "<sha256>"}. Just before rendering, the
worker replaces each reference with the asset's bytes (the engine takes bytes, never URLs).
"""

from __future__ import annotations

from typing import Any

from django.core.files.storage import default_storage


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
