"""A scale-shifted test set made from the raccoon photos themselves.

Each photo is shrunk and laid onto a canvas of its own size whose background is real background:
the largest box-free strip of another photo (left, right, above or below all of that photo's boxes),
cropped to the canvas' aspect ratio and resized. The shrunk photo is blended in with a feathered
alpha mask (opaque over its boxes plus a margin, fading out toward its own border), so there is no
hard rectangular seam. Its boxes are moved with it. Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rpol_edge.data import Sample
from rpol_edge.data.images import load_rgb


@dataclass(frozen=True)
class Canvas:
    image: np.ndarray
    """(H, W, 3) uint8 RGB, the size of the source photo."""
    boxes: np.ndarray
    """(M, 4) inclusive pixel boxes in the canvas."""
    source: str
    background: str


def largest_box_coverage(boxes: np.ndarray, width: int, height: int) -> float:
    """Area share of the image covered by its largest box (inclusive pixels)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    areas = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return float(areas.max() / (width * height))


def free_strip(boxes: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """The largest of the four strips outside every box grown by 4 % of the image (tails and paws
    stick out of tight boxes): (x0, y0, x1, y1), exclusive x1/y1."""
    b = np.asarray(boxes, np.int64).reshape(-1, 4)
    m = int(0.04 * max(width, height))
    x0, y0 = max(0, int(b[:, 0].min()) - m), max(0, int(b[:, 1].min()) - m)
    x1, y1 = min(width, int(b[:, 2].max()) + m + 1), min(height, int(b[:, 3].max()) + m + 1)
    strips = [(0, 0, x0, height), (x1, 0, width, height), (0, 0, width, y0), (0, y1, width, height)]
    return max(strips, key=lambda s: max(0, s[2] - s[0]) * max(0, s[3] - s[1]))


def background(image: np.ndarray, strip: tuple[int, int, int, int], w: int, h: int) -> np.ndarray:
    """The strip cropped (centered) to the canvas aspect ratio, resized to w x h."""
    x0, y0, x1, y1 = strip
    sw, sh = x1 - x0, y1 - y0
    aspect = w / h
    if sw / sh > aspect:
        cw, ch = max(1, int(round(sh * aspect))), sh
    else:
        cw, ch = sw, max(1, int(round(sw / aspect)))
    cx, cy = x0 + (sw - cw) // 2, y0 + (sh - ch) // 2
    crop = image[cy : cy + ch, cx : cx + cw]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_CUBIC)


def _feather(h: int, w: int, boxes: np.ndarray) -> np.ndarray:
    """Alpha (h, w) in [0, 1]: 1 over the boxes grown by a margin, fading smoothly to 0 at the border."""
    alpha = np.zeros((h, w), np.float32)
    margin = 0.04 * max(h, w)
    for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
        a0, b0 = int(max(0, x0 - margin)), int(max(0, y0 - margin))
        a1, b1 = int(min(w, x1 + margin + 1)), int(min(h, y1 + margin + 1))
        alpha[b0:b1, a0:a1] = 1.0
    k = int(max(3, 0.10 * max(h, w))) | 1
    alpha = np.asarray(cv2.GaussianBlur(alpha, (k, k), 0), np.float32)
    # Whatever the blur left, force 0 at the photo's own border so no rectangle edge shows.
    yy = np.minimum(np.arange(h), np.arange(h)[::-1])[:, None] / max(1.0, 0.06 * h)
    xx = np.minimum(np.arange(w), np.arange(w)[::-1])[None, :] / max(1.0, 0.06 * w)
    edge = np.clip(np.minimum(yy, xx), 0.0, 1.0).astype(np.float32)
    inner = np.zeros((h, w), np.float32)
    for x0, y0, x1, y1 in np.asarray(boxes, np.int64).reshape(-1, 4):
        inner[y0 : y1 + 1, x0 : x1 + 1] = 1.0
    return np.maximum(alpha * edge, inner)


def build_canvases(
    samples: list[Sample], seed: int = 0, coverage: tuple[float, float] = (0.22, 0.38)
) -> list[Canvas]:
    """One canvas per photo; target largest-box coverage drawn uniformly from ``coverage``."""
    rng = np.random.default_rng(seed)
    images = [load_rgb(s.path) for s in samples]
    strips = [free_strip(s.boxes, im.shape[1], im.shape[0]) for s, im in zip(samples, images, strict=True)]
    areas = np.array([(x1 - x0) * (y1 - y0) / (im.shape[0] * im.shape[1]) for (x0, y0, x1, y1), im in
                      zip(strips, images, strict=True)])  # fmt: skip
    # Background donors: the photos with the most box-free area (a thin strip blown up looks fake).
    donors = [int(i) for i in np.argsort(-areas) if areas[i] >= 0.15] or [
        int(i) for i in np.argsort(-areas)[:20]
    ]
    out: list[Canvas] = []
    for i, (s, im) in enumerate(zip(samples, images, strict=True)):
        h, w = im.shape[:2]
        cov = largest_box_coverage(s.boxes, w, h)
        target = rng.uniform(*coverage)
        scale = float(np.clip(np.sqrt(target / cov), 0.25, 0.85))
        j = int(rng.choice([d for d in donors if d != i]))
        canvas = background(images[j], strips[j], w, h).astype(np.float32)
        sw, sh = max(8, int(round(w * scale))), max(8, int(round(h * scale)))
        small = cv2.resize(im, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
        sx, sy = sw / w, sh / h
        boxes = np.asarray(s.boxes, np.float64).reshape(-1, 4) * [sx, sy, sx, sy]
        ox, oy = int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))
        alpha = _feather(sh, sw, np.round(boxes).astype(np.int64))[:, :, None]
        region = canvas[oy : oy + sh, ox : ox + sw]
        canvas[oy : oy + sh, ox : ox + sw] = alpha * small + (1 - alpha) * region
        moved = np.round(boxes + [ox, oy, ox, oy]).astype(np.int64)
        moved[:, 0::2] = np.clip(moved[:, 0::2], 0, w - 1)
        moved[:, 1::2] = np.clip(moved[:, 1::2], 0, h - 1)
        out.append(Canvas(np.clip(canvas, 0, 255).astype(np.uint8), moved, s.image_id, samples[j].image_id))
    return out
