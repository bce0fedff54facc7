"""What to render, as plain validated data.

A `RenderSpec` travels from the web process through the task queue to a GPU worker, so it is
a frozen dataclass of JSON-friendly values and this module imports neither torch nor Django.
Validation happens in `__post_init__`, so a spec that exists is a spec that is valid, however it
was built; `from_dict` adds the checks only untrusted input needs (unknown keys, JSON types).

To extend the spec (LoRAs, controls, img2img...), add a field with a default and a validator
entry in `_VALIDATORS`; `from_dict` and `to_dict` pick it up from the dataclass fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import SpecError

MAX_SEED = 2**32 - 1
MIN_SIZE = 64
MAX_SIZE = 2048
SIZE_MULTIPLE = 8
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MAX_IMAGES = 16
MAX_PROMPT_CHARS = 2000


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


_VALIDATORS: dict[str, Callable[[str, Any], None]] = {
    "prompt": _check_text,
    "negative_prompt": _check_text,
    "base_model": _check_model_key,
    "seed": lambda f, v: _check_int(f, v, 0, MAX_SEED),
    "steps": lambda f, v: _check_int(f, v, 1, MAX_STEPS),
    "guidance": lambda f, v: _check_float(f, v, 0.0, MAX_GUIDANCE),
    "width": _check_size,
    "height": _check_size,
    "num_images": lambda f, v: _check_int(f, v, 1, MAX_IMAGES),
}


@dataclass(frozen=True)
class RenderSpec:
    """A text-to-image request.

    Image ``i`` of the batch uses seed ``seed + i``, so any single image can be reproduced
    later with ``num_images=1``. ``base_model=None`` means the registry's default base model.
    """

    prompt: str
    seed: int
    negative_prompt: str = ""
    base_model: str | None = None
    steps: int = 4
    guidance: float = 5.0
    width: int = 64
    height: int = 64
    num_images: int = 1

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _VALIDATORS[field.name](field.name, getattr(self, field.name))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RenderSpec:
        """Build a spec from untrusted JSON-like data, rejecting unknown and missing keys."""
        if not isinstance(data, Mapping):
            raise SpecError("spec", f"must be an object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in data:
            if key not in fields:
                raise SpecError(str(key), "unknown field")
        for name, field in fields.items():
            required = field.default is dataclasses.MISSING
            if required and name not in data:
                raise SpecError(name, "is required")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-friendly inverse of `from_dict` (for task queues and job records)."""
        return dataclasses.asdict(self)
