"""Contact sheets: a template's preview grid (rows = test avatars, columns = seeds) as one image.

Layout, top to bottom: an optional dark title bar (only when ``title`` is not empty), a header
row with the column labels, then one row per avatar: its label in the header column on the
left, then its cells. Cells are ``cell_size`` boxes (an ``int`` for squares or a
``(width, height)`` pair) separated by a gutter; each image is scaled to fit its box, keeping its
aspect ratio, and centred. A cell that has no image yet is a grey placeholder with a word on
it: ``None`` shows ``"pending"``; a string shows that string (pass :data:`FAILED` for a failed
render). :func:`contact_sheet_layout` gives every box's position, so a UI can map clicks on the
sheet back to cells.

Labels are drawn with a CJK-capable font (avatar names may be Chinese), looked up like
``engine.labels`` does: ``$ENGINE_LABEL_FONT`` first, then the usual system paths
(fonts-wqy-microhei on Debian). Without one, Pillow's built-in font is used (CJK characters then
show as boxes, but nothing fails). Text uses Pillow's basic layout, so a sheet is byte-for-byte
deterministic for the same inputs and font.

This module imports neither torch nor Django.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

from engine.errors import EngineError
from engine.fonts import FONT_ENV, font_files

__all__ = [
    "FAILED",
    "FONT_ENV",
    "MAX_SHEET_PIXELS",
    "PENDING",
    "ContactSheetError",
    "SheetLayout",
    "contact_sheet",
    "contact_sheet_layout",
    "contact_sheet_png",
    "sheet_font_path",
]

PENDING = "pending"
FAILED = "failed"
MAX_SHEET_PIXELS = 64_000_000
"""Largest sheet (width x height) drawn; well under Pillow's decompression-bomb limit so the
PNG can be opened again."""

_CJK_PROBE = "汉字生成"
_MIN_CELL = 16
_MAX_CELL = 2048

_BACKGROUND = (255, 255, 255)
_CELL_BACKGROUND = (236, 236, 236)  # letterbox around images that do not fill their cell
_LABEL_TEXT = (30, 30, 30)
_TITLE_BACKGROUND = (45, 45, 45)
_TITLE_TEXT = (255, 255, 255)
_PLACEHOLDER = (190, 190, 190)
_PLACEHOLDER_TEXT = (70, 70, 70)
_FAILED_TEXT = (170, 20, 20)

CellContent = Image.Image | str | None
Box = tuple[int, int, int, int]


class ContactSheetError(EngineError, ValueError):
    """The grid, labels or sizes are inconsistent; ``field`` names the offending argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class SheetLayout:
    """Where everything goes on a sheet. Boxes are ``(left, top, right, bottom)``, right and
    bottom exclusive; ``cell_boxes[row][column]``."""

    size: tuple[int, int]
    title_box: Box | None
    column_label_boxes: tuple[Box, ...]
    row_label_boxes: tuple[Box, ...]
    cell_boxes: tuple[tuple[Box, ...], ...]
    font_size: int
    title_font_size: int
    gutter: int
    padding: int


# --- fonts -----------------------------------------------------------------------------------


def _covers(font: ImageFont.FreeTypeFont, text: str) -> bool:
    """True when every character has a real glyph (its bitmap differs from the .notdef box)."""
    notdef = bytes(font.getmask("\U0010ffff"))
    return all(ch.isspace() or bytes(font.getmask(ch)) != notdef for ch in text)


@cache
def sheet_font_path() -> str | None:
    """The CJK-capable font file used for labels, or ``None`` (Pillow's built-in font)."""
    for path in font_files():
        try:
            font = ImageFont.truetype(path, 24, layout_engine=ImageFont.Layout.BASIC)
        except OSError:
            continue
        if _covers(font, _CJK_PROBE):
            return path
    return None


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = sheet_font_path()
    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


def _ellipsis() -> str:
    return "…" if sheet_font_path() is not None else "..."


