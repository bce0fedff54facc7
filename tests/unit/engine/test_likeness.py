from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import SpecError
from engine.likeness import rank_candidates, refine_spec
from engine.spec import RenderSpec

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_rank_best_first_none_last_stable():
    assert rank_candidates([0.2, None, 0.9, 0.5, 0.9], 5) == [2, 4, 3, 0, 1]
    assert rank_candidates([0.2, None, 0.9], 2) == [2, 0]
    assert rank_candidates([None, None], 1) == [0]


SPEC = RenderSpec.from_dict(
    {
        "prompt": "{subject}",
        "seeds": [4, 5],
        "avatar": {"id": "u", "weight": 0.9},
        "style_loras": [{"key": "s", "weight": 0.7}],
        "face_refine": {"strength": 0.35, "avatar_boost": 0.15},
    }
)


def test_refine_schedule():
    one = refine_spec(SPEC, 1)
    assert one.avatar.weight == pytest.approx(1.0)
    assert one.style_loras[0].weight == pytest.approx(0.56)
    assert one.face_refine.strength == pytest.approx(0.40)
    assert one.face_refine.avatar_boost == pytest.approx(0.20)
    assert (one.refine_level, one.seeds, one.prompt) == (1, SPEC.seeds, SPEC.prompt)
    assert refine_spec(one, 1) == refine_spec(SPEC, 2)
    assert refine_spec(SPEC, 0) == SPEC


def test_refine_caps():
    far = refine_spec(SPEC, 10)
    assert far.avatar.weight == pytest.approx(1.3)
    assert far.face_refine.strength == pytest.approx(0.6)
    assert far.face_refine.avatar_boost == pytest.approx(0.5)
    assert 0 < far.style_loras[0].weight < 0.1
    with pytest.raises(SpecError) as info:
        refine_spec(far, 1)
    assert info.value.field == "refine_level"


def test_refine_raises_the_instant_identity_scale_up_to_its_cap():
    instant = RenderSpec.from_dict(
        {"prompt": "{subject}", "seed": 1, "identity": {"id": "u", "scale": 0.9}}
    )
    one = refine_spec(instant, 1)
    assert one.identity.scale == pytest.approx(1.0) and one.avatar is None
    assert refine_spec(instant, 10).identity.scale == pytest.approx(1.2)
    high = RenderSpec.from_dict(
        {"prompt": "{subject}", "seed": 1, "identity": {"id": "u", "scale": 1.5}}
    )
    assert refine_spec(high, 1).identity.scale == pytest.approx(1.5)  # never lowered


def test_refine_without_avatar_or_face_pass():
    plain = RenderSpec(prompt="a", seed=1)
    assert refine_spec(plain, 2) == RenderSpec(prompt="a", seed=1, refine_level=2)


def test_likeness_module_is_light():
    code = "import engine.likeness, sys; print(sorted({'torch', 'diffusers'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
