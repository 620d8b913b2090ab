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
are dropped (`rank_instances`). The product runs the grouping on the grid recovered from an
exported graph's score map (`map_instances`): ``--boxes all`` (`all_boxes`) and ``--boxes
objects`` (`object_boxes`); the feature rules and the labelling on the raw grid they are checked
against live in benchmarks/research/instance_rules.py.
Pure numpy and OpenCV; no torch (runtime side).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from rpol_edge.results.boxes import iou_inclusive, largest_box
from rpol_edge.results.score_grid import grid_from_score, upsample_matrix

__all__ = [
    "ALL_BOXES",
    "NEIGHBOURS",
    "OBJECTS",
    "RULES",
    "TOP_IOU",
    "InstanceRule",
    "all_boxes",
    "field_box",
    "label_peaks",
    "label_regions",
    "map_candidates",
    "map_instances",
    "object_boxes",
    "rank_instances",
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

OBJECTS = InstanceRule("peaks", rel=0.0, keep=0.0, prominence=0.5)
"""The instances of ``--boxes objects`` (`object_boxes`): persistence watershed over the sign
foreground, prominence 0.5, every instance kept. Cross-validated on raccoon photos (5 folds) and
multi-object canvases, prominence 0.4 / 0.5 / 0.6 measure alike (docs/operating-points.md)."""

TOP_IOU = 0.5
"""An instance whose box overlaps the top box by this IoU or more is taken for the same object."""


NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
"""The 8-neighbourhood (dy, dx) every grouping rule grows over."""


def label_regions(fg: npt.NDArray[np.bool_]) -> npt.NDArray[np.int32]:
    """(h, w) label of each foreground cell's 8-connected region, 0.., -1 for background."""
    n, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    return np.asarray(labels, np.int32) - 1  # -1 background, 0.. instances


def label_peaks(
    raw: npt.NDArray[np.float64], fg: npt.NDArray[np.bool_], prominence: float
) -> npt.NDArray[np.int32]:
    """(h, w) basin label of each foreground cell under the persistence watershed (module
    docstring), 0.. in order of the basins' first cells, -1 for background."""
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
    """Flat indices of each cell's 8 neighbours inside the grid, in `NEIGHBOURS` order."""
    return tuple(
        tuple((y + dy) * w + x + dx for dy, dx in NEIGHBOURS if 0 <= y + dy < h and 0 <= x + dx < w)
        for y in range(h)
        for x in range(w)
    )


def _relabel(labels: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Labels renumbered 0.. in order of their old values; -1 stays."""
    out = np.full_like(labels, -1)
    on = labels >= 0
    out[on] = np.unique(labels[on], return_inverse=True)[1].reshape(-1)
    return out


def rank_instances(
    values: npt.NDArray[np.float64], labels: npt.NDArray[np.int32], rule: InstanceRule
) -> tuple[list[int], npt.NDArray[np.float64]]:
    """The instances ``rule`` keeps, strongest first (at most ``max_instances``), and every
    instance's strength: the mean (``mass``: the sum) of ``values`` over its cells. Kept: at least
    ``min_cells`` cells and a strength of at least ``keep`` x the strongest such instance's."""
    n = int(labels.max()) + 1
    if n <= 0:
        return [], np.zeros(0)
    counts = np.bincount(labels[labels >= 0], minlength=n)
    sums = np.bincount(labels[labels >= 0], weights=values[labels >= 0], minlength=n).astype(np.float64)
    strength = sums if rule.score == "mass" else sums / np.maximum(counts, 1)
    ok = counts >= rule.min_cells
    if not ok.any():
        return [], strength
    top = float(strength[ok].max())
    order = [int(k) for k in np.argsort(-strength, kind="stable") if ok[k] and strength[k] >= rule.keep * top]
    return order[: rule.max_instances], strength


SCORE_RANKINGS = ("grid", "box")
"""How `map_instances` scores an instance found on the score map: ``grid`` the mean normalized grid
value over its cells (the reference rule's mean response divided by the image's maximum; what
``objects`` ranks by); ``box`` the mean of the score map inside its box (what `detect` reports
for the one box of ``largest``, and ``all`` for its other boxes)."""

FOREGROUND_TOL = 1e-5
"""Recovered grid values above this are foreground (raw > 0). The recovery is exact to about 5e-7
(float32 score maps at K = 224..640, tests/results/test_instances.py), and a cell whose response is
below 1e-5 of the image's maximum draws no box anyway."""


def map_instances(
    score: npt.ArrayLike,
    mask: npt.ArrayLike,
    cells: int,
    rule: InstanceRule | None = None,
    ranking: str = "box",
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Instance boxes (k, 4) int64 in K x K crop pixels and their scores (k,) by ``ranking``
    (`SCORE_RANKINGS`), best first, from an exported graph's score map and mask (``rule`` default:
    `ALL_BOXES`); `map_candidates` gives both scores."""
    if ranking not in SCORE_RANKINGS:
        raise ValueError(f"unknown instance ranking {ranking!r}: choose one of {', '.join(SCORE_RANKINGS)}")
    boxes, grid_mean, box_mean = map_candidates(score, mask, cells, rule)
    scores = grid_mean if ranking == "grid" else box_mean
    best = np.argsort(-scores, kind="stable")
    return boxes[best], scores[best]


def map_candidates(
    score: npt.ArrayLike, mask: npt.ArrayLike, cells: int, rule: InstanceRule | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The instances of ``rule`` (default `ALL_BOXES`) on the score map: boxes (k, 4), their mean
    grid values and the mean score map inside each box, in `rank_instances` order.

    Instances are the reference rule's (`label_peaks` / `label_regions` on the raw grid) on the
    recovered grid; ``keep`` compares the instances' mean grid values (the reference's mean
    responses over the same maximum). A box is the bounding box of the mask's pixels where the
    instance outweighs every other one (the upsampled field, g - rel on its cells, -|g - rel| on
    other instances', the background's own value below the level elsewhere, is > 0): with ``rel`` 0
    and one instance exactly the mask's box around it."""
    r = rule or ALL_BOXES
    if r.needs_features:
        raise ValueError(f"the {r.rule} rule needs the feature grid, which exported graphs do not output")
    s = np.asarray(score, np.float32)
    m = np.asarray(mask) != 0
    empty = (np.zeros((0, 4), np.int64), np.zeros(0), np.zeros(0))
    if not m.any():
        return empty
    g = grid_from_score(s, cells).astype(np.float64)
    # Every cell positive (the mask covers the whole crop): min-max then shifted the grid by its
    # minimum, and only the mask still says that all cells are foreground.
    fg = np.ones(g.shape, bool) if m.all() else g > max(r.rel, FOREGROUND_TOL)
    if not fg.any():
        return empty
    labels = label_regions(fg) if r.rule == "regions" else label_peaks(g, fg, r.prominence)
    order, strength = rank_instances(g, labels, r)
    lifted = g - r.rel
    # Background cells: what is left of their response (below the level, or 0 for the clamped ones).
    outside = np.where(labels >= 0, -np.abs(lifted), np.minimum(lifted, 0.0))
    found = []
    for k in order:
        cells_k = labels == k
        b = field_box(np.where(cells_k, lifted, outside).astype(np.float32), cells_k, s.shape[0], m)
        if b is not None:
            found.append((b, float(strength[k]), float(s[b[1] : b[3] + 1, b[0] : b[2] + 1].mean())))
    if not found:
        return empty
    return np.stack([x[0] for x in found]), np.array([x[1] for x in found]), np.array([x[2] for x in found])


def object_boxes(
    score: npt.ArrayLike, mask: npt.ArrayLike, cells: int, peak: float | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """``--boxes objects`` on an exported graph's outputs: every `OBJECTS` instance, each boxed at
    the sign boundary of its own basin, ranked by its mean response; boxes (k, 4) int64 in K x K
    crop pixels and scores (k,), best first. The top box is the strongest instance, not the
    mask's largest region: a small strong object outranks a large weak one.

    Scores: the instance's mean grid value times ``peak`` (clamped at 0), which is its mean raw
    response (a cosine) whenever some cell is <= 0: comparable across images, and two boxes tie
    only when their instances' evidence does. None (a graph without the peak output): the mean
    grid value, in (0, 1]."""
    boxes, scores = map_instances(score, mask, cells, OBJECTS, "grid")
    scale = 1.0 if peak is None else max(float(peak), 0.0)
    return boxes, scale * scores


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


def field_box(
    field: npt.NDArray[np.floating],
    cells: npt.NDArray[np.bool_],
    size: int,
    mask: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.int64] | None:
    """Box (x0, y0, x1, y1) in ``size`` x ``size`` pixels of the pixels where the bilinearly
    upsampled (h, w) ``field`` is > 0 (and ``mask`` has them), around the instance ``cells``;
    None when no pixel is. ``field`` holds the instance's level-shifted response on its cells and
    values below the level elsewhere; it is upsampled in its own dtype (float32 is the fast path).

    Only the instance's cell rectangle plus one cell is upsampled: pixels farther away interpolate
    cells that are all below the level. x1/y1 are one past the last pixel and clipped to size - 1,
    as boxes.py's cv2.boundingRect boxes are, so every rule's boxes compare to the pixel."""
    h, w = field.shape
    ys, xs = np.nonzero(cells)
    r0, r1 = max(0, int(ys.min()) - 1), min(h - 1, int(ys.max()) + 1)
    c0, c1 = max(0, int(xs.min()) - 1), min(w - 1, int(xs.max()) + 1)
    (y_lo, y_hi), (x_lo, x_hi) = _span(h, size, r0, r1), _span(w, size, c0, c1)
    uy, ux = _upsampler(h, size, field.dtype.str), _upsampler(w, size, field.dtype.str)
    # slices: the pixels whose weights lie on these cells are one contiguous range.
    sub = field[r0 : r1 + 1, c0 : c1 + 1]
    on = uy[y_lo:y_hi, r0 : r1 + 1] @ sub @ ux[x_lo:x_hi, c0 : c1 + 1].T > 0
    if mask is not None:
        on &= mask[y_lo:y_hi, x_lo:x_hi]
    rows, cols = np.nonzero(on.any(1))[0], np.nonzero(on.any(0))[0]
    if len(rows) == 0:
        return None
    y0, y1 = y_lo + int(rows[0]), y_lo + int(rows[-1])
    x0, x1 = x_lo + int(cols[0]), x_lo + int(cols[-1])
    return np.array([x0, y0, min(x1 + 1, size - 1), min(y1 + 1, size - 1)], np.int64)


@lru_cache(maxsize=16)
def _upsampler(n: int, size: int, dtype: str) -> npt.NDArray[np.floating]:
    u = upsample_matrix(n, size).astype(dtype)
    u.setflags(write=False)
    return u


@lru_cache(maxsize=4096)
def _span(n: int, size: int, lo: int, hi: int) -> tuple[int, int]:
    """[start, stop) of the pixels interpolated from cells lo..hi only."""
    inside = np.nonzero(upsample_matrix(n, size)[:, lo : hi + 1].sum(1) > 1 - 1e-9)[0]
    return int(inside[0]), int(inside[-1]) + 1
