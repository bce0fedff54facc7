"""Where to find a CJK-capable font (labels and contact sheets draw Chinese text).

`ENGINE_LABEL_FONT` names a font file to try first; then the usual Debian/Fedora locations.
The Makefile installs Debian's fonts-wqy-microhei.
"""

from __future__ import annotations

import os

FONT_ENV = "ENGINE_LABEL_FONT"

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian/Ubuntu: fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # fonts-noto-cjk
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",  # Fedora
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # fonts-droid-fallback
    "/System/Library/Fonts/PingFang.ttc",  # macOS
    "/System/Library/Fonts/STHeiti Medium.ttc",  # macOS
    "C:/Windows/Fonts/msyh.ttc",  # Windows
)


def font_files() -> list[str]:
    """Existing candidate font files, the configured one first."""
    configured = [os.environ[FONT_ENV]] if os.environ.get(FONT_ENV) else []
    return [path for path in [*configured, *FONT_CANDIDATES] if os.path.isfile(path)]
