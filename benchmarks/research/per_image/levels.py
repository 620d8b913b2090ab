"""Top-box rules that pick one level of the score map per image: the sign mask (the product's
default), box criteria over relative levels, Otsu, the most stable region, the steepest-edge level,
half maximum over the median, a fixed relative level, and the maximum-sum box."""

from __future__ import annotations

import numpy as np

from benchmarks.research.per_image.maps import (
    LEVELS,
    WORK,
    F,
    Integral,
    box_bcv,
    box_fisher,
    components,
    level_boxes,
    level_boxes_masks,
    scale_box,
    stat_box,
    upsample,
)
from rpol_edge.results.boxes import largest_box


def sign_largest(a: F, size: int) -> np.ndarray | None:
    """Today's default: the largest region of the sign mask (largest contour's box)."""
    m = upsample(a, size) > 0
    if not m.any():
        return None
    return largest_box(m.astype(np.uint8))


def choose_level(g: F, crit: str, which: str, sign: bool, work: int) -> float | None:
    """The level (relative to the max; -1 for the sign mask) whose box the criterion prefers."""
    s = upsample(g, work)
    top = float(s.max())
    if top <= 0:
        return None
    levels = ([-1.0] if sign else []) + list(LEVELS)
    masks = [(s > 0) if lv < 0 else (s > lv * top) for lv in levels]
    it = Integral(s)
    f = box_bcv if crit == "bcv" else box_fisher
    best, arg = -1.0, None
    for lv, m in zip(levels, masks, strict=True):
        b = level_boxes_masks(s, [m], which)
        if not b:
            continue
        v = f(it, b[0])
        if v > best:
            best, arg = v, lv
    return arg


def box_criterion(
    g: F, size: int, crit: str = "bcv", which: str = "largest", sign: bool = True, work: int = WORK
) -> np.ndarray | None:
    """Per image: candidate boxes at every relative level of the clamped score map (and the sign
    mask's region), pick the one whose inside/outside split of the score map is best by ``crit``
    (Otsu's between-class variance, or Fisher's ratio). No constant fitted to any data set."""
    w = min(work, size)
    lv = choose_level(g, crit, which, sign, w)
    if lv is None:
        return None
    s = upsample(g, w)
    m = s > 0 if lv < 0 else s > lv * float(s.max())
    b = level_boxes_masks(s, [m], which)
    return scale_box(b[0], w, size) if b else None


def otsu_largest(g: F, size: int) -> np.ndarray | None:
    """Otsu's level on the grid's uint8 values, then the largest region above it."""
    u8 = np.floor(np.asarray(g) * 255.0).astype(np.uint8).reshape(-1)
    hist = np.bincount(u8, minlength=256).astype(np.float64)
    p = hist / hist.sum()
    w0 = np.cumsum(p)
    mu0 = np.cumsum(p * np.arange(256))
    mu = mu0[-1]
    between = (mu * w0 - mu0) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    level = int(np.argmax(between))
    s = np.floor(upsample(g, size) * 255.0)
    m = s > level
    if not m.any():
        return None
    _lab, st = components(m)
    return stat_box(st[1 + int(np.argmax(st[1:, 4]))], size)


def rel_region(g: F, size: int, rel: float, which: str = "peak", work: int = WORK) -> np.ndarray | None:
    """The region above rel * max holding the peak (or the largest one): one fixed constant."""
    s = upsample(g, work)
    if float(s.max()) <= 0:
        return None
    b = level_boxes(s, (rel,), which)
    return scale_box(b[0], work, size) if b else None


def most_stable(g: F, size: int, which: str = "peak", work: int = WORK) -> np.ndarray | None:
    """MSER-like: the level where the chosen region's area changes least (relative) between its
    neighbouring levels."""
    s = upsample(g, work)
    if float(s.max()) <= 0:
        return None
    top = float(s.max())
    py, px = np.unravel_index(int(np.argmax(s)), s.shape)
    areas, boxes = [], []
    for lv in LEVELS:
        lab, st = components(s > lv * top)
        k = int(lab[py, px]) if which == "peak" else 1 + int(np.argmax(st[1:, 4]))
        areas.append(float(st[k, 4]))
        boxes.append(scale_box(stat_box(st[k], work), work, size))
    ar = np.array(areas)
    var = np.abs(ar[2:] - ar[:-2]) / np.maximum(ar[1:-1], 1.0)
    return boxes[1 + int(np.argmin(var))]


