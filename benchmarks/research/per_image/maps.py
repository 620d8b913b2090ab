"""Shared pieces of the per-image box rules: the graph's upsampling, the clamped min-max grid,
connected components and their boxes, box sums for the box criteria, boxes at relative levels."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]
EMPTY = (np.zeros((0, 4), np.int64), np.zeros(0))

LEVELS = tuple(float(v) for v in np.round(np.arange(0.05, 0.96, 0.05), 2))
"""Relative levels (x the map's maximum) at which candidate regions are drawn: 19 levels; the
criterion, not a constant, picks one per image."""

WORK = 112
"""Resolution at which a level is chosen (the score map's upsampling to 112 x 112, a quarter of
448: the criterion changes by far less than one level step); the chosen level's box is then drawn
at full resolution."""


@lru_cache(maxsize=8)
def upsample32(n: int, size: int) -> npt.NDArray[np.float32]:
    """align_corners=True bilinear weights (size, n), as `upsample_matrix` but computed in float32:
    the recorded boxes and scores were measured with these weights; rpol_edge's float64 weights
    cast to float32 differ in the last bit, which moves scores by about 1e-7 and can swap ties."""
    m = np.zeros((size, n), np.float32)
    x = np.arange(size) * (n - 1) / max(size - 1, 1)
    i0 = np.minimum(np.floor(x).astype(np.int64), n - 2)
    frac = (x - i0).astype(np.float32)
    m[np.arange(size), i0] = 1.0 - frac
    m[np.arange(size), i0 + 1] += frac
    m.setflags(write=False)
    return m


def upsample(g: npt.ArrayLike, size: int) -> npt.NDArray[np.float32]:
    a = np.asarray(g, np.float32)
    return np.asarray(upsample32(a.shape[0], size) @ a @ upsample32(a.shape[1], size).T, np.float32)


def minmax_clamped(a: npt.ArrayLike) -> F:
    """The graph's grid score: clamp at 0, min-max to [0, 1] (constant map -> zeros)."""
    c = np.maximum(np.asarray(a, np.float64), 0.0)
    lo, hi = c.min(), c.max()
    return (c - lo) / max(hi - lo, 1e-12)


def components(mask: npt.NDArray[np.bool_]) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components: labels (K, K) and stats rows (x, y, w, h, area) of labels 1..n."""
    _n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return lab, stats


def stat_box(st: np.ndarray, size: int) -> npt.NDArray[np.int64]:
    """[x, y, x + w, y + h] clipped to size - 1: the boxes.py (cv2.boundingRect) convention."""
    x, y, w, h = (int(v) for v in st[:4])
    return np.array([x, y, min(x + w, size - 1), min(y + h, size - 1)], np.int64)


def scale_box(b: np.ndarray, work: int, size: int) -> np.ndarray:
    """A box found on the work-resolution upsampling, in ``size`` pixels (same align_corners
    field: pixel x at work maps to x * (size - 1) / (work - 1)); grown outward to whole pixels."""
    if work == size:
        return b
    r = (size - 1) / (work - 1)
    return np.array(
        [
            int(np.floor(b[0] * r)),
            int(np.floor(b[1] * r)),
            min(size - 1, int(np.ceil(b[2] * r))),
            min(size - 1, int(np.ceil(b[3] * r))),
        ],
        np.int64,
    )


class Integral:
    """O(1) sums of a map and its square over any box (for the box criteria)."""

    def __init__(self, s: npt.ArrayLike) -> None:
        a = np.asarray(s, np.float64)
        self.n = a.size
        self.i1 = cv2.integral(a)
        self.i2 = cv2.integral(a * a)
        self.tot, self.tot2 = float(self.i1[-1, -1]), float(self.i2[-1, -1])

    def sums(self, b: np.ndarray) -> tuple[float, float, float]:
        x0, y0, x1, y1 = (int(v) for v in b)
        i1, i2 = self.i1, self.i2
        s1 = i1[y1 + 1, x1 + 1] - i1[y0, x1 + 1] - i1[y1 + 1, x0] + i1[y0, x0]
        s2 = i2[y1 + 1, x1 + 1] - i2[y0, x1 + 1] - i2[y1 + 1, x0] + i2[y0, x0]
        return float((x1 - x0 + 1) * (y1 - y0 + 1)), float(s1), float(s2)


def box_bcv(it: Integral, b: np.ndarray) -> float:
    """Between-class variance of the map with the box as one class (Otsu's criterion on a box):
    w_in * w_out * (mu_in - mu_out)^2. 0 for a box that covers everything."""
    n_in, s_in, _ = it.sums(b)
    n_out = it.n - n_in
    if n_in <= 0 or n_out <= 0:
        return 0.0
    mu_in, mu_out = s_in / n_in, (it.tot - s_in) / n_out
    return (n_in / it.n) * (n_out / it.n) * (mu_in - mu_out) ** 2


def box_fisher(it: Integral, b: np.ndarray) -> float:
    """Fisher's ratio of the box split: BCV / within-class variance (scale-free)."""
    n_in, s_in, q_in = it.sums(b)
    n_out = it.n - n_in
    if n_in <= 1 or n_out <= 1:
        return 0.0
    mu_in, mu_out = s_in / n_in, (it.tot - s_in) / n_out
    var_in = max(q_in / n_in - mu_in**2, 0.0)
    var_out = max((it.tot2 - q_in) / n_out - mu_out**2, 0.0)
    within = (n_in * var_in + n_out * var_out) / it.n
    return (n_in / it.n) * (n_out / it.n) * (mu_in - mu_out) ** 2 / max(within, 1e-12)


def level_boxes_masks(s: np.ndarray, masks: list[np.ndarray], which: str) -> list[np.ndarray]:
    """One box per mask: its largest component (``largest``) or the one holding the map's maximum
    (``peak``)."""
    size = s.shape[0]
    py, px = np.unravel_index(int(np.argmax(s)), s.shape)
    out = []
    for m in masks:
        if not m.any():
            continue
        lab, st = components(m)
        if len(st) <= 1:
            continue
        k = int(lab[py, px]) if which == "peak" and lab[py, px] > 0 else 1 + int(np.argmax(st[1:, 4]))
        out.append(stat_box(st[k], size))
    return out


def level_boxes(s: npt.NDArray[np.float32], levels: tuple[float, ...], which: str) -> list[np.ndarray]:
    """One candidate box per level of ``s > level * max s`` (see `level_boxes_masks`)."""
    top = float(s.max())
    return level_boxes_masks(s, [s > lv * top for lv in levels], which)
