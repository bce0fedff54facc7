"""Real photos built in code for intake tests (no files shipped, no downloads).

Faces: scikit-image's astronaut (one person) in many variations, and matplotlib's bundled
portrait of Grace Hopper (a different person).
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

from PIL import Image, ImageFilter

from templates_studio import demo


@lru_cache(maxsize=1)
def astronaut() -> Image.Image:
    return demo.astronaut()


@lru_cache(maxsize=1)
def other_person() -> Image.Image:
    return demo.grace_hopper()


def jpeg(image: Image.Image, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, **save_args)
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def same_person_photos(count: int) -> list[bytes]:
    """`count` distinct photos of the same person (variations of crop, tone and mirror)."""
    return demo.photo_set(astronaut(), count)


def front_photo() -> bytes:
    return jpeg(astronaut())


def different_person() -> bytes:
    return jpeg(other_person())


def no_face() -> bytes:
    return jpeg(Image.new("RGB", (800, 800), (120, 160, 200)).filter(ImageFilter.GaussianBlur(2)))


def two_faces() -> bytes:
    face = astronaut().resize((640, 640), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (1280, 640), "white")
    canvas.paste(face, (0, 0))
    canvas.paste(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (640, 0))
    return jpeg(canvas)


def with_gps_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "SecretPhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (31.0, 14.0, 1.5)  # GPSLatitudeRef, GPSLatitude
    gps[3], gps[4] = "E", (121.0, 28.0, 2.5)
    return jpeg(astronaut().transpose(Image.Transpose.FLIP_LEFT_RIGHT), exif=exif.tobytes())


def truncated() -> bytes:
    data = front_photo()
    return data[: len(data) // 3]


def text_file() -> bytes:
    return b"this is not an image, whatever its name says\n" * 20


def svg() -> bytes:
    return (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" '
        b'height="100"><circle cx="50" cy="50" r="40"/></svg>'
    )


def png_bomb() -> bytes:
    """A tiny PNG that declares 100000 x 100000 pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
