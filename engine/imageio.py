"""Safe decoding of untrusted image bytes.

Uploads and files handed back by users are untrusted: the only formats decoded are JPEG, PNG and
WEBP, recognised by their magic bytes (never by file name or client-sent content type), so SVG,
TIFF, PSD and polyglot files never reach a decoder. Pillow's decompression-bomb limit
(``Image.MAX_IMAGE_PIXELS``) is kept, and its warning band (between 1x and 2x the limit) is an
error here too. Decoded pixels are re-materialised into a fresh image, so no EXIF/GPS, XMP, ICC or
trailing payload survives into anything derived from them.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, ImageOps

__all__ = [
    "ImageDecodeError",
    "ImageHeader",
    "decode_rgb",
    "open_image",
    "read_header",
    "sniff_format",
]


class ImageDecodeError(ValueError):
    """The bytes are not a decodable JPEG/PNG/WEBP image, or the image is too large.

    ``code`` is stable and machine-readable: ``not_an_image`` or ``image_too_large``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def sniff_format(data: bytes) -> str | None:
    """Return ``"JPEG"``, ``"PNG"`` or ``"WEBP"`` from the magic bytes, else ``None``."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _open_lazily(data: bytes, *, stream: BinaryIO | None = None, start: int = 0) -> Image.Image:
    """Parse only the header with the sniffed format's decoder (no pixel data is decoded).
    ``data`` holds at least the first 12 bytes; ``stream``, if given, is the whole file."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageDecodeError("not_an_image", "The file is not a JPEG, PNG or WEBP image.")
    if stream is not None:
        stream.seek(start)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(stream if stream is not None else io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageDecodeError("image_too_large", "The image has too many pixels.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError("not_an_image", "The image file is damaged or truncated.") from exc


def read_header(data: bytes | BinaryIO) -> ImageHeader:
    """Format and declared size from the header alone: milliseconds and no pixel memory, so a
    web request can refuse a huge image before anything decodes it. ``data`` may be an open
    binary file (an upload spooled to disk): only the header is read from it, and its position
    is restored. Raises :class:`ImageDecodeError`."""
    if isinstance(data, bytes):
        image = _open_lazily(data)
        return ImageHeader(format=str(image.format), width=image.width, height=image.height)
    start = data.tell()
    try:
        image = _open_lazily(data.read(12), stream=data, start=start)
        return ImageHeader(format=str(image.format), width=image.width, height=image.height)
    finally:
        data.seek(start)


def _too_many_pixels(width: int, height: int, max_pixels: int) -> ImageDecodeError:
    return ImageDecodeError(
        "image_too_large",
        f"The image is {width}x{height} ({width * height / 1e6:.1f} megapixels); at most "
        f"{max_pixels / 1e6:.1f} megapixels are accepted.",
    )


def open_image(
    data: bytes, *, max_pixels: int | None = None, draft_side: int | None = None
) -> Image.Image:
    """Decode ``data`` fully with only the sniffed format's decoder; metadata stays in ``.info``.

    ``max_pixels`` refuses an image by its declared size before any pixel is decoded.
    ``draft_side`` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding, keeping
    both sides at least that long: a 48 Mpx phone photo needed at 2048 px decodes in a quarter
    of the time and memory. Other formats decode at full size. Loading eagerly surfaces
    truncated or corrupt files here instead of later, deep inside a pipeline. Raises
    :class:`ImageDecodeError`.
    """
    image = _open_lazily(data)
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise _too_many_pixels(image.width, image.height, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if draft_side is not None and image.format == "JPEG":
                image.draft("RGB", (draft_side, draft_side))
            image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageDecodeError("image_too_large", "The image has too many pixels.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError("not_an_image", "The image file is damaged or truncated.") from exc
    return image


def decode_rgb(
    data: bytes, *, max_pixels: int | None = None, draft_side: int | None = None
) -> Image.Image:
    """Decode untrusted bytes to an upright RGB image that carries no metadata at all.

    EXIF orientation is applied to the pixels (phones store portraits sideways and rely on the
    tag); transparency is flattened onto white so a transparent PNG does not turn black.
    ``max_pixels`` and ``draft_side`` are as for :func:`open_image`.

    Memory: at most two full-size pixel buffers are alive at once (the decoded image and the
    fresh RGB one it is copied into), so a 16 Mpx image peaks at about 100-120 MB here.
    """
    image = open_image(data, max_pixels=max_pixels, draft_side=draft_side)
    ImageOps.exif_transpose(image, in_place=True)  # a rotation replaces the pixels, no copy
    # The result is a fresh image holding only pixels: nothing of the file's info, EXIF, XMP
    # or ICC profile is carried over (convert() would copy `info`).
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        if image.mode != "RGBA":
            image = image.convert("RGBA")
        # Pasting through the alpha channel onto white is alpha_composite over opaque white,
        # pixel for pixel, without a second full-size RGBA canvas.
        flattened = Image.new("RGB", image.size, (255, 255, 255))
        flattened.paste(image, (0, 0), image)
        return flattened
    if image.mode != "RGB":
        image = image.convert("RGB")
    fresh = Image.new("RGB", image.size)
    fresh.paste(image)
    return fresh
