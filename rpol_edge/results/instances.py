"""One box per object: instance rules on the feature grid, run on the host after any runtime.

Inputs are what an exported graph can emit at the grid resolution (h x w, 14 x 14 at 448 / stride
32): the raw response ``a = w*^T f / ||f||`` before the clamp and, for the rules that need it,
unit-length feature vectors (or a projection of them). Output: boxes in input-crop pixels
(inclusive x0, y0, x1, y1, the convention of boxes.py) with one score each, best first.

Every rule first labels foreground cells (``a > rel * max a``; ``rel = 0`` is the default ``sign``
operating point's foreground), groups them into instances, then draws each instance's box where
the bilinearly upsampled (align_corners=True, as in the graph) response of that instance is above
the level: with ``rel = 0`` and one instance this is exactly the sign mask's region. Cells that
belong to another instance count as mirrored below the level there, so touching instances part
halfway between their cells.

Grouping rules:

* ``regions``: 8-connected regions of the foreground cells.
* ``peaks``: a persistence watershed on the response: cells in descending order grow basins from
  local maxima; where two basins meet, the one whose peak rises less than ``prominence * max a``
  above the meeting level is merged into the other. Separates touching animals whose responses
  dip between them, without features.
* ``ncut``: regions, each cut recursively by a normalized cut (Shi and Malik) on the affinity
  ``max(cos, 0) * exp(-d^2 / 2 sigma^2)`` of the cells' feature vectors (d in cells), while the
  cut's value is below ``ncut_max`` and both sides keep ``min_cells`` cells.
* ``seeds``: seed and expand: the strongest unassigned foreground cell seeds an instance that grows
  over 8-connected foreground cells whose feature cosine to the seed is above ``seed_cos``.

Instance score: the mean raw response over its cells (a cosine, comparable across images, unlike
the min-max normalized map), or its sum (``mass``). Instances scoring below ``keep * top score``
are dropped.
Pure numpy and OpenCV; no torch (runtime side).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from rpol_edge.results.boxes import iou_inclusive, largest_box

__all__ = [
    "ALL_BOXES",
    "RULES",
    "TOP_IOU",
    "InstanceRule",
    "all_boxes",
    "grid_cells",
    "grid_from_score",
    "map_instances",
    "upsample_matrix",
]

RULES = ("regions", "peaks", "ncut", "seeds")


@dataclass(frozen=True)
class InstanceRule:
    """A grouping rule and its constants (see the module docstring)."""

    rule: str = "peaks"
    rel: float = 0.0
    keep: float = 0.5
    prominence: float = 0.2
    sigma: float = 2.0
    ncut_max: float = 0.3
    seed_cos: float = 0.5
    min_cells: int = 1
    max_instances: int = 16
    score: str = "mean"
    """``mean`` raw response over the instance's cells, or ``mass``: their sum (favours large)."""

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown instance rule {self.rule!r}: choose one of {', '.join(RULES)}")
        if self.score not in ("mean", "mass"):
            raise ValueError(f"unknown instance score {self.score!r}: mean or mass")
        if not 0.0 <= self.rel < 1.0 or not 0.0 <= self.keep <= 1.0:
            raise ValueError("rel must be in [0, 1) and keep in [0, 1]")

    @property
    def needs_features(self) -> bool:
        return self.rule in ("ncut", "seeds")


ALL_BOXES = InstanceRule("peaks", rel=0.1, keep=0.5, prominence=0.3)
"""The instances of ``--boxes all`` (`all_boxes`): persistence watershed over the cells above 0.1 x
the maximum, prominence 0.3, keep 0.5: the constants cross-validation chose on every fold among
the peaks rules measured after the top box (benchmarks/research/instances.py, docs/instances.md)."""

TOP_IOU = 0.5
"""An instance whose box overlaps the top box by this IoU or more is taken for the same object."""


@lru_cache(maxsize=16)
def upsample_matrix(n: int, size: int) -> npt.NDArray[np.float64]:
    """(size, n) linear interpolation weights of align_corners=True upsampling (torch's)."""
    m = np.zeros((size, n))
    if n == 1:
        m[:, 0] = 1.0
        return m
    x = np.arange(size) * (n - 1) / max(size - 1, 1)
    i0 = np.minimum(np.floor(x).astype(np.int64), n - 2)
    frac = x - i0
    m[np.arange(size), i0] = 1.0 - frac
    m[np.arange(size), i0 + 1] += frac
    m.setflags(write=False)
    return m


_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _regions(fg: npt.NDArray[np.bool_]) -> npt.NDArray[np.int32]:
    n, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    return np.asarray(labels, np.int32) - 1  # -1 background, 0.. instances


