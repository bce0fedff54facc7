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
        RenderSpec.from_dict({"prompt": "a", "seed": 1, "scheduler": "euler"})
    assert info.value.field == "scheduler"
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


# -- version 2 -------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16  # magic bytes are all the spec checks


def _control(**overrides):
    return {"kind": "pose", "image": PNG, **overrides}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (
            {"controls": [_control(), _control(conditioning_scale=5)]},
            "controls.1.conditioning_scale",
        ),
        ({"controls": [_control(start=0.6, end=0.5)]}, "controls.0.end"),
        ({"controls": [_control(kind="openpose")]}, "controls.0.kind"),
        ({"controls": [_control(image=b"GIF89a....")]}, "controls.0.image"),
        ({"controls": [_control(image="a.png")]}, "controls.0.image"),
        ({"controls": [_control(bogus=1)]}, "controls.0.bogus"),
        ({"controls": [{"image": PNG}]}, "controls.0.kind"),
        ({"controls": _control()}, "controls"),
        ({"controls": [_control()] * 4}, "controls"),
        ({"style_loras": [{"key": "a"}, {"key": "b", "weight": 3}]}, "style_loras.1.weight"),
        ({"style_loras": [{"key": "a", "path": "/x"}]}, "style_loras.0.key"),
        ({"avatar": {"id": ""}}, "avatar.id"),
        ({"avatar": {"id": "a", "weight": -0.1}}, "avatar.weight"),
        ({"avatar": "a"}, "avatar"),
        ({"reference": {"image": PNG, "mode": "inpaint"}}, "reference.mask"),
        ({"reference": {"image": PNG, "mode": "outpaint"}}, "reference.mode"),
        ({"reference": {"image": PNG, "strength": 0}}, "reference.strength"),
        ({"lighting": {"image": PNG, "strength": 1.5}}, "lighting.strength"),
        ({"lighting": {"image": PNG}, "reference": {"image": PNG}}, "lighting"),
        ({"face_refine": {"strength": 2}}, "face_refine.strength"),
        ({"sampler": "k_lms"}, "sampler"),
        ({"keep": 2}, "keep"),
        ({"refine_level": 11}, "refine_level"),
    ],
)
def test_v2_errors_name_the_nested_field(extra, field):
    with pytest.raises(SpecError) as info:
        RenderSpec.from_dict({"prompt": "a", "seed": 1, **extra})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"prompt": "a", "seeds": [1, -2]}, "seeds.1"),
        ({"prompt": "a", "seeds": []}, "seeds"),
        ({"prompt": "a", "seed": 1, "seeds": [1]}, "seeds"),
        ({"prompt": "a", "seeds": [1, 2], "num_images": 3}, "num_images"),
        ({"prompt": "a", "seeds": [1, 2], "keep": 3}, "keep"),
        ({"prompt": "a", "seed": 1, "num_images": 2, "num_candidates": 2}, "num_candidates"),
    ],
)
def test_seed_errors(data, field):
    with pytest.raises(SpecError) as info:
        RenderSpec.from_dict(data)
    assert info.value.field == field


def test_candidates_from_seed_or_seeds():
    spec = RenderSpec.from_dict({"prompt": "a", "seed": 10, "num_candidates": 3, "keep": 2})
    assert (spec.num_images, spec.candidate_seeds, spec.num_kept) == (3, [10, 11, 12], 2)
    spec = RenderSpec.from_dict({"prompt": "a", "seeds": [7, 3]})
    assert (spec.num_candidates, spec.candidate_seeds, spec.num_kept) == (2, [7, 3], 2)


def test_subject_placeholder():
    spec = RenderSpec(prompt="{subject}, business portrait of {subject}", seed=1)
    assert spec.resolved_prompt("sks man") == "sks man, business portrait of sks man"
    assert spec.resolved_prompt(None) == "a person, business portrait of a person"
    assert RenderSpec(prompt="no {placeholder}", seed=1).resolved_prompt("x") == "no {placeholder}"


def test_v2_round_trip_and_direct_construction():
    from PIL import Image

    from engine.spec import AvatarRef, ControlSpec

    image = Image.new("RGB", (8, 8))
    data = {
        "prompt": "{subject}",
        "seeds": [1, 2],
        "keep": 1,
        "sampler": "euler_a",
        "style_loras": [{"key": "urban", "weight": 0.7}],
        "avatar": {"id": "u1", "weight": 0.9},
        "controls": [{"kind": "canny", "image": image, "conditioning_scale": 0.5}],
        "reference": {"image": PNG, "mode": "inpaint", "mask": image, "strength": 0.45},
        "face_refine": {},
    }
    spec = RenderSpec.from_dict(data)
    assert isinstance(spec.controls, tuple) and isinstance(spec.controls[0], ControlSpec)
    assert spec.avatar == AvatarRef("u1", 0.9)
    as_dict = spec.to_dict()
    assert as_dict["seeds"] == [1, 2] and as_dict["controls"][0]["image"] is image
    assert RenderSpec.from_dict(as_dict) == spec
    direct = RenderSpec(prompt="a", seed=1, controls=[ControlSpec("depth", PNG)])
    assert direct.controls == (ControlSpec("depth", PNG),)
    with pytest.raises(SpecError) as info:
        RenderSpec(prompt="a", seed=1, controls=[{"kind": "depth", "image": PNG, "end": 0}])
    assert info.value.field == "controls.0.end"


def test_v1_specs_are_unchanged_by_v2():
    """The test-render keys stored by rendering.services keep their meaning."""
    v1 = {"prompt": "a", "seed": 3, "negative_prompt": "b", "steps": 5, "guidance": 7.5}
    spec = RenderSpec.from_dict({**v1, "width": 96, "height": 64})
    assert (spec.candidate_seeds, spec.num_kept, spec.sampler, spec.controls) == ([3], 1, None, ())
    assert spec.resolved_prompt(None) == "a"
