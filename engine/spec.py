"""What to render, as plain validated data.

A `RenderSpec` travels from the web process through the task queue to a GPU worker, so it is
a frozen dataclass of plain values and this module imports neither torch nor Django.
Validation happens in `__post_init__`, so a spec that exists is a spec that is valid, however it
was built; `from_dict` adds the checks only untrusted input needs (unknown keys, JSON types).

Version 2 (a superset of version 1: every v1 spec is still valid and renders the same)::

    {
      "prompt": "{subject}, business portrait, studio light",   # {subject} -> avatar trigger
      "negative_prompt": "blurry",
      "base_model": null,                   # registry key; null = default base
      "style_loras": [{"key": "urban-style", "weight": 0.7}],   # or {"path": ..., "weight": ...}
      "avatar": {"id": "a1b2", "weight": 0.95},                 # weights come from AvatarSource
      "identity": {"id": "a1b2", "scale": 0.6},  # instant identity (engine.identity), with or
                                                 # without the avatar LoRA
      "controls": [{"kind": "pose", "image": <bytes|PIL>, "conditioning_scale": 1.0,
                    "start": 0.0, "end": 1.0}],
      "lighting": {"image": <bytes|PIL>, "strength": 0.7},      # light map as img2img start
      "reference": {"image": <bytes|PIL>, "mode": "inpaint", "strength": 0.45,
                    "mask": <bytes|PIL>},
      "face_refine": {"strength": 0.35},    # re-render the face crop with the avatar boosted
      "sampler": "dpmpp_2m", "steps": 25, "guidance": 5.0, "width": 512, "height": 512,
      "seeds": [1, 2, 3, 4],                # or "seed": 1 with "num_images" (alias
      "keep": 2                             #   "num_candidates") seeds seed, seed+1, ...
    }

Nested objects may be given as dicts or as the dataclasses below; both are validated, and an
error names the nested field, e.g. ``controls.0.conditioning_scale``. Images are ``bytes``
(JPEG/PNG/WEBP, checked by magic bytes here, decoded safely at render time) or PIL images: the
caller resolves storage. A spec holding images is therefore not JSON: `to_dict` returns the
images as they were given.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from engine.errors import SpecError

MAX_SEED = 2**32 - 1
MIN_SIZE = 64
MAX_SIZE = 2048
SIZE_MULTIPLE = 8
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MAX_IMAGES = 16
MAX_PROMPT_CHARS = 2000
MAX_STYLE_LORAS = 5
MAX_CONTROLS = 3
MAX_LORA_WEIGHT = 2.0
MAX_AVATAR_WEIGHT = 1.5
MAX_CONDITIONING_SCALE = 2.0
MAX_IDENTITY_SCALE = 2.0
MAX_REFINE_LEVEL = 10
SUBJECT_PLACEHOLDER = "{subject}"
DEFAULT_SUBJECT = "a person"

# Sampler names accepted in specs; engine.pipelines maps each to a diffusers scheduler.
SAMPLERS = ("euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc", "heun")
CONTROL_KINDS = ("pose", "canny", "depth")
REFERENCE_MODES = ("img2img", "inpaint")
ReferenceMode = Literal["img2img", "inpaint"]


def _check_int(field: str, value: Any, low: int, high: int) -> None:
    # bool is an int subclass; `"steps": true` is a client bug, not 1 step.
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise SpecError(field, f"must be between {low} and {high}, got {value}")


def _check_float(field: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(field, f"must be a number, got {type(value).__name__}")
    if not low <= value <= high:
        raise SpecError(field, f"must be between {low} and {high}, got {value}")


def _check_text(field: str, value: Any) -> None:
    if not isinstance(value, str):
        raise SpecError(field, f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARS:
        raise SpecError(field, f"must be at most {MAX_PROMPT_CHARS} characters")


def _check_size(field: str, value: Any) -> None:
    # Latents are 1/8 of the image in SD models, so other sizes fail deep inside the pipeline.
    _check_int(field, value, MIN_SIZE, MAX_SIZE)
    if value % SIZE_MULTIPLE:
        raise SpecError(field, f"must be a multiple of {SIZE_MULTIPLE}, got {value}")


def _check_model_key(field: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise SpecError(field, "must be a non-empty model key or null")


def _check_choice(field: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise SpecError(field, f"must be one of {list(allowed)}, got {value!r}")


def is_pil_image(value: Any) -> bool:
    """True for a PIL image, without importing PIL (if PIL is not loaded, it cannot be one)."""
    module = sys.modules.get("PIL.Image")
    return module is not None and isinstance(value, module.Image)


def _check_image(field: str, value: Any) -> None:
    if is_pil_image(value):
        if value.width < 1 or value.height < 1:
            raise SpecError(field, "image is empty")
        return
    if not isinstance(value, bytes):
        raise SpecError(field, f"must be image bytes or a PIL image, got {type(value).__name__}")
    from engine.imageio import sniff_format  # Pillow only; keeps this module light to import

    if sniff_format(value) is None:
        raise SpecError(field, "must be a JPEG, PNG or WEBP image")


def _nested(field: str, cls: type, value: Any) -> Any:
    """``value`` as a ``cls`` instance (from a dict or as is), errors prefixed with ``field``."""
    if isinstance(value, cls):
        # Already validated by its own __post_init__; nothing to prefix.
        return value
    if not isinstance(value, Mapping):
        raise SpecError(field, f"must be an object, got {type(value).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key in value:
        if key not in names:
            raise SpecError(f"{field}.{key}", "unknown field")
    for name, f in names.items():
        if f.default is dataclasses.MISSING and name not in value:
            raise SpecError(f"{field}.{name}", "is required")
    try:
        return cls(**value)
    except SpecError as exc:
        raise SpecError(f"{field}.{exc.field}", exc.message) from exc


def _nested_list(field: str, cls: type, value: Any, limit: int) -> tuple[Any, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise SpecError(field, f"must be a list, got {type(value).__name__}")
    if len(value) > limit:
        raise SpecError(field, f"must have at most {limit} entries, got {len(value)}")
    return tuple(_nested(f"{field}.{i}", cls, item) for i, item in enumerate(value))


def _validate_fields(obj: Any, validators: Mapping[str, Callable[[str, Any], None]]) -> None:
    for f in dataclasses.fields(obj):
        validators[f.name](f.name, getattr(obj, f.name))


@dataclass(frozen=True)
class LoraRef:
    """A style LoRA: a registry ``key`` (kind ``lora``) or a local ``path``, and its weight.

    ``path`` is read from the worker's filesystem: callers that take specs from users should
    accept registry keys only.
    """

    key: str | None = None
    path: str | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        _check_model_key("key", self.key)
        if self.path is not None and (not isinstance(self.path, str) or not self.path.strip()):
            raise SpecError("path", "must be a non-empty path or null")
        if (self.key is None) == (self.path is None):
            raise SpecError("key", "give exactly one of key or path")
        _check_float("weight", self.weight, -MAX_LORA_WEIGHT, MAX_LORA_WEIGHT)


@dataclass(frozen=True)
class AvatarRef:
    """The user's avatar LoRA by id; the engine gets its weights from an `AvatarSource`."""

    id: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise SpecError("id", "must be a non-empty avatar id")
        _check_float("weight", self.weight, 0.0, MAX_AVATAR_WEIGHT)


