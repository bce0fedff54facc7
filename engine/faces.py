"""Photo preparation for avatar training, and likeness scoring of generated portraits.

Backed by dlib (the ``dlib-bin`` wheels) with the model files of ``face_recognition_models``:
the HOG frontal face detector, the 5-point landmark model and the ResNet face-recognition model
(128-d embeddings, Euclidean distance, 0.6 is the customary same-person threshold). Everything
runs offline on a CPU; the models are loaded once per process, on first use.

Privacy: face embeddings are biometric data. They exist in memory only: nothing in this module
writes an embedding, a crop or a decoded photo anywhere. Persisting ``reference_embedding`` (if
the caller decides to) is the caller's decision and must follow the avatar's retention rules.
"""

from __future__ import annotations

import concurrent.futures
import enum
import importlib.util
import math
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TypedDict, Unpack

import dlib
import numpy as np
from PIL import Image

from engine.imageio import ImageDecodeError, decode_rgb, read_header

__all__ = [
    "COMPARABLE_FACE_AREA",
    "FaceBox",
    "FaceModelsMissingError",
    "FacesError",
    "FrontPhotoError",
    "PhotoDecision",
    "PreparationResult",
    "PreparedPhoto",
    "RejectCode",
    "face_box",
    "face_embedding",
    "face_landmarks",
    "likeness",
    "prepare_training_photos",
]

COMPARABLE_FACE_AREA = 0.4
"""A second face whose box area is at least this share of the largest one makes a photo
ambiguous (whose face would the avatar learn?); smaller ones are background people and pass."""

_MIN_DETECTION_SCORE = 0.3
"""HOG detections scoring below this are dropped: on test photos false positives (badges, suit
patches) scored 0.06-0.13 while real frontal faces scored above 1."""

_DETECT_MAX_SIDE = 1024
"""Detection runs on a copy at most this large (~0.1 s); boxes are mapped back to full size."""

_HOG_MIN_FACE = 80
"""Smallest face (px) the HOG detector finds without upsampling."""

_CROP_SCALE = 2.0
"""Side of the training crop relative to the face box: the face fills half the crop, leaving
hair, chin and some shoulders, which portrait templates need."""

_CROP_BELOW_EYES = 0.1
"""The crop centre sits this share of the face size below the eye midpoint, along the face's
own vertical axis: framing then follows the face, not the detector's box, whatever the tilt,
and leaves room for the hair above the brows."""

_SHARPNESS_SIZE = 128
"""The face region is resampled to this size before measuring sharpness, so the measure does
not depend on the photo's resolution."""

_EMBEDDING_SIZE = 128


class FacesError(ValueError):
    """Base class of this module's errors."""


class FaceModelsMissingError(FacesError):
    """The dlib model files (package ``face_recognition_models``) are not installed."""


