"""Labelling of generated images (China GB 45438-2025 labelling rules, EU AI Act Art. 50).

Every delivered image carries three labels, applied in this order:

1. Visible: the text (default "AI生成") in white on a semi-opaque black box in the bottom-right
   corner; the text's ink is at least 5% of the image's shorter side tall (GB 45438 minimum;
   never below 10 px so it stays legible on small previews).
2. Invisible watermark: invisible-watermark's ``dwtDctSvd`` method (U channel, scale 36, 4x4
   blocks) carrying 32 bits = the first 4 bytes of ``sha256(job_id as UTF-8)``. It survives
   JPEG quality 90 at 512x512 and covers the visible label too. The method needs at least
   256x256 pixels; smaller images (test and preview sizes) get no watermark.
3. Implicit (metadata): an XMP packet, namespace ``http://www.tc260.org.cn/ns/AIGC/1.0/``,
   property ``TC260:AIGC`` holding JSON with the seven keys of GB 45438: ``Label`` "1" (the
   content is AI generated), ``ContentProducer``, ``ProduceID`` (the job id), ``ReservedCode1``
   (the watermark payload in hex, so metadata and pixels can be cross-checked; "" without a
   watermark) and the propagator fields, left empty for platforms that distribute the file.
   PNG: an uncompressed iTXt chunk ``XML:com.adobe.xmp``; JPEG: an APP1 XMP segment.

Output is deterministic for the same inputs on the same machine (the font found may differ
between machines; the text is laid out with Pillow's basic layout so libraqm does not matter).
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import io
import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from PIL import Image, ImageDraw, ImageFilter, ImageFont, PngImagePlugin

from engine.fonts import FONT_ENV, font_files
from engine.imageio import open_image


def _load_dwt_dct_svd() -> Any:
    """invisible-watermark's DWT-DCT-SVD module on its own. The package's ``__init__`` imports
    its RivaGAN encoder and with it torch: about 200 MB more in every post-processing process
    (`engine.postprocess`), for a method the labels do not use."""
    package = importlib.util.find_spec("imwatermark")  # finds it without importing it
    if package is None or not package.submodule_search_locations:
        raise ImportError("invisible-watermark (imwatermark) is not installed")
    path = Path(next(iter(package.submodule_search_locations))) / "dwtDctSvd.py"
    spec = importlib.util.spec_from_file_location("engine._imwatermark_dwt_dct_svd", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EmbedDwtDctSvd = _load_dwt_dct_svd().EmbedDwtDctSvd

__all__ = [
    "AIGC_NAMESPACE",
    "DEFAULT_TEXT",
    "FONT_ENV",
    "IMPLICIT_LABEL_KEYS",
    "LabelError",
    "LabelFontError",
    "LabelLayout",
    "LabelReport",
    "WATERMARK_MAX_BIT_ERRORS",
    "apply_labels",
    "label_layout",
    "read_labels",
    "watermark_matches",
    "watermark_payload",
]

DEFAULT_TEXT = "AI生成"
AIGC_NAMESPACE = "http://www.tc260.org.cn/ns/AIGC/1.0/"
IMPLICIT_LABEL_KEYS = (
    "Label",
    "ContentProducer",
    "ProduceID",
    "ReservedCode1",
    "ContentPropagator",
    "PropagateID",
    "ReservedCode2",
)

_TEXT_HEIGHT_RATIO = 0.05
_MIN_TEXT_PX = 10
_BOX_ALPHA = 150  # of 255: the box darkens what is under it to ~40%, so white text reads
_VISIBLE_CONTRAST = 100  # min mean luminance gap between text strokes and box background

_WATERMARK_BITS = 32
_WATERMARK_MIN_PIXELS = 256 * 256
_WATERMARK_SCALES = [0, 36, 0]  # invisible-watermark's dwtDctSvd defaults: U channel only
_WATERMARK_BLOCK = 4
WATERMARK_MAX_BIT_ERRORS = 2
"""Bits allowed to differ in :func:`watermark_matches`: recompression flips an occasional bit
on busy images, while an unrelated 32-bit value lands within 2 bits with p = 529 / 2**32."""


class LabelError(ValueError):
    """The image cannot be labelled as requested."""


class LabelFontError(LabelError):
    """No installed font can render the label text (install fonts-wqy-microhei)."""


@dataclass(frozen=True)
class LabelLayout:
    """Where the visible label goes in an image of a given size (right/bottom exclusive)."""

    box: tuple[int, int, int, int]
    text_origin: tuple[int, int]
    font_size: int
    text_height: int


@dataclass(frozen=True)
class LabelReport:
    """What :func:`read_labels` found.

    ``watermark_bits`` are the 4 bytes read from the pixels (``None`` below 256x256). Any image
    yields some bits; only :func:`watermark_matches` says whether they are a job's mark.
    """

    format: str
    implicit_label: dict[str, str] | None
    watermark_bits: bytes | None
    visible_label: bool


def watermark_payload(job_id: str) -> bytes:
    """The 32-bit watermark payload of a job: the first 4 bytes of sha256(job_id, UTF-8)."""
    return hashlib.sha256(job_id.encode("utf-8")).digest()[: _WATERMARK_BITS // 8]


def watermark_matches(report: LabelReport, job_id: str) -> bool:
    """Whether the pixels carry ``job_id``'s watermark (up to 2 flipped bits tolerated)."""
    if report.watermark_bits is None:
        return False
    found = np.unpackbits(np.frombuffer(report.watermark_bits, dtype=np.uint8))
    wanted = np.unpackbits(np.frombuffer(watermark_payload(job_id), dtype=np.uint8))
    return int(np.count_nonzero(found != wanted)) <= WATERMARK_MAX_BIT_ERRORS