def _peaks(
    raw: npt.NDArray[np.float64], fg: npt.NDArray[np.bool_], prominence: float
) -> npt.NDArray[np.int32]:
    h, w = raw.shape
    # Plain Python lists in the loop: numpy scalar indexing cost most of the time per frame.
    labels = [-1] * (h * w)
    parent: list[int] = []
    peak: list[float] = []

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    drop = prominence * float(raw.max())
    flat = raw.reshape(-1)
    cells = np.flatnonzero(fg.reshape(-1))  # row-major, as np.nonzero: ties keep that order
    values = flat.tolist()
    neighbours = _neighbour_lists(h, w)
    for c in cells[np.argsort(-flat[cells], kind="stable")].tolist():
        v = values[c]
        roots = set()
        for nb in neighbours[c]:
            if labels[nb] >= 0:
                roots.add(find(labels[nb]))
        if not roots:
            parent.append(len(parent))
            peak.append(v)
            labels[c] = len(parent) - 1
            continue
        main = max(roots, key=peak.__getitem__)
        for r in roots:
            if r != main and peak[r] - v < drop:
                parent[r] = main  # a shallow bump on the main basin's flank, not an object of its own
        labels[c] = main
    if not parent:
        return np.full((h, w), -1, np.int32)
    root = np.array([find(i) for i in range(len(parent))] + [-1], np.int32)
    return _relabel(root[np.array(labels, np.int64)].reshape(h, w))  # -1 indexes the trailing -1


@lru_cache(maxsize=16)
def _neighbour_lists(h: int, w: int) -> tuple[tuple[int, ...], ...]:
    """Flat indices of each cell's 8 neighbours inside the grid, in `_NEIGHBOURS` order."""
    return tuple(
        tuple((y + dy) * w + x + dx for dy, dx in _NEIGHBOURS if 0 <= y + dy < h and 0 <= x + dx < w)
        for y in range(h)
        for x in range(w)
    )