class FrontPhotoError(FacesError):
    """The front photo cannot anchor an identity; ``code`` is a :class:`RejectCode` value."""

    def __init__(self, code: RejectCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class RejectCode(enum.StrEnum):
    """Stable, machine-readable outcome of one photo."""

    ACCEPTED = "accepted"
    NOT_AN_IMAGE = "not_an_image"
    IMAGE_TOO_LARGE = "image_too_large"
    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    FACE_TOO_SMALL = "face_too_small"
    TOO_BLURRY = "too_blurry"
    DIFFERENT_PERSON = "different_person"
    NOT_AMONG_MOST_CONSISTENT = "not_among_most_consistent"


_REASONS: dict[RejectCode, str] = {
    RejectCode.ACCEPTED: "Accepted for training.",
    RejectCode.NOT_AN_IMAGE: "This file is not a readable JPEG, PNG or WEBP photo.",
    RejectCode.IMAGE_TOO_LARGE: "This image has too many pixels to be processed safely.",
    RejectCode.NO_FACE: "No face was found. Use a photo where your face is clearly visible.",
    RejectCode.MULTIPLE_FACES: "More than one face is visible. Use photos of you alone.",
    RejectCode.FACE_TOO_SMALL: "Your face is too small in this photo. Use a closer photo.",
    RejectCode.TOO_BLURRY: "Your face is blurry in this photo. Use a sharper photo.",
    RejectCode.DIFFERENT_PERSON: "This face does not match the front photo.",
    RejectCode.NOT_AMONG_MOST_CONSISTENT: (
        "Not needed: other photos match your face more consistently."
    ),
}


@dataclass(frozen=True)
class FaceBox:
    """A detected face in image pixel coordinates (right/bottom exclusive)."""

    left: int
    top: int
    right: int
    bottom: int
    score: float

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def side(self) -> int:
        """The shorter side: what limits how much facial detail a crop can hold."""
        return min(self.width, self.height)


@dataclass(frozen=True)
class PhotoDecision:
    """What happened to one uploaded photo (``index`` is its position in the input list)."""

    index: int
    code: RejectCode
    reason: str
    face: FaceBox | None = None
    sharpness: float | None = None
    distance_to_front: float | None = None

    @property
    def accepted(self) -> bool:
        return self.code is RejectCode.ACCEPTED


@dataclass(frozen=True)
class PreparedPhoto:
    """An aligned, square training crop (RGB, no metadata) of the input photo ``index``."""

    index: int
    image: Image.Image
    distance_to_mean: float


@dataclass(frozen=True)
class PreparationResult:
    """Outcome of :func:`prepare_training_photos`.

    ``accepted`` is ordered from most to least consistent. ``reference_embedding`` is the mean
    embedding of the kept photos (float32, 128-d), ``None`` when no photo was kept; it is held in
    memory only.
    """

    accepted: list[PreparedPhoto]
    decisions: list[PhotoDecision]
    reference_embedding: np.ndarray | None
    front_face: FaceBox


@dataclass(frozen=True)
class _Face:
    box: FaceBox
    shape: dlib.full_object_detection


@dataclass(frozen=True)
class _Models:
    detector: dlib.fhog_object_detector
    landmarks: dlib.shape_predictor
    encoder: dlib.face_recognition_model_v1


_lock = threading.Lock()
"""dlib objects are not documented as thread-safe; calls into them are serialised."""


def _models_dir() -> Path:
    """Locate the model files without importing ``face_recognition_models``.

    Its ``__init__`` imports ``pkg_resources``, which setuptools >= 81 no longer ships; finding
    the package directory through the import system avoids that dependency.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsMissingError("Install the face_recognition_models package.")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@cache
def _models() -> _Models:
    """Load the dlib models once per process (~0.4 s)."""
    root = _models_dir()
    landmarks = root / "shape_predictor_5_face_landmarks.dat"
    encoder = root / "dlib_face_recognition_resnet_model_v1.dat"
    for path in (landmarks, encoder):
        if not path.is_file():
            raise FaceModelsMissingError(f"Face model file missing: {path}")
    return _Models(
        detector=dlib.get_frontal_face_detector(),
        landmarks=dlib.shape_predictor(str(landmarks)),
        encoder=dlib.face_recognition_model_v1(str(encoder)),
    )


def warm_up() -> None:
    """Load the dlib models now (a pool process at start), not in the first job."""
    _models()


def _pixels(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def _run_detector(pixels: np.ndarray, upsample: int) -> list[tuple[dlib.rectangle, float]]:
    with _lock:
        rects, scores, _ = _models().detector.run(pixels, upsample, 0.0)
    return [(r, s) for r, s in zip(rects, scores, strict=True) if s >= _MIN_DETECTION_SCORE]


def _detect(image: Image.Image) -> list[FaceBox]:
    """Faces sorted by area, largest first, in ``image`` coordinates.

    A second, upsampled pass (about 4x slower) runs only when the first found nothing or when
    its largest face is so small that a comparable second face could be below the HOG minimum.
    """
    scale = min(1.0, _DETECT_MAX_SIDE / max(image.size))
    work = image
    if scale < 1.0:
        size = (round(image.width * scale), round(image.height * scale))
        work = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    pixels = _pixels(work)
    found = _run_detector(pixels, 0)
    largest = max((min(r.width(), r.height()) for r, _ in found), default=0)
    if largest * math.sqrt(COMPARABLE_FACE_AREA) < _HOG_MIN_FACE:
        found = _run_detector(pixels, 1)
    boxes = [
        FaceBox(
            left=max(0, round(r.left() / scale)),
            top=max(0, round(r.top() / scale)),
            right=min(image.width, round((r.right() + 1) / scale)),
            bottom=min(image.height, round((r.bottom() + 1) / scale)),
            score=float(s),
        )
        for r, s in found
    ]
    return sorted(boxes, key=lambda b: b.area, reverse=True)


def _landmarks(pixels: np.ndarray, box: FaceBox) -> dlib.full_object_detection:
    rect = dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)  # dlib: inclusive
    with _lock:
        return _models().landmarks(pixels, rect)


def _embedding(pixels: np.ndarray, shape: dlib.full_object_detection) -> np.ndarray:
    with _lock:
        descriptor = _models().encoder.compute_face_descriptor(pixels, shape)
    return np.asarray(descriptor, dtype=np.float32)


def _points(shape: dlib.full_object_detection) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def _eye_centres(shape: dlib.full_object_detection) -> tuple[np.ndarray, np.ndarray]:
    """(left-in-image, right-in-image) eye centres from the 5-point model (points 0-3)."""
    points = _points(shape)
    first, second = points[0:2].mean(axis=0), points[2:4].mean(axis=0)
    return (first, second) if first[0] <= second[0] else (second, first)


def _aligned_crop(image: Image.Image, face: _Face, resolution: int) -> Image.Image:
    """Square crop around the face, rotated so the eyes are level, at ``resolution``.

    One affine resample does rotation, crop and scaling. Large downscales are pre-reduced with a
    box filter so the crop is not aliased. The crop is shrunk and shifted to stay inside the
    photo where possible; what the rotation still exposes is filled with the photo's mean colour.
    """
    left_eye, right_eye = _eye_centres(face.shape)
    angle = math.atan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0])
    side = min(face.box.side * _CROP_SCALE, image.width, image.height)
    below = _CROP_BELOW_EYES * face.box.side
    cx = (left_eye[0] + right_eye[0]) / 2 - below * math.sin(angle)
    cy = (left_eye[1] + right_eye[1]) / 2 + below * math.cos(angle)
    cx = min(max(cx, side / 2), image.width - side / 2)
    cy = min(max(cy, side / 2), image.height - side / 2)

    factor = max(1, int(side / resolution))
    if factor > 1:
        image = image.reduce(factor)
        side, cx, cy = side / factor, cx / factor, cy / factor
    s = side / resolution
    cos, sin, half = s * math.cos(angle), s * math.sin(angle), resolution / 2
    coefficients = (cos, -sin, cx - cos * half + sin * half, sin, cos, cy - sin * half - cos * half)
    fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
    return image.transform(
        (resolution, resolution),
        Image.Transform.AFFINE,
        coefficients,
        resample=Image.Resampling.BICUBIC,
        fillcolor=fill,
    )


def _sharpness(crop: Image.Image) -> float:
    """Variance of the Laplacian over the face region (the crop's centre), at a fixed size.

    Calibrated on a 180 px face: sharp ~160, 2x upscaled ~40, Gaussian blur sigma 1 ~70,
    sigma 2 ~18, sigma 4 ~5.
    """
    inner = crop.width / _CROP_SCALE
    offset = (crop.width - inner) / 2
    region = crop.crop((round(offset), round(offset), round(offset + inner), round(offset + inner)))
    gray = region.convert("L").resize((_SHARPNESS_SIZE, _SHARPNESS_SIZE), Image.Resampling.BILINEAR)
    g = np.asarray(gray, dtype=np.float32)
    laplacian = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(laplacian.var())


class _Details(TypedDict, total=False):
    """What a `PhotoDecision` reports besides its code (as far as the gates got)."""

    face: FaceBox | None
    sharpness: float | None
    distance_to_front: float | None


class _Gates(TypedDict):
    resolution: int
    min_face_px: int
    blur_threshold: float
    decode_side: int | None
    max_pixels: int | None


def _decision(index: int, code: RejectCode, **details: Unpack[_Details]) -> PhotoDecision:
    return PhotoDecision(index=index, code=code, reason=_REASONS[code], **details)


@dataclass(frozen=True)
class _Analysis:
    """A photo that passed the quality gates, before the identity check."""

    face: _Face
    crop: Image.Image
    sharpness: float
    embedding: np.ndarray


def _analyse(
    data: bytes,
    *,
    resolution: int,
    min_face_px: int,
    blur_threshold: float,
    decode_side: int | None,
    max_pixels: int | None,
) -> _Analysis | tuple[RejectCode, _Details]:
    """Run the quality gates in order of cost; return the analysis or (code, details)."""
    try:
        declared = read_header(data)
        image = decode_rgb(data, max_pixels=max_pixels, draft_side=decode_side)
    except ImageDecodeError as exc:
        return RejectCode(exc.code), {}
    boxes = _detect(image)
    if not boxes:
        return RejectCode.NO_FACE, {}
    main = boxes[0]
    if any(other.area >= COMPARABLE_FACE_AREA * main.area for other in boxes[1:]):
        return RejectCode.MULTIPLE_FACES, {"face": main}
    if main.side < min_face_px and max(image.size) < max(declared.width, declared.height):
        # Draft decoding shrank a face the photo holds at full size: decode this one fully, so
        # the size gate, the crop and the sharpness all see the photo's own pixels.
        image = decode_rgb(data, max_pixels=max_pixels)
        boxes = _detect(image)
        if not boxes:
            return RejectCode.NO_FACE, {}
        main = boxes[0]
    if main.side < min_face_px:
        return RejectCode.FACE_TOO_SMALL, {"face": main}
    pixels = _pixels(image)
    face = _Face(box=main, shape=_landmarks(pixels, main))
    crop = _aligned_crop(image, face, resolution)
    sharpness = _sharpness(crop)
    if sharpness < blur_threshold:
        return RejectCode.TOO_BLURRY, {"face": main, "sharpness": sharpness}
    return _Analysis(
        face=face, crop=crop, sharpness=sharpness, embedding=_embedding(pixels, face.shape)
    )


def prepare_training_photos(
    front: bytes,
    photos: list[bytes],
    *,
    resolution: int = 512,
    keep: int = 15,
    min_face_px: int = 128,
    blur_threshold: float = 25.0,
    same_person_threshold: float = 0.6,
    decode_side: int | None = None,
    max_pixels: int | None = None,
    executor: concurrent.futures.Executor | None = None,
) -> PreparationResult:
    """Filter, align and rank a user's photos into a LoRA training set.

    With ``executor`` (e.g. the engine's post-processing process pool) the photos are analysed
    in parallel: part in its processes, part in this thread (dlib holds the GIL, so threads
    would not help).

    ``front`` is the identity anchor: it must hold exactly one clear face, else
    :class:`FrontPhotoError` (its ``code`` says why). It is not itself part of the training set;
    pass it in ``photos`` too if it should be. Each photo gets a :class:`PhotoDecision`; gates,
    in order: decodable image, a face, no second face of comparable size (area >=
    ``COMPARABLE_FACE_AREA`` of the largest), face side >= ``min_face_px`` (source pixels), face
    sharpness >= ``blur_threshold``, embedding distance to the front face <=
    ``same_person_threshold``. Survivors are ranked by distance to their mean embedding (as
    EasyPhoto does) and the ``keep`` most consistent are kept.

    ``decode_side`` lets JPEGs decode at reduced size (draft mode, both sides at least that
    long); ``max_pixels`` refuses a photo by its declared size before decoding it.

    Embeddings are computed, compared and averaged in memory only; none is written anywhere.
    """
    gates: _Gates = {
        "resolution": resolution,
        "min_face_px": min_face_px,
        "blur_threshold": blur_threshold,
        "decode_side": decode_side,
        "max_pixels": max_pixels,
    }
    anchor, *analysed = _analyse_all([front, *photos], gates, executor)
    if not isinstance(anchor, _Analysis):
        code, _ = anchor
        raise FrontPhotoError(code, f"Front photo rejected: {_REASONS[code]}")

    decisions: dict[int, PhotoDecision] = {}
    candidates: dict[int, _Analysis] = {}
    for index, result in enumerate(analysed):
        if not isinstance(result, _Analysis):
            code, details = result
            decisions[index] = _decision(index, code, **details)
            continue
        distance = float(np.linalg.norm(result.embedding - anchor.embedding))
        if distance > same_person_threshold:
            decisions[index] = _decision(
                index,
                RejectCode.DIFFERENT_PERSON,
                face=result.face.box,
                sharpness=result.sharpness,
                distance_to_front=distance,
            )
            continue
        candidates[index] = result
        decisions[index] = _decision(
            index,
            RejectCode.ACCEPTED,
            face=result.face.box,
            sharpness=result.sharpness,
            distance_to_front=distance,
        )

    kept, reference = _most_consistent(candidates, keep)
    for index in candidates.keys() - {p.index for p in kept}:
        decision = decisions[index]
        decisions[index] = _decision(
            index,
            RejectCode.NOT_AMONG_MOST_CONSISTENT,
            face=decision.face,
            sharpness=decision.sharpness,
            distance_to_front=decision.distance_to_front,
        )
    return PreparationResult(
        accepted=kept,
        decisions=[decisions[i] for i in range(len(photos))],
        reference_embedding=reference,
        front_face=anchor.face.box,
    )


def _analyse_all(
    photos: list[bytes], gates: _Gates, executor: concurrent.futures.Executor | None
) -> list[_Analysis | tuple[RejectCode, _Details]]:
    """`_analyse` of every photo, in order: without ``executor`` one after the other; with it,
    this thread takes an equal share as one more worker and the executor's processes the rest.
    Work lost to a broken pool is done here instead."""
    if executor is None or len(photos) < 2:
        return [_analyse(data, **gates) for data in photos]
    workers = max(1, int(getattr(executor, "_max_workers", 1)))
    local = len(photos) // (workers + 1)
    try:
        remote = [executor.submit(_analyse, data, **gates) for data in photos[local:]]
    except (RuntimeError, concurrent.futures.BrokenExecutor):  # shut down or broken
        return [_analyse(data, **gates) for data in photos]
    results = [_analyse(data, **gates) for data in photos[:local]]
    for data, future in zip(photos[local:], remote, strict=True):
        try:
            results.append(future.result())
        except concurrent.futures.BrokenExecutor:
            results.append(_analyse(data, **gates))
    return results


def _most_consistent(
    candidates: dict[int, _Analysis], keep: int
) -> tuple[list[PreparedPhoto], np.ndarray | None]:
    """Keep the ``keep`` candidates closest to the mean embedding; return them and their mean."""
    if not candidates or keep <= 0:
        return [], None
    indices = sorted(candidates)
    embeddings = np.stack([candidates[i].embedding for i in indices])
    distances = np.linalg.norm(embeddings - embeddings.mean(axis=0), axis=1)
    order = sorted(range(len(indices)), key=lambda k: (distances[k], indices[k]))[:keep]
    kept = [
        PreparedPhoto(
            index=indices[k],
            image=candidates[indices[k]].crop,
            distance_to_mean=float(distances[k]),
        )
        for k in order
    ]
    reference = embeddings[order].mean(axis=0).astype(np.float32)
    return kept, reference


def face_box(image: Image.Image) -> FaceBox | None:
    """The largest face in ``image`` (e.g. to restrict a refinement pass to it), or ``None``."""
    boxes = _detect(image)
    return boxes[0] if boxes else None


def face_embedding(image: Image.Image) -> np.ndarray | None:
    """The 128-d embedding (float32) of the largest face in ``image``, or ``None`` without a
    face. Held in memory only (biometric data, see the module docstring)."""
    box = face_box(image)
    if box is None:
        return None
    pixels = _pixels(image)
    return _embedding(pixels, _landmarks(pixels, box))


def face_landmarks(image: Image.Image) -> np.ndarray | None:
    """The 5 landmarks of the largest face as a (5, 2) float array of (x, y), or ``None``.

    dlib's 5-point order: two corners of one eye (0-1), of the other eye (2-3), nose base (4).
    """
    box = face_box(image)
    return None if box is None else _points(_landmarks(_pixels(image), box))


def likeness(image: Image.Image, reference_embedding: np.ndarray) -> float | None:
    """Similarity in [0, 1] of the largest face in ``image`` to ``reference_embedding``.

    Mapping: ``1 - euclidean_distance``, clipped to [0, 1]; so the customary same-person
    threshold (distance 0.6) is a likeness of 0.4, and the same photo mirrored or rescaled scores
    about 0.8-0.95. ``None`` when no face is found.
    """
    reference = np.asarray(reference_embedding, dtype=np.float32).reshape(-1)
    if reference.shape != (_EMBEDDING_SIZE,):
        raise FacesError(f"Reference embedding must have {_EMBEDDING_SIZE} values.")
    box = face_box(image)
    if box is None:
        return None
    pixels = _pixels(image)
    embedding = _embedding(pixels, _landmarks(pixels, box))
    return float(np.clip(1.0 - np.linalg.norm(embedding - reference), 0.0, 1.0))
