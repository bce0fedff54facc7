"""Demo content for the embedded first run (`make run`): a test-avatar panel and templates.

The panel's faces come from images bundled with scikit-image (an astronaut) and matplotlib
(Grace Hopper), both dev dependencies installed by the Makefile; nothing is downloaded.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image, ImageEnhance

VARIATIONS: list[Callable[[Image.Image], Image.Image]] = [
    lambda im: im,
    lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    lambda im: im.crop((int(im.width * 0.1), 0, im.width, int(im.height * 0.9))),
    lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    lambda im: ImageEnhance.Contrast(im).enhance(0.85),
    lambda im: im.crop((0, int(im.height * 0.04), int(im.width * 0.94), im.height)),
    lambda im: ImageEnhance.Color(im).enhance(0.6),
    lambda im: ImageEnhance.Brightness(im).enhance(0.9),
]


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def photo_set(image: Image.Image, count: int) -> list[bytes]:
    """`count` distinct photos of one person: crops, mirror and tone changes of `image`."""
    photos = []
    for i in range(count):
        varied = VARIATIONS[i % len(VARIATIONS)](image)
        if i >= len(VARIATIONS):
            varied = ImageEnhance.Sharpness(varied).enhance(1.0 + 0.1 * (i // len(VARIATIONS)))
        photos.append(jpeg(varied))
    return photos


def astronaut() -> Image.Image:
    from skimage.data import astronaut as load

    # 1024 px so her face (~180 px) passes the default 128 px minimum.
    return Image.fromarray(load()).resize((1024, 1024), Image.Resampling.LANCZOS)


def grace_hopper() -> Image.Image:
    from matplotlib import cbook

    return Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")


DEMO_PANEL = [
    ("Eileen (demo)", "female", "30-44", astronaut),
    ("Grace (demo)", "female", "60+", grace_hopper),
]

DEMO_POSE = {
    "width": 64,
    "height": 64,
    "keypoints": [
        [32, 10],
        [32, 20],
        [24, 20],
        [20, 30],
        [18, 40],
        [40, 20],
        [44, 30],
        [46, 40],
        [27, 40],
        [27, 50],
        [27, 60],
        [37, 40],
        [37, 50],
        [37, 60],
        [30, 8],
        [34, 8],
        None,
        None,
    ],
}

DEMO_TEMPLATES = [
    ("Business headshot", "business", "{subject}, business portrait, navy suit, soft studio light"),
    ("Ancient style", "ancient_style", "{subject}, hanfu, ancient Chinese garden, lanterns"),
]
