"""Boxes drawn on pictures, in the colours every onnxcam page uses: red predicted (the papers' fixed
threshold), yellow predicted at the best threshold, green truth."""

from __future__ import annotations

import numpy as np

PREDICTED_COLOUR, BEST_COLOUR, TRUTH_COLOUR = (255, 40, 40), (255, 210, 0), (40, 255, 40)


def draw_box(image: np.ndarray, box: np.ndarray, colour: tuple[int, int, int], width: int = 3) -> np.ndarray:
    """A copy of RGB uint8 ``image`` (H, W, 3) with the outline of ``box`` (x0, y0, x1, y1)."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image)
    ImageDraw.Draw(picture).rectangle([int(v) for v in box], outline=colour, width=width)
    return np.asarray(picture)
