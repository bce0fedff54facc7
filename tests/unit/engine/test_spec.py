from __future__ import annotations

import dataclasses

import pytest

from engine.errors import SpecError
from engine.spec import RenderSpec


def test_from_dict_applies_defaults_and_round_trips():
    spec = RenderSpec.from_dict({"prompt": "a portrait", "seed": 7})
    assert (spec.steps, spec.width, spec.height, spec.num_images) == (4, 64, 64, 1)
    assert spec.base_model is None
    assert RenderSpec.from_dict(spec.to_dict()) == spec


def test_spec_is_frozen():
    spec = RenderSpec(prompt="a", seed=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", 0),
        ("steps", 151),
        ("steps", "4"),
        ("steps", True),
        ("seed", -1),
        ("seed", 2**32),
        ("width", 65),
        ("width", 56),
        ("height", 2056),
        ("guidance", "high"),
        ("guidance", -1.0),
        ("num_images", 0),
        ("prompt", None),
        ("negative_prompt", 3),
        ("base_model", ""),
    ],
)
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(SpecError) as info:
        RenderSpec.from_dict({"prompt": "a", "seed": 1, field: value})
    assert info.value.field == field
    assert field in str(info.value)


def test_direct_construction_is_validated_too():
    with pytest.raises(SpecError) as info:
        RenderSpec(prompt="a", seed=1, steps=0)
    assert info.value.field == "steps"


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(SpecError) as info:
        RenderSpec.from_dict({"prompt": "a", "seed": 1, "sampler": "euler"})
    assert info.value.field == "sampler"
    assert "unknown" in str(info.value)


@pytest.mark.parametrize("missing", ["prompt", "seed"])
def test_required_fields(missing):
    data = {"prompt": "a", "seed": 1}
    del data[missing]
    with pytest.raises(SpecError) as info:
        RenderSpec.from_dict(data)
    assert info.value.field == missing


def test_boundaries_are_accepted():
    spec = RenderSpec.from_dict(
        {"prompt": "", "seed": 2**32 - 1, "steps": 150, "width": 2048, "height": 64, "guidance": 0}
    )
    assert spec.seed == 2**32 - 1
