"""Drawing shared by `predict` and `run`: heatmap blended over the original frame, box, text."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from rpol_edge.core.geometry import CropTransform

BOX_COLOR = (0, 255, 0)  # BGR


def render(
    image_bgr: np.ndarray,
    score: np.ndarray,
    transform: CropTransform,
    box: Sequence[int] | None,
    lines: Sequence[str] = (),
    alpha: float = 0.45,
    more: Sequence[Sequence[int]] = (),
) -> np.ndarray:
    """A new BGR image: the K x K score map laid back onto the frame, the box, and text lines.

    ``more``: further boxes (``--boxes all``), drawn thinner than the top one so it stays apparent."""
    heat = transform.map_to_original(score.astype(np.float32))
    colored = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    out = cv2.addWeighted(image_bgr, 1.0 - alpha, colored, alpha, 0.0)
    thickness = max(2, round(min(out.shape[:2]) / 200))
    for other in more:
        x0, y0, x1, y1 = (int(v) for v in other)
        cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOR, max(1, thickness // 2))
    if box is not None:
        x0, y0, x1, y1 = (int(v) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOR, thickness)
    scale = max(0.5, min(out.shape[:2]) / 900)
    for i, text in enumerate(lines):
        outlined_text(out, text, (8, int(22 * scale * (i + 1)) + 4), 0.6 * scale)
    return out


def outlined_text(image: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    """White text with a black outline, readable on any heatmap. The outline is the same stroke
    drawn shifted around the text, not a thicker stroke: OpenCV 5 advances each glyph by the
    stroke's thickness, so a thick black copy drifts right of the white one (a ghost copy)."""
    radius = max(1, round(scale))
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            if dx or dy:
                cv2.putText(image, text, (org[0] + dx, org[1] + dy), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, text, org, FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


FONT = cv2.FONT_HERSHEY_SIMPLEX
