"""The template spec format: a JSON Schema the API publishes, and its translation to renders.

A revision's spec is plain JSON. Control images are referenced by asset hash, among the
revision author's own assets; test avatars and seeds are chosen per preview cell; the engine
receives bytes and ids, never URLs.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from engine.spec import SAMPLERS as ENGINE_SAMPLERS
from jobs.assets import asset_ref
from workstation.errors import InvalidInput

# The engine's list is the only one: the spec schema publishes it to the studio.
SAMPLERS = list(ENGINE_SAMPLERS)
CONTROL_KINDS = ["pose", "canny", "depth", "lighting", "reference"]
ASPECT_RATIOS = {"1:1": (1, 1), "3:4": (3, 4), "4:3": (4, 3), "2:3": (2, 3), "9:16": (9, 16)}

_weight = {"type": "number", "minimum": 0, "maximum": 2}
_unit = {"type": "number", "minimum": 0, "maximum": 1}

TEMPLATE_SPEC_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://portrait-workstation.example/schemas/template-spec-v1.json",
    "title": "Template revision spec",
    "type": "object",
    "additionalProperties": False,
    "required": ["prompt", "seeds"],
    "properties": {
        "prompt": {
            "type": "string",
            "minLength": 1,
            "maxLength": 2000,
            "pattern": r"\{subject\}",
            "description": "Positive prompt; {subject} becomes the avatar's trigger.",
        },
        "negative_prompt": {"type": "string", "maxLength": 2000, "default": ""},
        "base_model": {
            "type": ["string", "null"],
            "maxLength": 100,
            "default": None,
            "description": "Engine registry key; null = the default base model.",
        },
        "style_loras": {
            "type": "array",
            "maxItems": 5,
            "default": [],
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "weight"],
                "properties": {
                    "key": {"type": "string", "minLength": 1, "maxLength": 100},
                    "weight": _weight,
                },
            },
        },
        "controls": {
            "type": "array",
            "maxItems": 4,
            "default": [],
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["kind", "asset"],
                "properties": {
                    "kind": {"enum": CONTROL_KINDS},
                    "asset": {
                        "type": "string",
                        "pattern": "^[0-9a-f]{64}$",
                        "description": "sha256 of one of your uploaded control assets",
                    },
                    "conditioning_scale": {
                        **_weight,
                        "default": 1.0,
                        "description": "ControlNet scale; img2img strength for "
                        "lighting and reference",
                    },
                    "start": {**_unit, "default": 0.0},
                    "end": {**_unit, "default": 1.0},
                },
            },
        },
        "sampler": {"enum": SAMPLERS, "default": "dpmpp_2m"},
        "steps": {"type": "integer", "minimum": 1, "maximum": 150, "default": 25},
        "guidance": {"type": "number", "minimum": 0, "maximum": 30, "default": 5.0},
        "size": {
            "type": "object",
            "additionalProperties": False,
            "required": ["width", "height"],
            "properties": {
                "width": {"type": "integer", "minimum": 64, "maximum": 2048, "multipleOf": 8},
                "height": {"type": "integer", "minimum": 64, "maximum": 2048, "multipleOf": 8},
            },
        },
        "aspect_ratio": {"enum": sorted(ASPECT_RATIOS)},
        "seeds": {
            "type": "array",
            "minItems": 1,
            "maxItems": 8,
            "uniqueItems": True,
            "items": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
        },
        "candidates": {"type": "integer", "minimum": 1, "maximum": 16, "default": 4},
        "keep": {"type": "integer", "minimum": 1, "maximum": 16, "default": 2},
        "default_likeness": {"type": "number", "minimum": 0.3, "maximum": 1.5, "default": 0.9},
        "face_refinement": {"type": "boolean", "default": False},
        "change_note": {"type": "string", "maxLength": 500, "default": ""},
    },
}

_VALIDATOR = Draft202012Validator(TEMPLATE_SPEC_SCHEMA)


def _field(error) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return f"{path}.{missing}" if path else missing
    if error.validator == "additionalProperties":
        extra = error.message.split("'")[1]
        return f"{path}.{extra}" if path else extra
    return path or "spec"


def validate_template_spec(spec: Any, *, base_size: int) -> dict[str, Any]:
    """Validates a spec and returns it with defaults filled. Errors name the field (400)."""
    if not isinstance(spec, dict):
        raise InvalidInput({"spec": ["Must be a JSON object."]})
    fields: dict[str, list[str]] = {}
    for error in sorted(_VALIDATOR.iter_errors(spec), key=lambda e: list(e.absolute_path)):
        fields.setdefault(_field(error), []).append(error.message)
    if fields:
        raise InvalidInput(fields, message="The template spec has invalid fields.")
    filled = {
        key: schema["default"]
        for key, schema in TEMPLATE_SPEC_SCHEMA["properties"].items()
        if "default" in schema
    }
    filled.update(spec)
    filled["controls"] = [
        {"conditioning_scale": 1.0, "start": 0.0, "end": 1.0, **c} for c in filled["controls"]
    ]
    if "size" in filled and "aspect_ratio" in filled:
        raise InvalidInput({"aspect_ratio": ["Give either size or aspect_ratio, not both."]})
    if filled["keep"] > filled["candidates"]:
        raise InvalidInput({"keep": ["Cannot keep more images than there are candidates."]})
    for index, control in enumerate(filled["controls"]):
        if control["start"] >= control["end"]:
            raise InvalidInput({f"controls.{index}.end": ["Must be greater than start."]})
    if "size" not in filled:
        filled["size"] = size_for(filled.get("aspect_ratio", "1:1"), base_size)
    return filled


def size_for(aspect_ratio: str, base: int) -> dict[str, int]:
    """Width and height, multiples of 8, with the shorter side at `base` pixels."""
    w, h = ASPECT_RATIOS[aspect_ratio]
    short = min(w, h)
    return {
        "width": max(64, round(base * w / short / 8) * 8),
        "height": max(64, round(base * h / short / 8) * 8),
    }


# With the LoRA, the identity adapter adds to a likeness the LoRA already carries.
IDENTITY_SCALE_WITH_LORA = 0.5
IDENTITIES = ("instant", "lora", "both")


def identity_fields(identity: str, *, avatar_id: str, likeness: float) -> dict[str, Any]:
    """The engine spec's ``avatar`` and/or ``identity`` entries for an identity choice."""
    if identity not in IDENTITIES:
        raise ValueError(f"identity must be one of {IDENTITIES}, got {identity!r}")
    fields: dict[str, Any] = {}
    if identity in ("lora", "both"):
        fields["avatar"] = {"id": avatar_id, "weight": likeness}
    if identity in ("instant", "both"):
        scale = likeness * (IDENTITY_SCALE_WITH_LORA if identity == "both" else 1.0)
        fields["identity"] = {"id": avatar_id, "scale": round(scale, 4)}
    return fields


