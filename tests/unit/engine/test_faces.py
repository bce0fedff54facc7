"""Photo preparation and likeness, on the real dlib models and a real face photo.

The only real face photo available offline is scikit-image's ``astronaut`` (one person), so
every input is built from it in code. ``different_person`` is exercised through the real
embeddings with a tightened ``same_person_threshold``; likeness against another person uses a
synthetic reference embedding (the real one with its components permuted).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageFilter
from skimage.data import astronaut

from engine.faces import (
    FrontPhotoError,
    PreparationResult,
    RejectCode,
    face_box,
    face_landmarks,
    likeness,
    prepare_training_photos,
)
from engine.imageio import ImageDecodeError, decode_rgb

ORIENTATION = 0x0112
GPS_IFD = 0x8825


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def face() -> Image.Image:
    """The astronaut at 1024 px: her face box is ~180 px, above the 128 px minimum."""
    return Image.fromarray(astronaut()).resize((1024, 1024), Image.Resampling.LANCZOS)


def sideways(face: Image.Image) -> Image.Image:
    """Pixels as a phone stores a portrait shot: rotated, relying on EXIF orientation 6."""
    return face.transpose(Image.Transpose.ROTATE_90)


def with_orientation(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return encode(image, "JPEG", quality=95, exif=exif)


def with_gps(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 0.0)})
    return encode(image, "JPEG", quality=95, exif=exif)


@pytest.fixture(scope="module")
def inputs(face: Image.Image) -> dict[str, bytes]:
    mirrored = face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pair = Image.new("RGB", (2048, 1024))
    pair.paste(face, (0, 0))
    pair.paste(mirrored, (1024, 0))
    jpeg = encode(face, "JPEG", quality=90)
    return {
        "valid": encode(face),
        "mirrored_smaller": encode(mirrored.resize((800, 800), Image.Resampling.LANCZOS)),
        "exif_rotated": with_orientation(sideways(face)),
        "gps": with_gps(face),
        "sideways_no_exif": encode(sideways(face), "JPEG", quality=95),
        "noise": encode(
            Image.fromarray(
                np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)
            )
        ),
        "flat": encode(Image.new("RGB", (600, 600), (90, 120, 200))),
        "two_faces": encode(pair),
        "text": b"name,email\nalice,alice@example.test\n",
        "truncated_jpeg": jpeg[: len(jpeg) // 2],
        "tiny_face": encode(face.resize((512, 512), Image.Resampling.LANCZOS)),
        "blurred": encode(face.filter(ImageFilter.GaussianBlur(4))),
    }


VALID = ["valid", "mirrored_smaller", "exif_rotated", "gps"]


@pytest.fixture(scope="module")
def prepared(inputs: dict[str, bytes]) -> PreparationResult:
    """One preparation run over every case; keep one fewer than the valid photos."""
    return prepare_training_photos(inputs["valid"], list(inputs.values()), keep=len(VALID) - 1)


def code_of(result: PreparationResult, inputs: dict[str, bytes], name: str) -> RejectCode:
    decision = result.decisions[list(inputs).index(name)]
    assert decision.reason  # every decision carries a human-readable reason
    return decision.code


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("noise", RejectCode.NO_FACE),
        ("flat", RejectCode.NO_FACE),
        ("sideways_no_exif", RejectCode.NO_FACE),
        ("two_faces", RejectCode.MULTIPLE_FACES),
        ("text", RejectCode.NOT_AN_IMAGE),
        ("truncated_jpeg", RejectCode.NOT_AN_IMAGE),
        ("tiny_face", RejectCode.FACE_TOO_SMALL),
        ("blurred", RejectCode.TOO_BLURRY),
    ],
)
def test_rejects_unusable_photos(prepared, inputs, name, code):
    assert code_of(prepared, inputs, name) is code


def test_valid_photos_are_kept_up_to_keep_as_aligned_crops(prepared, inputs):
    codes = [code_of(prepared, inputs, name) for name in VALID]
    assert codes.count(RejectCode.ACCEPTED) == len(VALID) - 1
    assert codes.count(RejectCode.NOT_AMONG_MOST_CONSISTENT) == 1
    assert sorted(p.index for p in prepared.accepted) == sorted(
        list(inputs).index(n) for n, c in zip(VALID, codes, strict=True) if c is RejectCode.ACCEPTED
    )
    distances = [p.distance_to_mean for p in prepared.accepted]
    assert distances == sorted(distances)
    for photo in prepared.accepted:
        assert photo.image.size == (512, 512)
        assert photo.image.mode == "RGB"


def test_reference_embedding_is_the_float32_mean_of_kept_photos(prepared):
    reference = prepared.reference_embedding
    assert reference is not None
    assert reference.dtype == np.float32
    assert reference.shape == (128,)
    for photo in prepared.accepted:
        assert likeness(photo.image, reference) > 0.75


def test_exif_orientation_is_applied(face, inputs, prepared):
    upright = decode_rgb(inputs["exif_rotated"])
    assert upright.size == face.size
    difference = np.abs(np.asarray(upright, np.int16) - np.asarray(face, np.int16)).mean()
    assert difference < 4  # JPEG noise only; a sideways image would differ by far more
    assert code_of(prepared, inputs, "exif_rotated") in (
        RejectCode.ACCEPTED,
        RejectCode.NOT_AMONG_MOST_CONSISTENT,
    )


def test_gps_exif_does_not_survive_into_outputs(inputs, prepared):
    assert Image.open(io.BytesIO(inputs["gps"])).getexif().get_ifd(GPS_IFD)  # the input has GPS
    decoded = decode_rgb(inputs["gps"])
    assert decoded.info == {}
    assert len(decoded.getexif()) == 0
    for photo in prepared.accepted:
        assert photo.image.info == {}
        assert b"Exif" not in encode(photo.image)


def eye_tilt_degrees(image: Image.Image) -> float:
    """Angle of the line between the eye centres, 0 when level."""
    points = face_landmarks(image)
    assert points is not None
    left, right = sorted([points[0:2].mean(axis=0), points[2:4].mean(axis=0)], key=lambda p: p[0])
    return abs(math.degrees(math.atan2(right[1] - left[1], right[0] - left[0])))


def test_eyes_are_levelled_in_the_crop(face):
    tilted = face.rotate(15, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
    assert eye_tilt_degrees(tilted) > 10  # the check below can fail
    result = prepare_training_photos(encode(face), [encode(tilted)])
    (crop,) = result.accepted
    assert eye_tilt_degrees(crop.image) < 2


def test_different_person_by_embedding_distance(inputs):
    """Mirror + rescale moves the real embedding ~0.2; a 0.1 threshold calls that a stranger."""
    photos = [inputs["mirrored_smaller"]]
    strict = prepare_training_photos(inputs["valid"], photos, same_person_threshold=0.1)
    (decision,) = strict.decisions
    assert decision.code is RejectCode.DIFFERENT_PERSON
    assert decision.distance_to_front is not None and 0.1 < decision.distance_to_front < 0.6
    assert strict.accepted == []
    assert strict.reference_embedding is None


@pytest.mark.parametrize(
    ("name", "code"),
    [("flat", "no_face"), ("two_faces", "multiple_faces"), ("text", "not_an_image")],
)
def test_front_photo_must_hold_exactly_one_clear_face(inputs, name, code):
    with pytest.raises(FrontPhotoError) as error:
        prepare_training_photos(inputs[name], [inputs["valid"]])
    assert error.value.code == code
    assert isinstance(error.value, ValueError)


def test_likeness_ranks_the_same_person_above_another(prepared, face):
    reference = prepared.reference_embedding
    stranger = np.roll(reference, 64)  # same statistics, unrelated direction
    probe = face.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((700, 700))
    same = likeness(probe, reference)
    other = likeness(probe, stranger)
    assert same is not None and other is not None
    assert 0.0 <= other < 0.4 < 0.75 < same <= 1.0
    assert likeness(Image.new("RGB", (512, 512), (200, 200, 200)), reference) is None


def test_face_box_finds_the_face(face):
    box = face_box(face)
    assert box is not None
    assert 300 < (box.left + box.right) / 2 < 600 and 150 < (box.top + box.bottom) / 2 < 350
    assert face_box(Image.new("RGB", (400, 400))) is None


def test_decoder_refuses_non_images_and_bombs(monkeypatch, face):
    with pytest.raises(ImageDecodeError) as error:
        decode_rgb(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    assert error.value.code == "not_an_image"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1024 * 1024 // 2 + 1)  # 2x is an error in Pillow
    with pytest.raises(ImageDecodeError) as error:
        decode_rgb(encode(face))  # 1x-2x the limit: only a warning in Pillow, an error here
    assert error.value.code == "image_too_large"


def test_header_is_read_from_a_file_without_decoding_and_its_position_restored(tmp_path):
    from engine.imageio import read_header

    path = tmp_path / "huge.png"
    Image.new("L", (9000, 7000)).save(path)  # 63 Mpx in a few KB
    with open(path, "rb") as handle:
        handle.seek(0)
        header = read_header(handle)
        assert (header.format, header.width, header.height) == ("PNG", 9000, 7000)
        assert handle.tell() == 0
    with pytest.raises(ImageDecodeError) as error:
        decode_rgb(path.read_bytes(), max_pixels=50_000_000)
    assert error.value.code == "image_too_large" and "9000x7000" in str(error.value)


def test_jpeg_draft_decoding_keeps_both_sides_at_least_the_asked_side(face):
    big = face.resize((4096, 3072))
    decoded = decode_rgb(encode(big, "JPEG"), draft_side=1024)
    assert decoded.size == (2048, 1536)  # 1/2 scale: 1/4 would make a side shorter than 1024
    assert decode_rgb(encode(big, "PNG"), draft_side=1024).size == (4096, 3072)  # JPEG only


def test_face_shrunk_by_draft_decoding_is_judged_and_cropped_at_full_size():
    """A 50 Mpx JPEG decodes at half size (draft mode); its face, large enough in the photo
    but not in the draft, is decoded again at full size for the size gate and the crop."""
    from engine.faces import prepare_training_photos

    canvas = Image.new("RGB", (8192, 6144), "white")
    canvas.paste(Image.fromarray(astronaut()).resize((2048, 2048)), (3000, 2000))
    data = encode(canvas, "JPEG", quality=90)
    result = prepare_training_photos(data, [data], min_face_px=300, decode_side=2048, keep=1)
    assert result.decisions[0].accepted
    assert result.front_face.side >= 300  # measured on the full-size photo, not the draft