def _covers(font: ImageFont.FreeTypeFont, text: str) -> bool:
    """True when every character has a real glyph (its bitmap differs from the .notdef box)."""
    notdef = bytes(font.getmask("\U0010ffff"))
    return all(ch.isspace() or bytes(font.getmask(ch)) != notdef for ch in text)


@cache
def _font_path(text: str) -> str:
    for path in font_files():
        if _covers(_font(path, 32), text):
            return path
    raise LabelFontError(
        f"No font can render {text!r}. Install a CJK font (Debian: apt-get install "
        f"fonts-wqy-microhei) or set {FONT_ENV} to a font file."
    )


@cache
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


def _bbox(font: ImageFont.FreeTypeFont, text: str) -> tuple[int, int, int, int]:
    """``font.getbbox(text)``: whole pixels without a stroke (Pillow types it as floats)."""
    left, top, right, bottom = font.getbbox(text)
    return int(left), int(top), int(right), int(bottom)


def _ink_height(font: ImageFont.FreeTypeFont, text: str) -> int:
    """Height of the rendered text counting only rows with a pixel at least 75% covered.

    ``getbbox`` includes faint anti-aliased rows, so it overstates the visible height by 1-2 px;
    measuring the glyphs themselves keeps the 5% rule true of what a viewer sees.
    """
    left, top, right, bottom = _bbox(font, text)
    canvas = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(canvas).text((-left, -top), text, fill=255, font=font)
    rows = np.nonzero((np.asarray(canvas) >= 192).any(axis=1))[0]
    return int(rows[-1] - rows[0] + 1) if rows.size else 0


def label_layout(size: tuple[int, int], text: str = DEFAULT_TEXT) -> LabelLayout:
    """Lay the visible label out for an image of ``size``: the smallest font whose ink height
    reaches 5% of the shorter side, padded into a box in the bottom-right corner."""
    width, height = size
    shorter = min(width, height)
    required = max(math.ceil(_TEXT_HEIGHT_RATIO * shorter), _MIN_TEXT_PX)
    path = _font_path(text)
    font_size = required
    while _ink_height(_font(path, font_size), text) < required:
        font_size += 1
    left, top, right, bottom = _bbox(_font(path, font_size), text)
    pad = max(2, round(0.3 * required))
    margin = max(2, round(0.02 * shorter))
    box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
    if box_w + 2 * margin > width or box_h + 2 * margin > height:
        raise LabelError(f"A {width}x{height} image is too small for the label {text!r}.")
    x0, y0 = width - margin - box_w, height - margin - box_h
    return LabelLayout(
        box=(x0, y0, x0 + box_w, y0 + box_h),
        text_origin=(x0 + pad - left, y0 + pad - top),
        font_size=font_size,
        text_height=_ink_height(_font(path, font_size), text),
    )


def _text_mask(layout: LabelLayout, text: str) -> Image.Image:
    """The label's glyph coverage (L mode) over the label box."""
    x0, y0, x1, y1 = layout.box
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    origin = (layout.text_origin[0] - x0, layout.text_origin[1] - y0)
    font = _font(_font_path(text), layout.font_size)
    ImageDraw.Draw(mask).text(origin, text, fill=255, font=font)
    return mask


def _draw_visible(image: Image.Image, text: str) -> Image.Image:
    layout = label_layout(image.size, text)
    x0, y0, x1, y1 = layout.box
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(overlay).rectangle((x0, y0, x1 - 1, y1 - 1), fill=(0, 0, 0, _BOX_ALPHA))
    white = Image.new("RGBA", (x1 - x0, y1 - y0), (255, 255, 255, 255))
    overlay.paste(white, (x0, y0), _text_mask(layout, text))
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")


