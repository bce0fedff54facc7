"""Where control assets live in storage, and how job specs refer to them.

Assets are per owner: each studio user's uploads are their own objects, deduplicated only
within that owner, under `assets/<owner id>/`. Job specs are JSON: an image appears as
{"asset": "<owner id>/<sha256>"} (`asset_ref`). Just before rendering, the worker replaces
each reference with the asset's bytes (the engine takes bytes, never URLs). A bare
{"asset": "<sha256>"} is a reference written before assets were per owner: it still resolves
to the old shared object (`assets/<sha256[:2]>/<sha256>.png`), which the migration that split
the assets leaves in place for such jobs.
"""

from __future__ import annotations

import io
import re
from functools import lru_cache
from typing import Any

from django.core.files.storage import default_storage
from PIL import Image

_REF = re.compile(r"^(?:(?P<owner>[0-9]{1,20})/)?(?P<sha>[0-9a-f]{64})$")


def asset_storage_name(sha256: str, owner_id: int | None) -> str:
    """The storage name of `owner_id`'s asset with this content hash (None: the old shared
    name of a pre-namespace asset)."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError("not a sha256 hex digest")
    if owner_id is None:
        return f"assets/{sha256[:2]}/{sha256}.png"
    return f"assets/{int(owner_id)}/{sha256[:2]}/{sha256}.png"


def asset_ref(owner_id: int, sha256: str) -> str:
    """The job-spec reference to `owner_id`'s asset with this content hash."""
    return f"{int(owner_id)}/{sha256}"


def ref_storage_name(ref: str) -> str:
    """The storage name a job-spec reference points at (ValueError for anything else)."""
    match = _REF.match(ref)
    if match is None:
        raise ValueError("not an asset reference")
    owner = match.group("owner")
    return asset_storage_name(match.group("sha"), int(owner) if owner is not None else None)


def resolve_asset_refs(value: Any) -> Any:
    """A copy of `value` with every {"asset": ref} replaced by that asset's bytes."""
    if isinstance(value, dict):
        if set(value) == {"asset"} and isinstance(value["asset"], str):
            try:
                name = ref_storage_name(value["asset"])
            except ValueError as exc:  # no object can have this name: missing, as the runner says
                raise FileNotFoundError(value["asset"]) from exc
            with default_storage.open(name, "rb") as handle:
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
    """A copy of a job spec with every {"asset": ref} replaced by a 1x1 PNG: for reading a
    spec's shape and numbers (batch keys, refinement) without touching storage."""
    if isinstance(value, dict):
        if set(value) == {"asset"}:
            return _placeholder_png()
        return {key: with_placeholder_images(item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_placeholder_images(item) for item in value]
    return value