@dataclass(frozen=True)
class IdentityRef:
    """The user's identity embedding by id (`engine.identity`: the engine gets it from an
    `IdentitySource`), applied through the base model's identity adapter at ``scale``.
    Renders in one batch share one scale (`engine.batching.batch_key`)."""

    id: str
    scale: float = 0.6

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise SpecError("id", "must be a non-empty identity id")
        _check_float("scale", self.scale, 0.0, MAX_IDENTITY_SCALE)


@dataclass(frozen=True)
class ControlSpec:
    """A ControlNet condition: a ready conditioning image (pose skeleton, edges, depth map).

    ``model`` picks a registry ControlNet by key; by default the first registered ControlNet
    of the base model's family whose ``controlnet_kind`` is ``kind``. The control acts from
    ``start`` to ``end`` (fractions of the denoising schedule).
    """

    kind: str
    image: Any
    conditioning_scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    model: str | None = None

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, CONTROL_KINDS)
        _check_image("image", self.image)
        _check_float("conditioning_scale", self.conditioning_scale, 0.0, MAX_CONDITIONING_SCALE)
        _check_float("start", self.start, 0.0, 1.0)
        _check_float("end", self.end, 0.0, 1.0)
        if self.end <= self.start:
            raise SpecError("end", f"must be greater than start ({self.start}), got {self.end}")
        _check_model_key("model", self.model)