def _has_visible(image: Image.Image, text: str) -> bool:
    """Template check of the known layout: inside the expected box, pixels under the glyph
    strokes must be much brighter than box pixels away from them. On unlabelled content both
    sets sample the same scene, so their means are close; JPEG and the watermark move them by
    a few levels only."""
    try:
        layout = label_layout(image.size, text)
    except LabelError:
        return False
    mask = _text_mask(layout, text)
    strokes = np.asarray(mask) >= 192
    background = np.asarray(mask.filter(ImageFilter.MaxFilter(5))) == 0
    luminance = np.asarray(image.convert("L").crop(layout.box), dtype=np.float32)
    if not strokes.any() or not background.any():
        return False
    gap = luminance[strokes].mean() - luminance[background].mean()
    return bool(gap >= _VISIBLE_CONTRAST)


def _embed_watermark(image: Image.Image, payload: bytes) -> Image.Image:
    bits = [int(b) for b in np.unpackbits(np.frombuffer(payload, dtype=np.uint8))]
    embedder = EmbedDwtDctSvd(
        bits, wmLen=_WATERMARK_BITS, scales=_WATERMARK_SCALES, block=_WATERMARK_BLOCK
    )
    bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
    return Image.fromarray(np.ascontiguousarray(embedder.encode(bgr)[:, :, ::-1]), "RGB")


def _read_watermark(image: Image.Image) -> bytes | None:
    if image.width * image.height < _WATERMARK_MIN_PIXELS:
        return None
    decoder = EmbedDwtDctSvd(
        [], wmLen=_WATERMARK_BITS, scales=_WATERMARK_SCALES, block=_WATERMARK_BLOCK
    )
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    return np.packbits(np.asarray(decoder.decode(bgr), dtype=np.uint8)).tobytes()


def _xmp_packet(fields: dict[str, str]) -> bytes:
    value = html.escape(json.dumps(fields, ensure_ascii=False, separators=(",", ":")), quote=False)
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:TC260="{AIGC_NAMESPACE}">'
        f"<TC260:AIGC>{value}</TC260:AIGC>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode()


def _parse_xmp(xmp: bytes | str) -> dict[str, str] | None:
    """The TC260:AIGC JSON from an XMP packet, as element or attribute; None if absent/invalid.

    Parsed with defusedxml: metadata of uploaded files is untrusted (entity expansion attacks).
    """
    try:
        root = fromstring(xmp)
    except (ParseError, DefusedXmlException, ValueError):
        return None
    tag = f"{{{AIGC_NAMESPACE}}}AIGC"
    for element in root.iter():
        raw = element.text if element.tag == tag else element.attrib.get(tag)
        if raw is None:
            continue
        try:
            fields = json.loads(raw)
        except ValueError:
            return None
        return {str(k): str(v) for k, v in fields.items()} if isinstance(fields, dict) else None
    return None


def warm_up() -> None:
    """Find and load the label font now (a pool process at start), not in the first job."""
    label_layout((512, 512))


def apply_labels(
    image: Image.Image,
    *,
    job_id: str,
    producer: str,
    text: str = DEFAULT_TEXT,
    format: Literal["PNG", "JPEG"] = "PNG",
    quality: int = 95,
) -> bytes:
    """Encode ``image`` as PNG or JPEG bytes carrying the visible, invisible and implicit labels.

    Any metadata of ``image`` is dropped. ``quality`` applies to JPEG only.
    """
    if format not in ("PNG", "JPEG"):
        raise LabelError(f"Unsupported output format {format!r}; use PNG or JPEG.")
    if not 1 <= quality <= 100:
        raise LabelError("JPEG quality must be between 1 and 100.")
    labelled = _draw_visible(image.convert("RGB"), text)
    payload = b""
    if labelled.width * labelled.height >= _WATERMARK_MIN_PIXELS:
        payload = watermark_payload(job_id)
        labelled = _embed_watermark(labelled, payload)
    xmp = _xmp_packet(
        {
            "Label": "1",
            "ContentProducer": producer,
            "ProduceID": job_id,
            "ReservedCode1": payload.hex(),
            "ContentPropagator": "",
            "PropagateID": "",
            "ReservedCode2": "",
        }
    )
    buffer = io.BytesIO()
    if format == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"), zip=False)
        # zlib level 1: several times faster than the default 6, files a little larger.
        labelled.save(buffer, "PNG", pnginfo=info, compress_level=1)
    else:
        labelled.save(buffer, "JPEG", quality=quality, xmp=xmp)
    return buffer.getvalue()


def read_labels(data: bytes, *, text: str = DEFAULT_TEXT) -> LabelReport:
    """Recover the labels from image bytes (JPEG, PNG or WEBP; decoded safely).

    ``visible_label`` checks for ``text`` at the position :func:`label_layout` gives for this
    image's size, so it holds for our own outputs and re-encodes at the same size.
    """
    image = open_image(data)
    xmp = image.info.get("xmp")
    pixels = image.convert("RGB")
    return LabelReport(
        format=str(image.format),
        implicit_label=_parse_xmp(xmp) if xmp else None,
        watermark_bits=_read_watermark(pixels),
        visible_label=_has_visible(pixels, text),
    )
