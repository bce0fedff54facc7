"""Asset uploads are bounded whatever their content (security probe: an 81 Mpx asset held a web
thread 1.5 s and grew the process by 881 MB).

The declared size is read from the header and an image over ASSET_MAX_PIXELS is refused with a
400 before anything decodes it; a JPEG decodes straight at about 2048 px; decode_rgb keeps at
most two full-size buffers alive.
"""

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

import engine.imageio
from engine.imageio import decode_rgb

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]


def declared_png(width: int, height: int) -> bytes:
    """A tiny file whose PNG header declares width x height (its pixel data is a token)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _upload(client, data: bytes, kind: str = "reference"):
    return client.post(
        "/api/studio/assets",
        {"kind": kind, "file": SimpleUploadedFile("a.img", data)},
        format="multipart",
    )


def test_an_over_budget_image_is_refused_from_its_header_before_decoding(
    signed_in, designer, monkeypatch
):
    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded an over-budget image")

    monkeypatch.setattr(engine.imageio, "open_image", must_not_decode)
    monkeypatch.setattr(engine.imageio, "decode_rgb", must_not_decode)
    response = _upload(signed_in(designer), declared_png(9000, 9000))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "81.0 megapixels" in error["fields"]["file"][0]


def test_the_budget_is_the_setting(signed_in, designer, settings):
    settings.ASSET_MAX_PIXELS = 100 * 100
    client = signed_in(designer)
    buffer = io.BytesIO()
    Image.new("RGB", (101, 100), "gray").save(buffer, "PNG")
    assert _upload(client, buffer.getvalue()).status_code == 400
    buffer = io.BytesIO()
    Image.new("RGB", (100, 100), "gray").save(buffer, "PNG")
    assert _upload(client, buffer.getvalue()).status_code == 201


def test_a_large_jpeg_decodes_in_draft_mode_to_the_kept_size(signed_in, designer, monkeypatch):
    seen = []
    real = engine.imageio.open_image

    def spy(data, **kwargs):
        image = real(data, **kwargs)
        seen.append((kwargs, image.size))
        return image

    monkeypatch.setattr(engine.imageio, "open_image", spy)
    buffer = io.BytesIO()
    Image.new("RGB", (4096, 3072), (20, 90, 160)).save(buffer, "JPEG", quality=80)
    response = _upload(signed_in(designer), buffer.getvalue())
    assert response.status_code == 201, response.content
    assert (response.json()["width"], response.json()["height"]) == (2048, 1536)
    [(kwargs, decoded_size)] = seen
    assert kwargs["draft_side"] == 1536  # the kept image's shorter side
    assert decoded_size == (2048, 1536)  # the decoder scaled by 1/2: a quarter of the pixels


def test_decode_rgb_keeps_its_guarantees():
    # EXIF orientation applied, transparency flattened onto white, no metadata left.
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.new("RGB", (80, 40), (200, 0, 0)).save(buffer, "JPEG", exif=exif.tobytes())
    upright = decode_rgb(buffer.getvalue())
    assert upright.size == (40, 80) and upright.mode == "RGB"
    assert upright.info == {} and not upright.getexif()

    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (10, 20, 30, 255))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG", pnginfo=_text_chunk())
    flat = decode_rgb(buffer.getvalue())
    assert flat.mode == "RGB" and flat.info == {}
    assert flat.getpixel((5, 5)) == (255, 255, 255) and flat.getpixel((0, 0)) == (10, 20, 30)

    palette = Image.new("P", (64, 64), 1)
    palette.putpalette([0, 0, 0, 9, 8, 7] + [0] * 762)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=0)
    assert decode_rgb(buffer.getvalue()).getpixel((3, 3)) == (9, 8, 7)


def _text_chunk():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret")
    return info


_MEASURE = """
import gc, io, json, os, resource, sys
import django
django.setup()
from templates_studio import services
services._store_asset = lambda **kw: (kw["width"], kw["height"])
data = open(sys.argv[1], "rb").read()
gc.collect()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    services.asset_upload(user=None, data=data, kind="reference")
    outcome = "stored"
except Exception as exc:
    outcome = type(exc).__name__
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_mb": (after - before) / 1024, "outcome": outcome}))
"""


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "declared"])
def test_a_16_megapixel_upload_grows_the_process_by_less_than_200_mb(tmp_path, fmt):
    path = tmp_path / "asset"
    if fmt == "declared":
        path.write_bytes(declared_png(9000, 9000))
    else:
        Image.linear_gradient("L").resize((4096, 4096)).convert("RGB").save(path, fmt)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "workstation.settings"}
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["outcome"] == ("InvalidInput" if fmt == "declared" else "stored")
    assert measured["grew_mb"] < 200, measured