@dataclass(frozen=True)
class LightingSpec:
    """A light map (bright where light should fall) used as the img2img starting image."""

    image: Any
    strength: float = 0.7

    def __post_init__(self) -> None:
        _check_image("image", self.image)
        _check_float("strength", self.strength, 0.05, 1.0)


@dataclass(frozen=True)
class ReferenceSpec:
    """A template reference photo, redrawn (``img2img``) or partly repainted (``inpaint``:
    white in ``mask`` = repaint)."""

    image: Any
    mode: ReferenceMode = "img2img"
    strength: float = 0.6
    mask: Any = None

    def __post_init__(self) -> None:
        _check_image("image", self.image)
        _check_choice("mode", self.mode, REFERENCE_MODES)
        _check_float("strength", self.strength, 0.05, 1.0)
        if self.mask is not None:
            _check_image("mask", self.mask)
        if self.mode == "inpaint" and self.mask is None:
            raise SpecError("mask", "is required when mode is inpaint")
        if self.mode == "img2img" and self.mask is not None:
            raise SpecError("mask", "is only used when mode is inpaint")


@dataclass(frozen=True)
class FaceRefineSpec:
    """Second pass on each output's largest face: a square crop of ``padding`` x the face box
    is inpainted at ``strength`` with the avatar weight raised by ``avatar_boost`` (style LoRAs
    at half weight), then pasted back with feathered edges. Outputs without a detected face
    are left as they are."""

    strength: float = 0.35
    padding: float = 1.8
    avatar_boost: float = 0.15

    def __post_init__(self) -> None:
        _check_float("strength", self.strength, 0.05, 1.0)
        _check_float("padding", self.padding, 1.0, 4.0)
        _check_float("avatar_boost", self.avatar_boost, 0.0, 1.0)


def _check_seeds(field: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, tuple) or not value:
        raise SpecError(field, "must be a non-empty list of seeds or null")
    if len(value) > MAX_IMAGES:
        raise SpecError(field, f"must have at most {MAX_IMAGES} seeds, got {len(value)}")
    for i, seed in enumerate(value):
        _check_int(f"{field}.{i}", seed, 0, MAX_SEED)