def _relabel(labels: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Labels renumbered 0.. in order of their old values; -1 stays."""
    out = np.full_like(labels, -1)
    on = labels >= 0
    out[on] = np.unique(labels[on], return_inverse=True)[1].reshape(-1)
    return out


# ---- from an exported graph's outputs ------------------------------------------------------------
#
# The graphs output only the K x K score map and mask. The score map is U g U^T, with g the h x h
# min-max normalized, clamped grid and U the (K, h) align_corners=True bilinear weights (the graph's
# own upsampling, rpol_edge/modeling/operating_point.py `upsample`), so g comes back exactly (up to
# float32 rounding) through the pseudo-inverse of U. On the cells with a positive raw response g is
# raw / max(raw) whenever some cell is <= 0 (the clamped map's minimum is then 0), which is all the
# persistence watershed needs: its order, its prominence (a share of the maximum) and the relative
# foreground are scale-free. What the score map cannot give back is the scale (max raw, a cosine)
# and the negative cells' values; the mask (the sign of the upsampled raw response) stands in for
# the latter when a box is drawn.

SCORE_RANKINGS = ("grid", "box", "grid_x_box", "grid_x_top")
"""How an instance found on the score map is scored (benchmarks/research/instances.py measures each):
``grid`` the mean normalized grid value over its cells (the reference rule's mean response divided
by the image's maximum); ``box`` the mean of the score map inside its box (what `detect` reports
for the one box of ``largest``); ``grid_x_box`` their product; ``grid_x_top`` the ``grid`` value
times the ``box`` value of the image's strongest instance (one factor per image)."""

FOREGROUND_TOL = 1e-5
"""Recovered grid values above this are foreground (raw > 0). The recovery is exact to about 5e-7
(float32 score maps at K = 224..640, tests/results/test_instances.py), and a cell whose response is
below 1e-5 of the image's maximum draws no box anyway."""

FIT_TOL = 1e-3
"""Largest |U g U^T - score| accepted: above it the score map is not the bilinear upsampling of an
h x h grid (a wrong feature stride in the metadata, or a graph that quantizes the upsampling)."""


def grid_cells(input_size: int, stride: int) -> int:
    """Cells per side of the feature grid: ceil(K / stride) (14 at 448 / stride 32), as padded
    stride-2 convolutions give."""
    if stride <= 0 or input_size <= 0:
        raise ValueError(f"input size {input_size} and feature stride {stride} must be positive")
    return -(-input_size // stride)


@lru_cache(maxsize=16)
def downsample_matrix(n: int, size: int) -> npt.NDArray[np.float32]:
    """(n, size) float32 pseudo-inverse of `upsample_matrix` (n, size): g = P S P^T. U has full
    column rank and condition number about 1.95 (K = 224..640), so float32 is enough."""
    p = np.linalg.pinv(upsample_matrix(n, size)).astype(np.float32)
    p.setflags(write=False)
    return p


_CHECK_ROWS = 16
"""Rows of the score map compared with the re-upsampled grid: enough to catch a wrong grid size
(every row mixes two cells with row-dependent weights) at a fraction of a full K x K product."""


def grid_from_score(score: npt.ArrayLike, cells: int) -> npt.NDArray[np.float32]:
    """The (cells, cells) grid whose bilinear upsampling is ``score`` (K, K); ValueError when no
    such grid reproduces it (see `FIT_TOL`)."""
    s = np.asarray(score, np.float32)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"score map must be square (K, K), got shape {s.shape}")
    size = s.shape[0]
    if not 1 <= cells <= size:
        raise ValueError(f"a {cells} x {cells} grid cannot be upsampled to {size} x {size}")
    p = downsample_matrix(cells, size)
    g = (p @ s @ p.T).astype(np.float32, copy=False)
    rows = np.linspace(0, size - 1, min(_CHECK_ROWS, size)).astype(np.int64)
    u = upsample_matrix(cells, size).astype(np.float32)
    err = float(np.abs(u[rows] @ g @ u.T - s[rows]).max())
    if not err <= FIT_TOL:
        raise ValueError(
            f"the {size} x {size} score map is not a bilinear upsampling of a {cells} x {cells} grid "
            f"(max difference {err:.2g}); --boxes all needs the model's feature stride and an "
            "unquantized score map"
        )
    return g


def map_instances(
    score: npt.ArrayLike,
    mask: npt.ArrayLike,
    cells: int,
    rule: InstanceRule | None = None,
    ranking: str = "box",
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Instance boxes (k, 4) int64 in K x K crop pixels and their scores (k,), best first, from an
    exported graph's score map and mask (``rule`` default: `ALL_BOXES`).

    Instances are the reference rule's (`label_instances` on the raw grid) on the recovered grid;
    ``keep`` compares the instances' mean grid values (the reference's mean responses over the
    same maximum). A box is the bounding box of the mask's pixels where the instance outweighs
    every other one (the upsampled field, g - rel on its cells, -|g - rel| on other instances',
    the background's own value below the level elsewhere, is > 0): with ``rel`` 0 and one
    instance exactly the mask's box around it."""
    r = rule or ALL_BOXES
    if r.needs_features:
        raise ValueError(f"the {r.rule} rule needs the feature grid, which exported graphs do not output")
    if ranking not in SCORE_RANKINGS:
        raise ValueError(f"unknown instance ranking {ranking!r}: choose one of {', '.join(SCORE_RANKINGS)}")
    s = np.asarray(score, np.float32)
    m = np.asarray(mask) != 0
    empty = (np.zeros((0, 4), np.int64), np.zeros(0))
    if not m.any():
        return empty
    g = grid_from_score(s, cells).astype(np.float64)
    # Every cell positive (the mask covers the whole crop): min-max then shifted the grid by its
    # minimum, and only the mask still says that all cells are foreground.
    fg = np.ones(g.shape, bool) if m.all() else g > max(r.rel, FOREGROUND_TOL)
    if not fg.any():
        return empty
    labels = _regions(fg) if r.rule == "regions" else _peaks(g, fg, r.prominence)
    n = int(labels.max()) + 1
    counts = np.bincount(labels[labels >= 0], minlength=n)
    reduce = np.mean if r.score == "mean" else np.sum
    strength = np.array([float(reduce(g[labels == k])) for k in range(n)])
    ok = counts >= r.min_cells
    if not ok.any():
        return empty
    top = float(strength[ok].max())
    order = [k for k in np.argsort(-strength, kind="stable") if ok[k] and strength[k] >= r.keep * top]
    found = []
    for k in order[: r.max_instances]:
        b = _map_box(g - r.rel, labels, k, m, s.shape[0])
        if b is not None:
            found.append((b, float(strength[k]), float(s[b[1] : b[3] + 1, b[0] : b[2] + 1].mean())))
    if not found:
        return empty
    grid_mean = np.array([x[1] for x in found])
    box_mean = np.array([x[2] for x in found])
    scores = {
        "grid": grid_mean,
        "box": box_mean,
        "grid_x_box": grid_mean * box_mean,
        "grid_x_top": grid_mean * box_mean[0],
    }[ranking]
    best = np.argsort(-scores, kind="stable")
    return np.stack([found[i][0] for i in best]), scores[best]


def all_boxes(
    score: npt.ArrayLike,
    mask: npt.ArrayLike,
    cells: int,
    rule: InstanceRule | None = None,
    iou_max: float = TOP_IOU,
    peak: float | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """``--boxes all`` on an exported graph's outputs: boxes (k, 4) int64 in K x K crop pixels and
    scores (k,), best first.

    The first box is ``largest``'s (the mask's largest region, scored by the mean of the score map
    inside it), so the top box is never worse than before. Then every `map_instances` instance
    (``rule``, default `ALL_BOXES`) whose box overlaps it less than ``iou_max``: the other objects,
    and the parts of a region that spans several. A finer rule than the top box's can afford,
    because a single object that it splits loses only a low-ranked extra box, not the top one.
    Their scores (mean score map inside the box) are capped just below the top box's, so the
    list stays sorted and the top box first.

    ``peak``: the graph's ``peak`` output (the map's largest raw response, a cosine for the rpol
    head). Every score is multiplied by it (clamped at 0), which makes it the mean clamped
    response inside the box whenever some cell is <= 0 (min-max then divides by the maximum
    only): comparable across images, where the score map alone is normalized per image. None (a
    graph exported without it): the score map's means."""
    s = np.asarray(score, np.float32)
    m = np.asarray(mask) != 0
    if not m.any():
        return np.zeros((0, 4), np.int64), np.zeros(0)
    top = largest_box(m.astype(np.uint8))
    top_score = float(s[top[1] : top[3] + 1, top[0] : top[2] + 1].mean())
    found, scores = map_instances(s, m, cells, rule or ALL_BOXES, "box")
    if len(found):
        keep = iou_inclusive(top, found)[0] < iou_max
        found, scores = found[keep], np.minimum(scores[keep], top_score * (1.0 - 1e-6))
    scale = 1.0 if peak is None else max(float(peak), 0.0)
    return np.concatenate([top[None], found]), scale * np.concatenate([[top_score], scores])


def _map_box(
    g: npt.NDArray[np.float64], labels: npt.NDArray[np.int32], k: int, mask: npt.NDArray[np.bool_], size: int
) -> npt.NDArray[np.int64] | None:
    """`_box` with the mask for the background: the reference gives background cells their
    (negative) raw response, which the score map lost; the graph's mask is where that field is
    positive, so a pixel counts when the mask has it and the instance outweighs the others."""
    cells = labels == k
    # Background cells: what is left of their response (below the level, or 0 for the clamped ones).
    field = np.where(cells, g, np.where(labels >= 0, -np.abs(g), np.minimum(g, 0.0)))
    h, w = g.shape
    ys, xs = np.nonzero(cells)
    r0, r1 = max(0, int(ys.min()) - 1), min(h - 1, int(ys.max()) + 1)
    c0, c1 = max(0, int(xs.min()) - 1), min(w - 1, int(xs.max()) + 1)
    (y_lo, y_hi), (x_lo, x_hi) = _span(h, size, r0, r1), _span(w, size, c0, c1)
    uy, ux = _upsample32(h, size), _upsample32(w, size)
    # float32 and slices: the pixels whose weights lie on these cells are one contiguous range.
    sub = field[r0 : r1 + 1, c0 : c1 + 1].astype(np.float32)
    up = uy[y_lo:y_hi, r0 : r1 + 1] @ sub @ ux[x_lo:x_hi, c0 : c1 + 1].T
    on = (up > 0) & mask[y_lo:y_hi, x_lo:x_hi]
    rows, cols = np.nonzero(on.any(1))[0], np.nonzero(on.any(0))[0]
    if len(rows) == 0:
        return None
    y0, y1 = y_lo + int(rows[0]), y_lo + int(rows[-1])
    x0, x1 = x_lo + int(cols[0]), x_lo + int(cols[-1])
    return np.array([x0, y0, min(x1 + 1, size - 1), min(y1 + 1, size - 1)], np.int64)


@lru_cache(maxsize=16)
def _upsample32(n: int, size: int) -> npt.NDArray[np.float32]:
    u = upsample_matrix(n, size).astype(np.float32)
    u.setflags(write=False)
    return u


@lru_cache(maxsize=4096)
def _span(n: int, size: int, lo: int, hi: int) -> tuple[int, int]:
    """[start, stop) of the pixels interpolated from cells lo..hi only (as `_box` selects them)."""
    inside = np.nonzero(upsample_matrix(n, size)[:, lo : hi + 1].sum(1) > 1 - 1e-9)[0]
    return int(inside[0]), int(inside[-1]) + 1