def identity_of_spec(spec: dict[str, Any]) -> str | None:
    """Which identity a job's engine spec used: "instant", "lora", "both" or None."""
    lora, adapter = "avatar" in spec, "identity" in spec
    if lora and adapter:
        return "both"
    return "lora" if lora else ("instant" if adapter else None)


def render_spec_for_cell(
    spec: dict[str, Any],
    *,
    avatar_id: str,
    seed: int,
    asset_owner_id: int,
    likeness: float | None = None,
    identity: str = "lora",
) -> dict[str, Any]:
    """The engine spec for one preview cell. Images stay references to the assets of
    `asset_owner_id` (the revision's author, whose assets its spec names by sha256):
    {"asset": "<owner id>/<sha256>"} (`jobs.assets.asset_ref`).

    ``identity`` says how the avatar enters the render (`avatars.models.Identity`): "lora"
    (its LoRA at the likeness weight), "instant" (the identity adapter at a scale equal to the
    likeness) or "both" (the LoRA at the likeness weight, the adapter at
    `IDENTITY_SCALE_WITH_LORA` x the likeness)."""
    engine: dict[str, Any] = {
        "prompt": spec["prompt"],
        "negative_prompt": spec["negative_prompt"],
        "base_model": spec["base_model"],
        "sampler": spec["sampler"],
        "steps": spec["steps"],
        "guidance": spec["guidance"],
        "width": spec["size"]["width"],
        "height": spec["size"]["height"],
        "seed": seed,
        "style_loras": [{"key": s["key"], "weight": s["weight"]} for s in spec["style_loras"]],
        "controls": [],
    }
    engine.update(
        identity_fields(
            identity, avatar_id=avatar_id, likeness=likeness or spec["default_likeness"]
        )
    )
    for control in spec["controls"]:
        image = {"asset": asset_ref(asset_owner_id, control["asset"])}
        if control["kind"] == "lighting":
            engine["lighting"] = {
                "image": image,
                "strength": min(control["conditioning_scale"], 1.0),
            }
        elif control["kind"] == "reference":
            engine["reference"] = {
                "image": image,
                "mode": "img2img",
                "strength": min(control["conditioning_scale"], 1.0),
            }
        else:
            engine["controls"].append(
                {
                    "kind": control["kind"],
                    "image": image,
                    "conditioning_scale": control["conditioning_scale"],
                    "start": control["start"],
                    "end": control["end"],
                }
            )
    if spec["face_refinement"]:
        engine["face_refine"] = {}
    return engine


def spec_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[dict]:
    """Field-by-field differences: [{"field", "old", "new"}], dotted paths, sorted."""
    changes: list[dict] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}.{key}" if prefix else str(key)
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += spec_diff(a, b, path)
        elif (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(isinstance(x, dict) for x in a + b)
        ):
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                changes += spec_diff(x, y, f"{path}.{index}")
        elif a != b:
            changes.append({"field": path, "old": a, "new": b})
    return changes
