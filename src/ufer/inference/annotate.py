"""Draw predictions onto a copy of a picture: each face's box, its five landmarks and
"<top class> <probability>"; "no face" on a picture without one."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ufer.inference.recognizer import BOX_COLUMNS, LANDMARK_COLUMNS, STATUS_OK

BOX_COLOUR = (0, 230, 64)
LANDMARK_COLOUR = (255, 200, 0)
TEXT_COLOUR = (255, 255, 255)
NO_FACE_COLOUR = (230, 40, 40)


def annotate(image: np.ndarray, rows: list[dict[str, Any]]) -> Image.Image:
    """A new RGB image: ``image`` (uint8 (H, W, 3), not modified) with its rows drawn.

    Args:
        image: the picture the rows were predicted on.
        rows: that picture's result rows (``Recognizer`` columns). A row without a face
            (status other than ``ok``) writes its status in the top-left corner.
    """
    canvas = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    height, width = image.shape[:2]
    line = max(1, round(min(height, width) / 200))
    font = ImageFont.load_default(size=max(10, min(height, width) // 30))
    for row in rows:
        if row.get("status") != STATUS_OK:
            _label(draw, (0, 0), str(row.get("status")), font, NO_FACE_COLOUR)
            continue
        x, y, w, h, _ = (row[c] for c in BOX_COLUMNS)
        draw.rectangle((x, y, x + w, y + h), outline=BOX_COLOUR, width=line)
        points = [row[c] for c in LANDMARK_COLUMNS]
        for px, py in zip(points[0::2], points[1::2]):
            if not (math.isnan(px) or math.isnan(py)):
                r = 2 * line
                draw.ellipse((px - r, py - r, px + r, py + r), fill=LANDMARK_COLOUR)
        text = f"{row['label']} {row[row['label']]:.2f}"
        _label(draw, (x, max(0.0, y - font.size - 2 * line)), text, font, BOX_COLOUR)
    return canvas


def _label(draw: ImageDraw.ImageDraw, at: tuple[float, float], text: str,
           font: ImageFont.ImageFont | ImageFont.FreeTypeFont, background: tuple[int, ...]
           ) -> None:
    """``text`` in white on a filled box whose top-left corner is ``at``."""
    left, top, right, bottom = draw.textbbox(at, text, font=font)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=background)
    draw.text(at, text, fill=TEXT_COLOUR, font=font)