def _text_width(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> int:
    if not text:
        return 0
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    _, top, _, bottom = font.getbbox("Ag汉")
    return int(bottom - top)


def _truncate(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str, width: int) -> str:
    """``text`` cut to fit ``width`` pixels, ending in an ellipsis when cut."""
    if _text_width(font, text) <= width:
        return text
    mark = _ellipsis()
    while text and _text_width(font, text + mark) > width:
        text = text[:-1]
    return (text.rstrip() + mark) if text else ""


def _wrap(
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str, width: int, max_lines: int
) -> list[str]:
    """Greedy wrap to ``width`` pixels, breaking at spaces where possible and between any two
    characters otherwise (CJK has no spaces); the last allowed line is truncated."""
    words = text.split()
    if not words:
        return []
    lines: list[str] = []
    rest = " ".join(words)
    while rest:
        if len(lines) == max_lines - 1:
            lines.append(_truncate(font, rest, width))
            return lines
        # Longest prefix of ``rest`` that fits, preferring to end at a space.
        cut = 0
        for end in range(1, len(rest) + 1):
            if _text_width(font, rest[:end]) > width:
                break
            cut = end
        if cut == len(rest):
            lines.append(rest)
            break
        space = rest.rfind(" ", 0, cut + 1)
        if space > 0:
            cut = space
        cut = max(cut, 1)  # always make progress, even if one character is wider than ``width``
        lines.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return lines


# --- layout ----------------------------------------------------------------------------------


def _cell_dims(cell_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(cell_size, int) and not isinstance(cell_size, bool):
        dims = (cell_size, cell_size)
    elif (
        isinstance(cell_size, tuple)
        and len(cell_size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in cell_size)
    ):
        dims = (cell_size[0], cell_size[1])
    else:
        raise ContactSheetError("cell_size", "must be an int or a (width, height) pair of ints")
    if not all(_MIN_CELL <= v <= _MAX_CELL for v in dims):
        raise ContactSheetError("cell_size", f"must be between {_MIN_CELL} and {_MAX_CELL} px")
    return dims


def _clean_labels(name: str, labels: Sequence[str]) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise ContactSheetError(name, "must be a list of strings")
    result = []
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise ContactSheetError(f"{name}.{i}", f"must be a string, got {type(label).__name__}")
        result.append(" ".join(label.split()))
    return result


def contact_sheet_layout(
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    *,
    title: str = "",
    cell_size: int | tuple[int, int] = 256,
) -> SheetLayout:
    """Lay out a sheet with one row per row label and one column per column label.

    The header column is as wide as the widest row label needs, between half a cell and one cell
    (longer labels wrap, then are cut with an ellipsis).
    """
    cell_w, cell_h = _cell_dims(cell_size)
    rows_text = _clean_labels("row_labels", row_labels)
    cols_text = _clean_labels("column_labels", column_labels)
    if not rows_text:
        raise ContactSheetError("row_labels", "a sheet needs at least one row")
    if not cols_text:
        raise ContactSheetError("column_labels", "a sheet needs at least one column")
    if not isinstance(title, str):
        raise ContactSheetError("title", "must be a string")
    shorter = min(cell_w, cell_h)
    font_size = max(11, round(shorter / 14))
    title_font_size = round(font_size * 1.4)
    gutter = max(2, shorter // 64)
    padding = max(3, font_size // 2)
    font = _font(font_size)
    line = _line_height(font)

    title_h = _line_height(_font(title_font_size)) + 2 * padding if title.strip() else 0
    header_h = line + 2 * padding
    widest = max(_text_width(font, text) for text in rows_text)
    row_w = min(max(widest + 2 * padding, cell_w // 2), cell_w)

    width = row_w + gutter + len(cols_text) * (cell_w + gutter)
    grid_top = title_h + header_h + gutter
    height = grid_top + len(rows_text) * (cell_h + gutter)
    if width * height > MAX_SHEET_PIXELS:
        raise ContactSheetError(
            "cells", f"a {width}x{height} sheet is too large; use a smaller cell_size"
        )
    xs = [row_w + gutter + c * (cell_w + gutter) for c in range(len(cols_text))]
    ys = [grid_top + r * (cell_h + gutter) for r in range(len(rows_text))]
    return SheetLayout(
        size=(width, height),
        title_box=(0, 0, width, title_h) if title_h else None,
        column_label_boxes=tuple((x, title_h, x + cell_w, title_h + header_h) for x in xs),
        row_label_boxes=tuple((0, y, row_w, y + cell_h) for y in ys),
        cell_boxes=tuple(tuple((x, y, x + cell_w, y + cell_h) for x in xs) for y in ys),
        font_size=font_size,
        title_font_size=title_font_size,
        gutter=gutter,
        padding=padding,
    )


# --- drawing ---------------------------------------------------------------------------------


def _draw_lines_centred(
    draw: ImageDraw.ImageDraw,
    box: Box,
    lines: list[str],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    fill: tuple[int, int, int],
) -> None:
    if not lines:
        return
    line = _line_height(font)
    spacing = max(1, line // 4)
    block = len(lines) * line + (len(lines) - 1) * spacing
    cx = (box[0] + box[2]) // 2
    top = (box[1] + box[3] - block) // 2
    for i, text in enumerate(lines):
        y = top + i * (line + spacing) + line // 2
        draw.text((cx, y), text, fill=fill, font=font, anchor="mm")


def _fit_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` as RGB scaled to fit ``size`` (aspect kept), transparency over the cell background."""
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert(
            "RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB"
        )
    if image.mode == "RGBA":
        flat = Image.new("RGBA", image.size, (*_CELL_BACKGROUND, 255))
        image = Image.alpha_composite(flat, image).convert("RGB")
    if image.size != size:
        image = ImageOps.contain(image, size, Image.Resampling.LANCZOS)
    return image


def _check_cells(cells: Sequence[Sequence[CellContent]], rows: int, columns: int) -> None:
    if isinstance(cells, str) or not isinstance(cells, Sequence):
        raise ContactSheetError("cells", "must be a list of rows")
    if len(cells) != rows:
        raise ContactSheetError("cells", f"has {len(cells)} rows but {rows} row labels")
    for r, row in enumerate(cells):
        if isinstance(row, str) or not isinstance(row, Sequence):
            raise ContactSheetError(f"cells.{r}", "must be a list of cells")
        if len(row) != columns:
            raise ContactSheetError(
                f"cells.{r}", f"has {len(row)} cells but {columns} column labels"
            )
        for c, cell in enumerate(row):
            if cell is not None and not isinstance(cell, Image.Image | str):
                raise ContactSheetError(
                    f"cells.{r}.{c}",
                    f"must be an image, None or a status string, got {type(cell).__name__}",
                )


def contact_sheet(
    cells: Sequence[Sequence[CellContent]],
    *,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    title: str = "",
    cell_size: int | tuple[int, int] = 256,
) -> Image.Image:
    """Draw the preview grid as one RGB image.

    ``cells[r][c]`` is the render of avatar ``row_labels[r]`` with seed ``column_labels[c]``:
    an image, ``None`` (placeholder reading ``"pending"``) or a status string shown on the
    placeholder instead (``FAILED`` is drawn in red). Raises :class:`ContactSheetError` when the
    grid's shape does not match the labels.
    """
    layout = contact_sheet_layout(row_labels, column_labels, title=title, cell_size=cell_size)
    rows_text = _clean_labels("row_labels", row_labels)
    cols_text = _clean_labels("column_labels", column_labels)
    _check_cells(cells, len(rows_text), len(cols_text))

    sheet = Image.new("RGB", layout.size, _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(layout.font_size)
    pad = layout.padding
    line = _line_height(font)

    if layout.title_box is not None:
        title_font = _font(layout.title_font_size)
        left, top, right, bottom = layout.title_box
        draw.rectangle((left, top, right - 1, bottom - 1), fill=_TITLE_BACKGROUND)
        text = _truncate(title_font, " ".join(title.split()), right - left - 2 * pad)
        draw.text(
            (left + pad, (top + bottom) // 2), text, fill=_TITLE_TEXT, font=title_font, anchor="lm"
        )

    for box, text in zip(layout.column_label_boxes, cols_text, strict=True):
        fitted = _truncate(font, text, box[2] - box[0] - 2 * pad)
        _draw_lines_centred(draw, box, [fitted], font, _LABEL_TEXT)

    for box, text in zip(layout.row_label_boxes, rows_text, strict=True):
        max_lines = max(1, (box[3] - box[1] - 2 * pad) // (line + max(1, line // 4)))
        lines = _wrap(font, text, box[2] - box[0] - 2 * pad, max_lines)
        _draw_lines_centred(draw, box, lines, font, _LABEL_TEXT)

    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            box = layout.cell_boxes[r][c]
            size = (box[2] - box[0], box[3] - box[1])
            if isinstance(cell, Image.Image):
                image = _fit_image(cell, size)
                if image.size != size:
                    draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=_CELL_BACKGROUND)
                sheet.paste(
                    image,
                    (
                        box[0] + (size[0] - image.width) // 2,
                        box[1] + (size[1] - image.height) // 2,
                    ),
                )
                continue
            status = PENDING if cell is None else " ".join(cell.split()) or PENDING
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=_PLACEHOLDER)
            colour = _FAILED_TEXT if status.lower() == FAILED else _PLACEHOLDER_TEXT
            _draw_lines_centred(
                draw, box, [_truncate(font, status, size[0] - 2 * pad)], font, colour
            )
    return sheet


def contact_sheet_png(
    cells: Sequence[Sequence[CellContent]],
    *,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    title: str = "",
    cell_size: int | tuple[int, int] = 256,
) -> bytes:
    """:func:`contact_sheet` encoded as PNG (no metadata; deterministic bytes)."""
    image = contact_sheet(
        cells, row_labels=row_labels, column_labels=column_labels, title=title, cell_size=cell_size
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