def _optional(check: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    def validate(field: str, value: Any) -> None:
        if value is not None:
            check(field, value)

    return validate


def _no_check(field: str, value: Any) -> None:
    """For fields already checked while being coerced in `RenderSpec.__post_init__`."""


_VALIDATORS: dict[str, Callable[[str, Any], None]] = {
    "prompt": _check_text,
    "negative_prompt": _check_text,
    "base_model": _check_model_key,
    "seed": _optional(lambda f, v: _check_int(f, v, 0, MAX_SEED)),
    "steps": lambda f, v: _check_int(f, v, 1, MAX_STEPS),
    "guidance": lambda f, v: _check_float(f, v, 0.0, MAX_GUIDANCE),
    "width": _check_size,
    "height": _check_size,
    "num_images": lambda f, v: _check_int(f, v, 1, MAX_IMAGES),
    "seeds": _check_seeds,
    "keep": _optional(lambda f, v: _check_int(f, v, 1, MAX_IMAGES)),
    "sampler": _optional(lambda f, v: _check_choice(f, v, SAMPLERS)),
    "style_loras": _no_check,
    "avatar": _no_check,
    "identity": _no_check,
    "controls": _no_check,
    "lighting": _no_check,
    "reference": _no_check,
    "face_refine": _no_check,
    "refine_level": lambda f, v: _check_int(f, v, 0, MAX_REFINE_LEVEL),
}

# field -> (nested class, list limit or None for a single optional object)
_NESTED: dict[str, tuple[type, int | None]] = {
    "style_loras": (LoraRef, MAX_STYLE_LORAS),
    "avatar": (AvatarRef, None),
    "identity": (IdentityRef, None),
    "controls": (ControlSpec, MAX_CONTROLS),
    "lighting": (LightingSpec, None),
    "reference": (ReferenceSpec, None),
    "face_refine": (FaceRefineSpec, None),
}

# Accepted by from_dict as another name for a field.
_ALIASES = {"num_candidates": "num_images"}


@dataclass(frozen=True)
class RenderSpec:
    """A render request: ``num_images`` candidates are rendered, the best ``keep`` returned.

    Candidate ``i`` uses seed ``seeds[i]`` when ``seeds`` is given (then ``num_images`` is
    ``len(seeds)``), else ``seed + i``; any candidate can be reproduced alone with its seed.
    ``keep=None`` returns every candidate. Candidates are ranked by likeness when the render
    gets a reference embedding, else kept in seed order. ``sampler=None`` keeps the base
    model's own scheduler. ``refine_level`` counts "more like me" steps (see
    `engine.likeness.refine_spec`); it is informational, the weights already include it.
    """

    prompt: str
    seed: int | None = None
    negative_prompt: str = ""
    base_model: str | None = None
    steps: int = 4
    guidance: float = 5.0
    width: int = 64
    height: int = 64
    num_images: int = 1
    seeds: tuple[int, ...] | None = None
    keep: int | None = None
    sampler: str | None = None
    style_loras: tuple[LoraRef, ...] = ()
    avatar: AvatarRef | None = None
    controls: tuple[ControlSpec, ...] = ()
    lighting: LightingSpec | None = None
    reference: ReferenceSpec | None = None
    face_refine: FaceRefineSpec | None = None
    refine_level: int = 0
    identity: IdentityRef | None = None

    def __post_init__(self) -> None:
        if isinstance(self.seeds, list):
            object.__setattr__(self, "seeds", tuple(self.seeds))
        for name, (cls, limit) in _NESTED.items():
            value = getattr(self, name)
            if limit is None:
                if value is not None:
                    object.__setattr__(self, name, _nested(name, cls, value))
            else:
                object.__setattr__(self, name, _nested_list(name, cls, value, limit))
        _validate_fields(self, _VALIDATORS)
        if self.seed is None and self.seeds is None:
            raise SpecError("seed", "is required (or give seeds)")
        if self.seed is not None and self.seeds is not None:
            raise SpecError("seeds", "give either seed or seeds, not both")
        if self.seeds is not None and self.num_images not in (1, len(self.seeds)):
            raise SpecError("num_images", f"must be {len(self.seeds)} (the number of seeds)")
        if self.keep is not None and self.keep > self.num_candidates:
            raise SpecError(
                "keep", f"must be at most the number of candidates ({self.num_candidates})"
            )
        if self.lighting is not None and self.reference is not None:
            raise SpecError("lighting", "cannot be combined with reference")

    @property
    def num_candidates(self) -> int:
        return len(self.seeds) if self.seeds is not None else self.num_images

    @property
    def candidate_seeds(self) -> list[int]:
        if self.seeds is not None:
            return list(self.seeds)
        assert self.seed is not None
        return [self.seed + i for i in range(self.num_images)]

    @property
    def num_kept(self) -> int:
        return self.keep if self.keep is not None else self.num_candidates

    def resolved_prompt(self, trigger: str | None) -> str:
        """The prompt with ``{subject}`` replaced by the avatar's trigger (or "a person")."""
        return self.prompt.replace(SUBJECT_PLACEHOLDER, trigger or DEFAULT_SUBJECT)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RenderSpec:
        """Build a spec from untrusted JSON-like data, rejecting unknown and missing keys."""
        if not isinstance(data, Mapping):
            raise SpecError("spec", f"must be an object, got {type(data).__name__}")
        data = dict(data)
        for alias, name in _ALIASES.items():
            if alias in data:
                if name in data:
                    raise SpecError(alias, f"give either {alias} or {name}, not both")
                data[name] = data.pop(alias)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in data:
            if key not in fields:
                raise SpecError(str(key), "unknown field")
        for name, field in fields.items():
            required = field.default is dataclasses.MISSING
            if required and name not in data:
                raise SpecError(name, "is required")
        if "seeds" in data and isinstance(data["seeds"], list):
            data["seeds"] = tuple(data["seeds"])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The inverse of `from_dict`: lists for sequences; images stay as given."""

        def plain(value: Any) -> Any:
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if isinstance(value, tuple):
                return [plain(item) for item in value]
            return value

        return plain(self)
