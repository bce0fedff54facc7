"""Contact sheets of preview grids (rows = test avatars, columns = seeds)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.contact_sheet import (
    FAILED,
    ContactSheetError,
    contact_sheet,
    contact_sheet_layout,
    contact_sheet_png,
    sheet_font_path,
)

WHITE = (255, 255, 255)
PLACEHOLDER_GREY = (190, 190, 190)
COLOURS = [
    [(220, 30, 30), (30, 200, 40), (40, 60, 230)],
    [(240, 200, 20), (200, 30, 200), (20, 200, 210)],
]
ROWS = ["Avatar A", "Avatar B"]
COLUMNS = ["seed 1", "seed 2", "seed 3"]


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (96, 96)) -> Image.Image:
    return Image.new("RGB", size, colour)


def solid_grid() -> list[list[Image.Image | str | None]]:
    return [[solid(colour) for colour in row] for row in COLOURS]


def pixel(image: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(image)[y, x])


def centre(box: tuple[int, int, int, int]) -> tuple[int, int]:
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


def region(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(image)[box[1] : box[3], box[0] : box[2]].astype(int)


def ink(image: Image.Image, box: tuple[int, int, int, int], background) -> int:
    """Pixels in ``box`` that differ from ``background``."""
    return int(np.any(region(image, box) != np.array(background), axis=-1).sum())


def test_output_size_matches_the_grid():
    sheet = contact_sheet(solid_grid(), row_labels=ROWS, column_labels=COLUMNS, cell_size=128)
    layout = contact_sheet_layout(ROWS, COLUMNS, cell_size=128)
    assert sheet.mode == "RGB"
    assert sheet.size == layout.size
    gutter, row_w = layout.gutter, layout.row_label_boxes[0][2]
    header_h = layout.column_label_boxes[0][3]
    assert layout.title_box is None  # no title, no title bar
    assert sheet.width == row_w + gutter + 3 * (128 + gutter)
    assert sheet.height == header_h + gutter + 2 * (128 + gutter)
    assert 64 <= row_w <= 128
    for row in layout.cell_boxes:
        for left, top, right, bottom in row:
            assert (right - left, bottom - top) == (128, 128)
            assert left >= 0 and top >= 0
            assert right <= sheet.width and bottom <= sheet.height


def test_title_bar_adds_height_and_is_drawn():
    plain = contact_sheet(solid_grid(), row_labels=ROWS, column_labels=COLUMNS, cell_size=128)
    titled = contact_sheet(
        solid_grid(), row_labels=ROWS, column_labels=COLUMNS, title="Warm key v3", cell_size=128
    )
    layout = contact_sheet_layout(ROWS, COLUMNS, title="Warm key v3", cell_size=128)
    assert layout.title_box is not None
    title_h = layout.title_box[3]
    assert titled.size == (plain.width, plain.height + title_h)
    bar = region(titled, layout.title_box)
    dark = np.all(bar < 80, axis=-1).mean()
    light = np.all(bar > 200, axis=-1).sum()
    assert dark > 0.8 and light > 10  # a dark bar with light text


def test_cells_come_from_the_right_inputs():
    sheet = contact_sheet(solid_grid(), row_labels=ROWS, column_labels=COLUMNS, cell_size=100)
    layout = contact_sheet_layout(ROWS, COLUMNS, cell_size=100)
    for r, row in enumerate(layout.cell_boxes):
        for c, box in enumerate(row):
            assert pixel(sheet, *centre(box)) == COLOURS[r][c]
            assert pixel(sheet, box[0] + 2, box[1] + 2) == COLOURS[r][c]  # scaled to fill


def test_images_keep_their_aspect_ratio():
    portrait = solid((10, 120, 240), (512, 768))
    cells = [[portrait, solid((250, 10, 10), (300, 100))]]
    sheet = contact_sheet(cells, row_labels=["a"], column_labels=["1", "2"], cell_size=150)
    tall, wide = contact_sheet_layout(["a"], ["1", "2"], cell_size=150).cell_boxes[0]
    assert pixel(sheet, *centre(tall)) == (10, 120, 240)
    assert pixel(sheet, tall[0] + 2, centre(tall)[1]) != (10, 120, 240)  # pillarboxed
    assert pixel(sheet, centre(tall)[0], tall[1] + 2) == (10, 120, 240)
    assert pixel(sheet, *centre(wide)) == (250, 10, 10)
    assert pixel(sheet, centre(wide)[0], wide[1] + 2) != (250, 10, 10)  # letterboxed


def test_rectangular_cells_and_other_modes():
    rgba = Image.new("RGBA", (40, 60), (0, 0, 255, 255))
    grey = Image.new("L", (40, 60), 77)
    sheet = contact_sheet(
        [[rgba, grey]], row_labels=["x"], column_labels=["1", "2"], cell_size=(80, 120)
    )
    layout = contact_sheet_layout(["x"], ["1", "2"], cell_size=(80, 120))
    first, second = layout.cell_boxes[0]
    assert (first[2] - first[0], first[3] - first[1]) == (80, 120)
    assert pixel(sheet, *centre(first)) == (0, 0, 255)
    assert pixel(sheet, *centre(second)) == (77, 77, 77)


def test_placeholders_for_missing_cells():
    cells = solid_grid()
    cells[0][1] = None
    cells[1][2] = FAILED
    sheet = contact_sheet(cells, row_labels=ROWS, column_labels=COLUMNS, cell_size=128)
    layout = contact_sheet_layout(ROWS, COLUMNS, cell_size=128)
    pending_box, failed_box = layout.cell_boxes[0][1], layout.cell_boxes[1][2]
    for box in (pending_box, failed_box):
        assert pixel(sheet, box[0] + 3, box[1] + 3) == PLACEHOLDER_GREY
        assert 20 < ink(sheet, box, PLACEHOLDER_GREY) < 0.3 * 128 * 128  # some text on grey
    pending = region(sheet, pending_box)
    failed = region(sheet, failed_box)
    reddish = (failed[..., 0] > failed[..., 1] + 60).sum()
    assert reddish > 10  # "failed" is written in red
    assert (pending[..., 0] > pending[..., 1] + 60).sum() == 0
    # The rest of the grid is untouched.
    assert pixel(sheet, *centre(layout.cell_boxes[0][0])) == COLOURS[0][0]


def test_placeholder_words_differ():
    def placeholder(cell) -> np.ndarray:
        sheet = contact_sheet([[cell]], row_labels=["a"], column_labels=["1"], cell_size=128)
        return region(sheet, contact_sheet_layout(["a"], ["1"], cell_size=128).cell_boxes[0][0])

    assert not np.array_equal(placeholder(None), placeholder(FAILED))
    assert np.array_equal(placeholder(None), placeholder("pending"))


def test_labels_are_drawn_in_their_boxes():
    sheet = contact_sheet(
        solid_grid(), row_labels=ROWS, column_labels=COLUMNS, title="T", cell_size=128
    )
    layout = contact_sheet_layout(ROWS, COLUMNS, title="T", cell_size=128)
    for box in (*layout.column_label_boxes, *layout.row_label_boxes):
        assert ink(sheet, box, WHITE) > 20
    # Nothing outside the label boxes, title bar and cells: the corner and the gutters are blank.
    corner = (0, layout.title_box[3], layout.row_label_boxes[0][2], layout.cell_boxes[0][0][1])
    assert ink(sheet, corner, WHITE) == 0


def test_chinese_labels_render():
    rows = ["李明（短发，戴眼镜）", "王芳"]
    columns = ["种子 1", "种子 2", "种子 3"]
    sheet = contact_sheet(
        solid_grid(), row_labels=rows, column_labels=columns, title="暖光肖像模板", cell_size=128
    )
    layout = contact_sheet_layout(rows, columns, title="暖光肖像模板", cell_size=128)
    assert sheet.size == layout.size
    for box in (*layout.column_label_boxes, *layout.row_label_boxes):
        assert ink(sheet, box, WHITE) > 20
    if sheet_font_path() is None:
        pytest.skip("no CJK font installed")
    # Real glyphs, not the same .notdef box for every character.
    one = contact_sheet([[None]], row_labels=["王"], column_labels=["1"], cell_size=128)
    two = contact_sheet([[None]], row_labels=["李"], column_labels=["1"], cell_size=128)
    box = contact_sheet_layout(["王"], ["1"], cell_size=128).row_label_boxes[0]
    assert not np.array_equal(region(one, box), region(two, box))


def test_long_labels_stay_inside_their_boxes():
    rows = ["A very long avatar description that cannot possibly fit on one line " * 3, "李" * 80]
    columns = ["seed 1234567890123456789012345678901234567890", "2", "3"]
    sheet = contact_sheet(solid_grid(), row_labels=rows, column_labels=columns, cell_size=96)
    layout = contact_sheet_layout(rows, columns, cell_size=96)
    assert layout.row_label_boxes[0][2] == 96  # header column capped at one cell
    for r, label_box in enumerate(layout.row_label_boxes):
        gutter = (label_box[2], label_box[1], layout.cell_boxes[r][0][0], label_box[3])
        assert ink(sheet, gutter, WHITE) == 0
    first_header = layout.column_label_boxes[0]
    between = (first_header[2], first_header[1], layout.column_label_boxes[1][0], first_header[3])
    assert ink(sheet, between, WHITE) == 0


def test_png_bytes_are_deterministic():
    cells = solid_grid()
    cells[1][1] = None
    kwargs = {"row_labels": ["李明", "B"], "column_labels": COLUMNS, "title": "模板"}
    first = contact_sheet_png(cells, **kwargs, cell_size=64)
    second = contact_sheet_png(cells, **kwargs, cell_size=64)
    assert first == second
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    decoded = Image.open(io.BytesIO(first))
    assert decoded.size == contact_sheet(cells, **kwargs, cell_size=64).size


@pytest.mark.parametrize(
    ("cells", "rows", "columns", "cell_size", "field"),
    [
        ([[None, None]], ["a", "b"], ["1", "2"], 64, "cells"),
        ([[None, None], [None]], ["a", "b"], ["1", "2"], 64, "cells.1"),
        ([[None, 42]], ["a"], ["1", "2"], 64, "cells.0.1"),
        ([[None]], [], ["1"], 64, "row_labels"),
        ([[None]], ["a"], [], 64, "column_labels"),
        ([[None]], ["a"], [1], 64, "column_labels.0"),
        ([[None]], "a", ["1"], 64, "row_labels"),
        ([[None]], ["a"], ["1"], 8, "cell_size"),
        ([[None]], ["a"], ["1"], 4096, "cell_size"),
        ([[None]], ["a"], ["1"], (64, 64, 3), "cell_size"),
        ([[None] * 60] * 60, ["a"] * 60, ["1"] * 60, 2048, "cells"),  # too large a sheet
    ],
)
def test_inconsistent_input_is_rejected(cells, rows, columns, cell_size, field):
    with pytest.raises(ContactSheetError) as info:
        contact_sheet(cells, row_labels=rows, column_labels=columns, cell_size=cell_size)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
