"""Scene-aware mode for a fixed camera: a per-cell scene model fitted without labels (the mean unit
feature of the train frames at each cell), per frame the evidence 1 - cos(f, b), and boxes from it
(each instance at its local half maximum, or every component at one relative level)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from benchmarks.research.per_image.instance_sets import level_all, peaks_labels
from benchmarks.research.per_image.maps import (
    EMPTY,
    WORK,
    F,
    components,
    minmax_clamped,
    scale_box,
    stat_box,
    upsample,
)

SCENE_LEVEL_640 = 0.85
"""Relative evidence level of the 640 scene recipe: picked on the lobby's train frames (plateau
0.82-0.90 there); a constant of one camera, not a principle."""


def scene_sums(feats_batch: np.ndarray) -> tuple[np.ndarray, int]:
    """Fit-time sums of the per-cell scene model: sum over frames of the unit feature at each
    cell (C, h, w) float64 and the frame count. Shards merge by adding (as w*'s sums)."""
    f = feats_batch.astype(np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return f.sum(0), len(f)


def scene_background(sums: np.ndarray, count: int) -> np.ndarray:
    """b: the unit mean unit feature per cell (C, h, w) float32 (a graph constant)."""
    m = sums / max(count, 1)
    return (m / np.maximum(np.linalg.norm(m, axis=0, keepdims=True), 1e-12)).astype(np.float32)


def scene_spread(sums: np.ndarray, count: int) -> np.ndarray:
    """Per cell, the train frames' mean evidence 1 - mean_t cos(f_t, b) = 1 - ||m|| (m = the mean
    unit feature; b = m / ||m||, so mean_t cos(f_t, b) = m . b = ||m||): free from the same sums.
    A cell that changes a lot across the train frames (a sunlit window, a door) has a large one."""
    m = sums / max(count, 1)
    return np.maximum(1.0 - np.linalg.norm(m, axis=0), 1e-6)


def scene_evidence(feats: np.ndarray, b: np.ndarray) -> F:
    """Per frame: 1 - cos(f, b) at each cell (h, w), in [0, 2]; 0 where the frame is the scene."""
    f = feats.astype(np.float32)
    cos = (f * b).sum(0) / np.maximum(np.linalg.norm(f, axis=0), 1e-12)
    return 1.0 - cos.astype(np.float64)


def local_halfmax_level(g: F, cell: tuple[int, int]) -> float:
    """Half maximum of a peak over its own surround: (peak + median of its 8 neighbours) / 2
    (absolute, in g's units). For a spot smaller than a cell the bilinear map's width at that
    level is about one cell whatever the map's global range."""
    py, px = cell
    h, w = g.shape
    nb = [
        g[y, x]
        for y in range(py - 1, py + 2)
        for x in range(px - 1, px + 2)
        if (y, x) != (py, px) and 0 <= y < h and 0 <= x < w
    ]
    return 0.5 * (float(g[py, px]) + float(np.median(nb)))


def local_halfmax_boxes(
    g: F,
    size: int,
    evidence_scale: float = 1.0,
    prominence: float = 0.3,
    keep: float = 0.5,
    rel: float = 0.1,
    work: int = WORK,
) -> tuple[np.ndarray, np.ndarray]:
    """Scene-aware boxes: one per instance of the persistence watershed on the evidence grid,
    each drawn around its own peak at its local half maximum; ranked by the peak's evidence
    (``evidence_scale`` x g: 1 - cos, comparable across frames). ``keep``: drop instances whose
    peak is below keep x the frame's maximum."""
    g = np.asarray(g, np.float64)
    top = float(g.max())
    if top <= 0:
        return EMPTY
    labels = peaks_labels(g, rel, prominence)
    s = upsample(g, work)
    r = (work - 1) / np.array([g.shape[0] - 1, g.shape[1] - 1])
    out = []
    for k in range(int(labels.max()) + 1):
        c = np.unravel_index(int(np.argmax(np.where(labels == k, g, -np.inf))), g.shape)
        pk = float(g[c])
        if pk < keep * top:
            continue
        lab, st = components(s > local_halfmax_level(g, (int(c[0]), int(c[1]))))
        j = int(lab[int(round(c[0] * r[0])), int(round(c[1] * r[1]))])
        if j <= 0:
            continue
        out.append((pk, scale_box(stat_box(st[j], work), work, size)))
    if not out:
        return EMPTY
    out.sort(key=lambda x: -x[0])
    return np.stack([b for _, b in out]), np.array([p for p, _ in out]) * evidence_scale


def scene_boxes(
    evidence: npt.ArrayLike, size: int, keep: float = 0.5, prominence: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Scene-aware mode (a fixed camera): boxes from the per-frame scene evidence grid (h, w)
    ``scene_evidence(f, b)``; each instance boxed at its local half maximum, ranked by its peak
    evidence (1 - cos, comparable across frames)."""
    e = np.asarray(evidence, np.float64)
    g = minmax_clamped(e)
    return local_halfmax_boxes(g, size, float(e.max() - max(e.min(), 0.0)), prominence, keep)


def scene_level_boxes(
    evidence: npt.ArrayLike, size: int, rel: float = SCENE_LEVEL_640
) -> tuple[np.ndarray, np.ndarray]:
    """Scene-aware boxes at a fixed relative level: every component of the evidence map above
    rel x its maximum, the one holding the maximum first, ranked by peak evidence (1 - cos units)."""
    e = np.asarray(evidence, np.float64)
    boxes, peaks = level_all(minmax_clamped(e), size, rel)
    return boxes, peaks * float(e.max() - max(e.min(), 0.0))
