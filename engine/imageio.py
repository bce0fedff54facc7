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

from PIL import Image, ImageOps

__all__ = ["ImageDecodeError", "decode_rgb", "open_image", "sniff_format"]


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


def open_image(data: bytes) -> Image.Image:
    """Decode ``data`` fully with only the sniffed format's decoder; metadata stays in ``.info``.

    Loading eagerly surfaces truncated or corrupt files here instead of later, deep inside a
    pipeline. Raises :class:`ImageDecodeError`.
    """
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageDecodeError("not_an_image", "The file is not a JPEG, PNG or WEBP image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
            image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageDecodeError("image_too_large", "The image has too many pixels.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError("not_an_image", "The image file is damaged or truncated.") from exc
    return image


def decode_rgb(data: bytes) -> Image.Image:
    """Decode untrusted bytes to an upright RGB image that carries no metadata at all.

    EXIF orientation is applied to the pixels (phones store portraits sideways and rely on the
    tag); transparency is flattened onto white so a transparent PNG does not turn black.
    """
    image = ImageOps.exif_transpose(open_image(data))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flattened = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flattened.alpha_composite(rgba)
        image = flattened
    rgb = image.convert("RGB")
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())
