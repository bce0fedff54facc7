"""OpenPose body poses (COCO-18) for pose control images.

A pose is 18 keypoints in image pixels, in the OpenPose body order (0 nose, 1 neck, 2-4 right
shoulder/elbow/wrist, 5-7 left shoulder/elbow/wrist, 8-10 right hip/knee/ankle, 11-13 left
hip/knee/ankle, 14/15 right/left eye, 16/17 right/left ear), plus the limbs joining them. Its JSON
form, written by the template editor and stored with a template::

    {"width": 512, "height": 768,
     "keypoints": [[x, y] | [x, y, confidence] | null, ... 18 items],
     "limbs": [[a, b], ...]}          # optional; default LIMBS

``null`` or a confidence of 0 marks a keypoint as missing (OpenPose writes ``[0, 0, 0]``).

:func:`render_openpose` draws the pose the way the ControlNet openpose annotator does, so the
image is what openpose ControlNets were trained on: black background, each limb a filled ellipse
(half-width 4 px at a 512 px shorter side, scaled with the image) in its limb colour blended at
0.6 over what is under it, then each keypoint a filled circle (radius 4 px, scaled) in its full
keypoint colour. Limbs with a missing end are skipped. Output is deterministic (numpy + Pillow
only, integer blending).

This module imports neither torch nor Django.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np
from PIL import Image, ImageDraw

from engine.errors import EngineError

__all__ = [
    "KEYPOINT_COLORS",
    "KEYPOINT_NAMES",
    "LIMBS",
    "LIMB_COLORS",
    "MAX_SIZE",
    "MIN_SIZE",
    "NUM_KEYPOINTS",
    "Pose",
    "PoseError",
    "limb_color",
    "parse_pose",
    "pose_to_json",
    "render_openpose",
    "validate_pose",
]

NUM_KEYPOINTS = 18
MIN_SIZE = 64
MAX_SIZE = 2048

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)

LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2),  # neck - right shoulder
    (1, 5),  # neck - left shoulder
    (2, 3),  # right upper arm
    (3, 4),  # right forearm
    (5, 6),  # left upper arm
    (6, 7),  # left forearm
    (1, 8),  # neck - right hip
    (8, 9),  # right thigh
    (9, 10),  # right shin
    (1, 11),  # neck - left hip
    (11, 12),  # left thigh
    (12, 13),  # left shin
    (1, 0),  # neck - nose
    (0, 14),  # nose - right eye
    (14, 16),  # right eye - right ear
    (0, 15),  # nose - left eye
    (15, 17),  # left eye - left ear
)
"""The 17 limbs the OpenPose body annotator draws (its ``limbSeq``, 0-based, in drawing order)."""

_OPENPOSE_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0),
    (255, 85, 0),
    (255, 170, 0),
    (255, 255, 0),
    (170, 255, 0),
    (85, 255, 0),
    (0, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 255, 255),
    (0, 170, 255),
    (0, 85, 255),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (255, 0, 255),
    (255, 0, 170),
    (255, 0, 85),
)

KEYPOINT_COLORS: tuple[tuple[int, int, int], ...] = _OPENPOSE_COLORS
"""RGB colour of keypoint ``i`` (drawn at full strength)."""

LIMB_COLORS: tuple[tuple[int, int, int], ...] = _OPENPOSE_COLORS[: len(LIMBS)]
"""RGB colour of ``LIMBS[i]`` before the 0.6 blend (on black it shows as ``0.6 * colour``)."""

_LIMB_ALPHA_TENTHS = 6  # limbs are blended at 0.6, in integer tenths so rounding is exact
_REFERENCE_SIDE = 512  # the annotator's detect resolution: stick width and radius are 4 px there
_STICK_WIDTH = 4
_KEYPOINT_RADIUS = 4
_STANDARD_LIMB_INDEX = {frozenset(pair): i for i, pair in enumerate(LIMBS)}

Keypoint = tuple[float, float] | None


class PoseError(EngineError, ValueError):
    """A pose is invalid; ``field`` names the offending input (``width``, ``keypoints.3``,
    ``limbs.2``) so the editor can point at it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class Pose:
    """One body pose on a ``width`` x ``height`` canvas.

    ``keypoints`` has 18 entries, each ``(x, y)`` in pixels (``0 <= x < width``,
    ``0 <= y < height``) or ``None`` when missing. ``limbs`` overrides :data:`LIMBS` (pairs of
    keypoint indices) when an editor adds or removes limbs; ``None`` means the standard set.
    """

    width: int
    height: int
    keypoints: list[Keypoint]
    limbs: list[tuple[int, int]] | None = field(default=None)

    def effective_limbs(self) -> list[tuple[int, int]]:
        """The limbs to draw: the override when set, else :data:`LIMBS`."""
        return list(LIMBS) if self.limbs is None else list(self.limbs)


