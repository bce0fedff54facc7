"""Output labelling: visible label, TC260 implicit label (XMP) and invisible watermark."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut

from engine.labels import (
    AIGC_NAMESPACE,
    IMPLICIT_LABEL_KEYS,
    LabelError,
    apply_labels,
    label_layout,
    read_labels,
    watermark_matches,
    watermark_payload,
)

JOB = "job-7f3a"
PRODUCER = "Portrait Workstation"


def reencode(data: bytes, fmt: str, size: tuple[int, int] | None = None, **params: object) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if size is not None:
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def portrait() -> Image.Image:
    return Image.fromarray(astronaut())


@pytest.fixture(scope="module")
def labelled(portrait: Image.Image) -> dict[str, bytes]:
    return {
        fmt: apply_labels(portrait, job_id=JOB, producer=PRODUCER, format=fmt)
        for fmt in ("PNG", "JPEG")
    }


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_implicit_label_round_trip(labelled, fmt):
    report = read_labels(labelled[fmt])
    assert report.format == fmt
    assert report.implicit_label == {
        "Label": "1",
        "ContentProducer": PRODUCER,
        "ProduceID": JOB,
        "ReservedCode1": watermark_payload(JOB).hex(),
        "ContentPropagator": "",
        "PropagateID": "",
        "ReservedCode2": "",
    }
    assert tuple(report.implicit_label) == IMPLICIT_LABEL_KEYS


def test_xmp_is_stored_where_readers_look(labelled):
    png = Image.open(io.BytesIO(labelled["PNG"]))
    assert AIGC_NAMESPACE in png.info["XML:com.adobe.xmp"]  # the iTXt chunk
    assert b"iTXt" in labelled["PNG"]
    jpeg = labelled["JPEG"]
    assert b"http://ns.adobe.com/xap/1.0/\x00" in jpeg  # the XMP APP1 segment
    assert AIGC_NAMESPACE.encode() in jpeg


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_watermark_identifies_the_job(labelled, fmt):
    report = read_labels(labelled[fmt])
    assert report.watermark_bits == watermark_payload(JOB)
    assert watermark_matches(report, JOB)
    assert not watermark_matches(report, "job-7f3b")


def test_watermark_survives_jpeg_90_at_512(labelled):
    stripped = reencode(labelled["PNG"], "JPEG", size=(512, 512), quality=90)
    report = read_labels(stripped)
    assert report.implicit_label is None  # re-encoding dropped the metadata ...
    assert watermark_matches(report, JOB)  # ... but the pixels still name the job
    assert report.visible_label


def test_watermark_payload_is_sha256_prefix():
    assert watermark_payload("abc").hex() == "ba7816bf"  # sha256("abc") starts with ba7816bf


def test_visible_label_is_at_least_5_percent_of_the_shorter_side():
    """Measured from the pixels: white text on the darkened box (~53) over mid-grey (128);
    text pixels are those above the midpoint between box and white."""
    grey = Image.new("RGB", (640, 400), (128, 128, 128))
    image = Image.open(io.BytesIO(apply_labels(grey, job_id=JOB, producer=PRODUCER)))
    luminance = np.asarray(image.convert("L"), dtype=np.int16)
    box_rows, box_cols = np.nonzero(luminance < 80)
    text_rows, _ = np.nonzero(luminance > 154)
    shorter = min(image.size)
    assert box_rows.min() > shorter / 2 and box_cols.min() > image.width / 2  # bottom-right
    assert text_rows.max() - text_rows.min() + 1 >= 0.05 * shorter
    assert box_rows.max() - box_rows.min() + 1 >= 0.05 * shorter
    assert read_labels(image_bytes(image)).visible_label


def image_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(512, 512), (1920, 1080), (64, 64)])
def test_layout_text_height(size):
    layout = label_layout(size)
    assert layout.text_height >= 0.05 * min(size)
    x0, y0, x1, y1 = layout.box
    assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]


def test_unlabelled_image_reports_no_labels(portrait):
    report = read_labels(image_bytes(portrait))
    assert report.implicit_label is None
    assert not report.visible_label
    assert not watermark_matches(report, JOB)


def test_output_is_deterministic_and_drops_input_metadata(portrait):
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0)})
    source = io.BytesIO()
    portrait.save(source, "JPEG", exif=exif)
    with_gps = Image.open(io.BytesIO(source.getvalue()))
    first = apply_labels(with_gps, job_id=JOB, producer=PRODUCER, format="JPEG", quality=90)
    second = apply_labels(with_gps, job_id=JOB, producer=PRODUCER, format="JPEG", quality=90)
    assert first == second
    assert "exif" not in Image.open(io.BytesIO(first)).info


def test_small_images_get_visible_and_implicit_labels_without_watermark(portrait):
    report = read_labels(apply_labels(portrait.resize((128, 128)), job_id=JOB, producer=PRODUCER))
    assert report.visible_label
    assert report.implicit_label is not None and report.implicit_label["ReservedCode1"] == ""
    assert report.watermark_bits is None


def test_rejects_unsupported_formats(portrait):
    with pytest.raises(LabelError):
        apply_labels(portrait, job_id=JOB, producer=PRODUCER, format="GIF")  # type: ignore[arg-type]