def max_subarray_box(field: F, size: int) -> np.ndarray | None:
    """The cell rectangle with the largest sum of ``field`` (2-D maximum subarray, O(h^2 w)),
    mapped to pixels halfway to the next cell."""
    h, w = field.shape
    best, arg = -np.inf, None
    for r0 in range(h):
        col = np.zeros(w)
        for r1 in range(r0, h):
            col += field[r1]
            cur, c0 = 0.0, 0  # Kadane over the columns
            for c in range(w):
                if cur <= 0:
                    cur, c0 = col[c], c
                else:
                    cur += col[c]
                if cur > best:
                    best, arg = cur, (r0, r1, c0, c)
    if arg is None:
        return None
    r0, r1, c0, c1 = arg
    sy, sx = (size - 1) / (h - 1), (size - 1) / (w - 1)
    return np.array(
        [
            max(0, round((c0 - 0.5) * sx)),
            max(0, round((r0 - 0.5) * sy)),
            min(size - 1, round((c1 + 0.5) * sx)),
            min(size - 1, round((r1 + 0.5) * sy)),
        ],
        np.int64,
    )


def edge_level(s: np.ndarray, bins: int = 20, lo: float = 0.0) -> float:
    """The relative level (of the map's range above ``lo``) with the largest mean gradient
    magnitude among the pixels at that level: where a blurred step edge is steepest, i.e. at half
    its height, whatever the object's size. Histogram of the map's values in ``bins`` bins
    (empty bins and the top bin, the peak's flat cap, are skipped)."""
    gy, gx = np.gradient(s)
    mag = np.hypot(gx, gy).reshape(-1)
    top = float(s.max())
    v = (s.reshape(-1) - lo) / max(top - lo, 1e-12)
    b = np.clip((v * bins).astype(np.int64), 0, bins - 1)
    cnt = np.bincount(b, minlength=bins)
    tot = np.bincount(b, weights=mag, minlength=bins)
    mean = np.where(cnt > 0, tot / np.maximum(cnt, 1), -1.0)
    mean[0] = -1.0  # the floor (clamped background) is not an edge level
    k = int(np.argmax(mean[:-1]))
    return lo + (k + 0.5) / bins * (top - lo)


def edge_region(
    g: F, size: int, which: str = "peak", signed: np.ndarray | None = None, work: int = WORK
) -> np.ndarray | None:
    """Top box at the edge level: ``g`` the clamped min-max grid, or ``signed`` the raw grid (its
    negative side kept, so the background's own level is the step's foot)."""
    src = g if signed is None else signed
    s = upsample(src, work)
    if float(s.max()) <= 0:
        return None
    lo = float(s.min()) if signed is not None else 0.0
    lv = edge_level(s, lo=lo)
    b = level_boxes_masks(s, [s > lv], which)
    return scale_box(b[0], work, size) if b else None


def halfmax_level(g: F, base: str = "median") -> float:
    """Half maximum above the frame's background: base + (max - base) / 2, the base the median of
    the grid (most of a fixed camera's frame is its scene) or 0 (``zero``). Relative to max."""
    a = np.asarray(g, np.float64)
    top = float(a.max())
    b = float(np.median(a)) if base == "median" else 0.0
    return (b + 0.5 * (top - b)) / max(top, 1e-12)


def halfmax_region(g: F, size: int, base: str = "median", which: str = "peak") -> np.ndarray | None:
    """The region holding the peak above the half maximum over the median (the full width at half
    maximum of a blob over its background: the size of a blurred spot, whatever its scale)."""
    return rel_region(g, size, halfmax_level(g, base), which)