def limb_color(a: int, b: int) -> tuple[int, int, int]:
    """Colour of the limb joining keypoints ``a`` and ``b`` (before the 0.6 blend).

    A standard limb (either direction) keeps its OpenPose colour, which is what a ControlNet
    reads the body part from. A limb an editor added has no OpenPose colour; it gets the mean of
    its two keypoints' colours.
    """
    index = _STANDARD_LIMB_INDEX.get(frozenset((a, b)))
    if index is not None:
        return LIMB_COLORS[index]
    ca, cb = KEYPOINT_COLORS[a], KEYPOINT_COLORS[b]
    return (
        (ca[0] + cb[0]) // 2,
        (ca[1] + cb[1]) // 2,
        (ca[2] + cb[2]) // 2,
    )


# --- validation ------------------------------------------------------------------------------


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_size(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise PoseError(name, f"must be an integer, got {type(value).__name__}")
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise PoseError(name, f"must be between {MIN_SIZE} and {MAX_SIZE}, got {value}")
    return value


def _check_coordinate(name: str, axis: str, value: object) -> float:
    if not _is_number(value):
        raise PoseError(name, f"{axis} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise PoseError(name, f"{axis} must be finite, got {value}")
    return float(value)


def _check_point(index: int, x: object, y: object, width: int, height: int) -> tuple[float, float]:
    name = f"keypoints.{index}"
    fx, fy = _check_coordinate(name, "x", x), _check_coordinate(name, "y", y)
    if not 0 <= fx < width:
        raise PoseError(name, f"x={fx:g} lies outside the canvas (0 <= x < {width})")
    if not 0 <= fy < height:
        raise PoseError(name, f"y={fy:g} lies outside the canvas (0 <= y < {height})")
    return fx, fy


def _check_limbs(limbs: object) -> list[tuple[int, int]]:
    if not isinstance(limbs, list | tuple):
        raise PoseError("limbs", f"must be a list of [a, b] pairs, got {type(limbs).__name__}")
    seen: set[frozenset[int]] = set()
    result: list[tuple[int, int]] = []
    for i, pair in enumerate(limbs):
        name = f"limbs.{i}"
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise PoseError(name, "must be a pair [a, b] of keypoint indices")
        for end in pair:
            if not isinstance(end, int) or isinstance(end, bool):
                raise PoseError(name, f"keypoint index must be an integer, got {end!r}")
            if not 0 <= end < NUM_KEYPOINTS:
                raise PoseError(name, f"keypoint index {end} is not in 0..{NUM_KEYPOINTS - 1}")
        a, b = pair
        if a == b:
            raise PoseError(name, f"a limb must join two different keypoints, got [{a}, {b}]")
        key = frozenset((a, b))
        if key in seen:
            raise PoseError(name, f"duplicate limb [{a}, {b}]")
        seen.add(key)
        result.append((a, b))
    return result


def validate_pose(pose: Pose) -> None:
    """Raise :class:`PoseError` unless ``pose`` is well formed (sizes, 18 keypoints inside the
    canvas, limb indices in range). Called by :func:`render_openpose` and :func:`pose_to_json`
    so a :class:`Pose` built or edited in code gets the same checks as parsed JSON."""
    width = _check_size("width", pose.width)
    height = _check_size("height", pose.height)
    if not isinstance(pose.keypoints, list | tuple) or len(pose.keypoints) != NUM_KEYPOINTS:
        count = len(pose.keypoints) if isinstance(pose.keypoints, list | tuple) else None
        raise PoseError("keypoints", f"must hold {NUM_KEYPOINTS} entries, got {count}")
    for i, point in enumerate(pose.keypoints):
        if point is None:
            continue
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise PoseError(f"keypoints.{i}", "must be (x, y) or None")
        _check_point(i, point[0], point[1], width, height)
    if pose.limbs is not None:
        _check_limbs(pose.limbs)


def parse_pose(data: Any) -> Pose:
    """Validate the JSON form of a pose (see the module docstring) and return a :class:`Pose`.

    Coordinates become floats; ``[x, y, confidence]`` with confidence 0 becomes ``None`` (its
    coordinates are then not checked, as OpenPose writes ``[0, 0, 0]``). Unknown keys are
    rejected so a misspelt ``"limbs"`` is not silently ignored.
    """
    if not isinstance(data, dict):
        raise PoseError("pose", f"must be an object, got {type(data).__name__}")
    for key in data:
        if key not in ("width", "height", "keypoints", "limbs"):
            raise PoseError(str(key), "unknown field")
    for key in ("width", "height", "keypoints"):
        if key not in data:
            raise PoseError(key, "is required")
    width = _check_size("width", data["width"])
    height = _check_size("height", data["height"])
    raw = data["keypoints"]
    if not isinstance(raw, list):
        raise PoseError("keypoints", f"must be a list, got {type(raw).__name__}")
    if len(raw) != NUM_KEYPOINTS:
        raise PoseError("keypoints", f"must hold {NUM_KEYPOINTS} entries, got {len(raw)}")
    keypoints: list[Keypoint] = []
    for i, item in enumerate(raw):
        name = f"keypoints.{i}"
        if item is None:
            keypoints.append(None)
            continue
        if not isinstance(item, list) or len(item) not in (2, 3):
            raise PoseError(name, "must be [x, y], [x, y, confidence] or null")
        if len(item) == 3:
            confidence = item[2]
            if not _is_number(confidence) or not math.isfinite(confidence) or confidence < 0:
                raise PoseError(name, f"confidence must be a number >= 0, got {confidence!r}")
            if confidence == 0:
                keypoints.append(None)
                continue
        keypoints.append(_check_point(i, item[0], item[1], width, height))
    limbs = _check_limbs(data["limbs"]) if data.get("limbs") is not None else None
    return Pose(width=width, height=height, keypoints=keypoints, limbs=limbs)


def _json_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def pose_to_json(pose: Pose) -> dict[str, Any]:
    """The JSON form of ``pose``; ``parse_pose(pose_to_json(pose)) == pose`` for a parsed pose.

    Integral coordinates are written as integers. ``limbs`` is written only when overridden.
    """
    validate_pose(pose)
    data: dict[str, Any] = {
        "width": pose.width,
        "height": pose.height,
        "keypoints": [
            None if point is None else [_json_number(point[0]), _json_number(point[1])]
            for point in pose.keypoints
        ],
    }
    if pose.limbs is not None:
        data["limbs"] = [[a, b] for a, b in pose.limbs]
    return data


# --- rendering -------------------------------------------------------------------------------


def _scaled(base: int, width: int, height: int) -> int:
    return max(1, round(base * min(width, height) / _REFERENCE_SIDE))


def _ellipse_polygon(
    p: tuple[float, float], q: tuple[float, float], half_width: float
) -> list[tuple[float, float]]:
    """The annotator's limb shape (``cv2.ellipse2Poly`` with 1 degree steps): an ellipse centred
    between ``p`` and ``q`` with its long axis along them, half-length = half their distance."""
    cx, cy = (p[0] + q[0]) / 2, (p[1] + q[1]) / 2
    half_length = math.hypot(q[0] - p[0], q[1] - p[1]) / 2
    angle = math.atan2(q[1] - p[1], q[0] - p[0])
    t = np.radians(np.arange(360, dtype=np.float64))
    ex, ey = half_length * np.cos(t), half_width * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    xs = cx + ex * ca - ey * sa
    ys = cy + ex * sa + ey * ca
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


def render_openpose(pose: Pose) -> Image.Image:
    """Draw ``pose`` as an OpenPose control image (RGB, ``pose.width`` x ``pose.height``).

    Limbs are drawn in order, each blended at 0.6 over the canvas
    (``0.4 * canvas + 0.6 * colour``, as the annotator's ``cv2.addWeighted``), then keypoints
    on top in full colour, so joints stay exactly their keypoint colour. Pixel positions: a
    keypoint at ``(x, y)`` is a disc centred on pixel ``(int(x), int(y))``.
    """
    validate_pose(pose)
    width, height = pose.width, pose.height
    stick = _scaled(_STICK_WIDTH, width, height)
    radius = _scaled(_KEYPOINT_RADIUS, width, height)
    canvas = np.zeros((height, width, 3), dtype=np.uint16)
    points = pose.keypoints
    for a, b in pose.effective_limbs():
        pa, pb = points[a], points[b]
        if pa is None or pb is None:
            continue
        polygon = _ellipse_polygon(pa, pb, stick)
        # Rasterise in the polygon's bounding box only (a 2048 px canvas has 17 limbs).
        x0 = max(0, math.floor(min(x for x, _ in polygon)) - 1)
        y0 = max(0, math.floor(min(y for _, y in polygon)) - 1)
        x1 = min(width, math.ceil(max(x for x, _ in polygon)) + 2)
        y1 = min(height, math.ceil(max(y for _, y in polygon)) + 2)
        mask_image = Image.new("L", (x1 - x0, y1 - y0), 0)
        local = [(x - x0, y - y0) for x, y in polygon]
        ImageDraw.Draw(mask_image).polygon(local, fill=255)
        mask = np.asarray(mask_image) > 0
        region = canvas[y0:y1, x0:x1]
        color = np.array(limb_color(a, b), dtype=np.uint16)
        region[mask] = (
            region[mask] * (10 - _LIMB_ALPHA_TENTHS) + color * _LIMB_ALPHA_TENTHS + 5
        ) // 10
    image = Image.fromarray(canvas.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for i, point in enumerate(points):
        if point is None:
            continue
        x, y = int(point[0]), int(point[1])
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=KEYPOINT_COLORS[i])
    return image
