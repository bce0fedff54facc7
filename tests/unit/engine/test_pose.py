"""OpenPose (COCO-18) poses: JSON validation, round trip and annotator-style rendering."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.pose import (
    KEYPOINT_COLORS,
    KEYPOINT_NAMES,
    LIMB_COLORS,
    LIMBS,
    Pose,
    PoseError,
    limb_color,
    parse_pose,
    pose_to_json,
    render_openpose,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

STANDING = [
    [256, 100],  # nose
    [256, 180],  # neck
    [200, 180],
    [180, 280],
    [170, 380],
    [312, 180],
    [332, 280],
    [342, 380],
    [220, 400],
    [215, 550],
    [210, 700],
    [292, 400],
    [297, 550],
    [302, 700],
    [240, 85],
    [272, 85],
    [225, 95],
    [287, 95],
]


def standing_json(**overrides: object) -> dict:
    data = {"width": 512, "height": 768, "keypoints": [list(p) for p in STANDING]}
    data.update(overrides)
    return data


def only(points: dict[int, tuple[float, float]], size: int = 512, **kwargs) -> Pose:
    keypoints = [points.get(i) for i in range(18)]
    return Pose(width=size, height=size, keypoints=keypoints, **kwargs)


def pixel(image, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(image)[y, x])


def blend(under: tuple[int, int, int], colour: tuple[int, int, int]) -> tuple[int, ...]:
    return tuple((4 * u + 6 * c + 5) // 10 for u, c in zip(under, colour, strict=True))


BLACK = (0, 0, 0)


# --- constants -------------------------------------------------------------------------------


def test_constants_match_openpose():
    assert len(KEYPOINT_NAMES) == 18
    assert KEYPOINT_NAMES[0] == "nose" and KEYPOINT_NAMES[1] == "neck"
    assert KEYPOINT_NAMES[4] == "right_wrist" and KEYPOINT_NAMES[17] == "left_ear"
    assert len(LIMBS) == 17 and len(set(map(frozenset, LIMBS))) == 17
    assert len(KEYPOINT_COLORS) == 18 and len(LIMB_COLORS) == 17
    assert KEYPOINT_COLORS[0] == (255, 0, 0)
    assert KEYPOINT_COLORS[12] == (0, 0, 255)
    assert KEYPOINT_COLORS[17] == (255, 0, 85)
    # The annotator's limbSeq, 1-based, first 17 entries.
    limb_seq = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11]]
    limb_seq += [[2, 12], [12, 13], [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18]]
    assert [(a - 1, b - 1) for a, b in limb_seq] == list(LIMBS)


# --- rendering -------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(17))
def test_each_limb_and_its_keypoints_have_the_openpose_colours(index):
    a, b = LIMBS[index]
    image = render_openpose(only({a: (128, 256), b: (384, 256)}))
    assert image.mode == "RGB" and image.size == (512, 512)
    assert pixel(image, 256, 256) == blend(BLACK, LIMB_COLORS[index])
    assert pixel(image, 256, 256 + 3) == blend(BLACK, LIMB_COLORS[index])  # stick half-width 4
    assert pixel(image, 256, 256 + 7) == BLACK
    assert pixel(image, 128, 256) == KEYPOINT_COLORS[a]
    assert pixel(image, 384, 256) == KEYPOINT_COLORS[b]
    assert pixel(image, 128 + 3, 256 - 2) == KEYPOINT_COLORS[a]  # radius 4 disc
    assert pixel(image, 5, 5) == BLACK


def test_limb_colour_is_exactly_60_percent_on_black():
    image = render_openpose(only({1: (100, 100), 2: (300, 100)}))
    assert pixel(image, 200, 100) == (153, 0, 0)  # limb 0 = (255, 0, 0) * 0.6


def test_overlapping_limbs_blend_in_drawing_order():
    # Custom limbs 2-3 (horizontal) and 5-6 (vertical) cross at (256, 256).
    pose = only(
        {2: (128, 256), 3: (384, 256), 5: (256, 128), 6: (256, 384)}, limbs=[(2, 3), (5, 6)]
    )
    image = render_openpose(pose)
    first, second = limb_color(2, 3), limb_color(5, 6)
    assert pixel(image, 256, 256) == blend(blend(BLACK, first), second) == (163, 194, 0)
    assert pixel(image, 200, 256) == blend(BLACK, first)
    assert pixel(image, 256, 200) == blend(BLACK, second)


def test_diagonal_limb_follows_its_axis():
    image = render_openpose(only({8: (100, 100), 9: (400, 400)}))
    colour = blend(BLACK, LIMB_COLORS[LIMBS.index((8, 9))])
    for t in (0.25, 0.5, 0.75):
        x = y = round(100 + 300 * t)
        assert pixel(image, x, y) == colour
    assert pixel(image, 300, 200) == BLACK


def test_missing_keypoints_skip_their_limbs():
    data = standing_json()
    data["keypoints"][3] = None  # right elbow: limbs 2-3 and 3-4 go
    image = render_openpose(parse_pose(data))
    full = render_openpose(parse_pose(standing_json()))
    upper_arm_mid = (190, 230)  # between shoulder (200, 180) and elbow (180, 280)
    forearm_mid = (175, 330)
    assert pixel(full, *upper_arm_mid) == blend(BLACK, LIMB_COLORS[2])
    assert pixel(full, *forearm_mid) == blend(BLACK, LIMB_COLORS[3])
    assert pixel(image, *upper_arm_mid) == BLACK
    assert pixel(image, *forearm_mid) == BLACK
    assert pixel(image, 180, 280) == BLACK  # no elbow disc either
    assert pixel(image, 170, 380) == KEYPOINT_COLORS[4]  # the wrist is still drawn
    assert pixel(image, 256, 140) == blend(BLACK, LIMB_COLORS[12])  # neck-nose unaffected


def test_no_keypoints_renders_black():
    image = render_openpose(only({}))
    assert not np.asarray(image).any()


def test_rendering_is_deterministic():
    pose = parse_pose(standing_json())

    def png() -> bytes:
        buffer = io.BytesIO()
        render_openpose(pose).save(buffer, "PNG")
        return buffer.getvalue()

    assert render_openpose(pose).tobytes() == render_openpose(pose).tobytes()
    assert png() == png()


def test_stick_width_and_radius_scale_with_the_shorter_side():
    small = render_openpose(only({1: (100, 100), 2: (300, 100)}, size=512))
    large = render_openpose(only({1: (200, 200), 2: (600, 200)}, size=1024))
    assert pixel(small, 200, 100 + 6) == BLACK
    assert pixel(large, 400, 200 + 6) == (153, 0, 0)  # half-width 8 at 1024 px
    assert pixel(large, 200 + 7, 200) == KEYPOINT_COLORS[1]  # radius 8
    tiny = render_openpose(only({1: (10, 32), 2: (54, 32)}, size=64))
    assert pixel(tiny, 32, 32) == (153, 0, 0)
    assert pixel(tiny, 32, 35) == BLACK


def test_non_square_canvas_and_float_coordinates():
    pose = Pose(width=300, height=700, keypoints=[None] * 18)
    pose.keypoints[0] = (10.7, 690.2)
    image = render_openpose(pose)
    assert image.size == (300, 700)
    assert pixel(image, 10, 690) == KEYPOINT_COLORS[0]


# --- custom limbs ----------------------------------------------------------------------------


def test_custom_limbs_replace_the_default_set():
    points = {1: (100, 100), 2: (300, 100), 3: (300, 300)}
    default = render_openpose(only(points))
    assert pixel(default, 200, 100) == blend(BLACK, LIMB_COLORS[0])
    assert pixel(default, 300, 200) == blend(BLACK, LIMB_COLORS[2])
    custom = render_openpose(only(points, limbs=[(2, 3)]))  # neck-shoulder removed
    assert pixel(custom, 200, 100) == BLACK
    assert pixel(custom, 300, 200) == blend(BLACK, LIMB_COLORS[2])


def test_added_and_reversed_limbs():
    points = {1: (100, 100), 2: (300, 100), 4: (100, 400), 7: (400, 400)}
    image = render_openpose(only(points, limbs=[(2, 1), (4, 7)]))
    assert pixel(image, 200, 100) == blend(BLACK, LIMB_COLORS[0])  # reversed: standard colour
    added = limb_color(4, 7)
    pairs = zip(KEYPOINT_COLORS[4], KEYPOINT_COLORS[7], strict=True)
    assert added == tuple((c4 + c7) // 2 for c4, c7 in pairs)
    assert pixel(image, 250, 400) == blend(BLACK, added)


def test_empty_limb_list_draws_only_keypoints():
    image = render_openpose(only({1: (100, 100), 2: (300, 100)}, limbs=[]))
    assert pixel(image, 200, 100) == BLACK
    assert pixel(image, 100, 100) == KEYPOINT_COLORS[1]


# --- parsing ---------------------------------------------------------------------------------


def test_parse_standing_pose():
    pose = parse_pose(standing_json())
    assert (pose.width, pose.height, pose.limbs) == (512, 768, None)
    assert pose.keypoints[1] == (256.0, 180.0)
    assert pose.effective_limbs() == list(LIMBS)


def test_confidence_triples():
    data = standing_json()
    data["keypoints"][0] = [256, 100, 0.9]
    data["keypoints"][16] = [0, 0, 0]  # OpenPose's "not detected"
    data["keypoints"][17] = [9999, -5, 0.0]  # missing: coordinates are not checked
    pose = parse_pose(data)
    assert pose.keypoints[0] == (256.0, 100.0)
    assert pose.keypoints[16] is None and pose.keypoints[17] is None


def _with_keypoint(index: int, value: object) -> dict:
    data = standing_json()
    data["keypoints"][index] = value
    return data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (standing_json(keypoints=STANDING[:17]), "keypoints"),
        (standing_json(keypoints=[*STANDING, [1, 1]]), "keypoints"),
        (standing_json(keypoints="nope"), "keypoints"),
        (_with_keypoint(3, [512, 10]), "keypoints.3"),  # x == width is outside
        (_with_keypoint(3, [-1, 10]), "keypoints.3"),
        (_with_keypoint(5, [10, 768]), "keypoints.5"),
        (_with_keypoint(7, [10]), "keypoints.7"),
        (_with_keypoint(7, [10, 10, 1, 1]), "keypoints.7"),
        (_with_keypoint(8, ["10", 10]), "keypoints.8"),
        (_with_keypoint(8, [True, 10]), "keypoints.8"),
        (_with_keypoint(9, [math.nan, 10]), "keypoints.9"),
        (_with_keypoint(10, [10, 10, -0.5]), "keypoints.10"),
        (_with_keypoint(11, {"x": 1, "y": 2}), "keypoints.11"),
        (standing_json(limbs=[[1, 2], [1, 18]]), "limbs.1"),
        (standing_json(limbs=[[1, 2], [-1, 3]]), "limbs.1"),
        (standing_json(limbs=[[1, 2, 3]]), "limbs.0"),
        (standing_json(limbs=[[4, 4]]), "limbs.0"),
        (standing_json(limbs=[[1, 2], [2, 1]]), "limbs.1"),
        (standing_json(limbs=[[1.0, 2]]), "limbs.0"),
        (standing_json(limbs="all"), "limbs"),
        (standing_json(width=63), "width"),
        (standing_json(width=2049), "width"),
        (standing_json(height=4096), "height"),
        (standing_json(height=512.0), "height"),
        (standing_json(width=True), "width"),
        ({"height": 512, "keypoints": STANDING}, "width"),
        (standing_json(limb=[[1, 2]]), "limb"),
        ([1, 2, 3], "pose"),
    ],
)
def test_parse_errors_name_the_field(data, field):
    with pytest.raises(PoseError) as info:
        parse_pose(data)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{field}: ")


def test_sizes_at_the_limits_are_accepted():
    for size in (64, 2048):
        pose = parse_pose({"width": size, "height": size, "keypoints": [None] * 18})
        assert render_openpose(pose).size == (size, size)


def test_pose_built_in_code_is_validated_before_rendering():
    with pytest.raises(PoseError) as info:
        render_openpose(only({4: (600, 10)}))
    assert info.value.field == "keypoints.4"
    with pytest.raises(PoseError) as info:
        render_openpose(only({}, limbs=[(0, 20)]))
    assert info.value.field == "limbs.0"
    with pytest.raises(PoseError) as info:
        pose_to_json(Pose(width=512, height=512, keypoints=[None] * 17))
    assert info.value.field == "keypoints"


# --- round trip ------------------------------------------------------------------------------


def test_json_round_trip():
    data = standing_json()
    data["keypoints"][2] = [200.5, 180.25]
    data["keypoints"][16] = None
    data["limbs"] = [[1, 2], [2, 3], [4, 7]]
    pose = parse_pose(data)
    out = pose_to_json(pose)
    assert out == data
    assert json.loads(json.dumps(out)) == out
    assert parse_pose(out) == pose
    assert isinstance(out["keypoints"][0][0], int)


def test_round_trip_without_limbs_omits_them_and_normalises_confidence():
    data = standing_json()
    data["keypoints"][0] = [256, 100, 0.7]
    data["keypoints"][1] = [0, 0, 0]
    out = pose_to_json(parse_pose(data))
    assert "limbs" not in out
    assert out["keypoints"][0] == [256, 100]
    assert out["keypoints"][1] is None
    assert parse_pose(out) == parse_pose(data)


def test_module_imports_neither_torch_nor_django():
    code = (
        "import json, sys\nimport engine.pose, engine.contact_sheet\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert not loaded & {"torch", "diffusers", "transformers", "django", "cv2"}
