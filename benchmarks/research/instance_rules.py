"""Instance rules the product does not run: the normalized-cut and seed-and-expand
groupings, the reference labelling and per-instance boxes on the raw grid (the oracle that tests
check the product's `rpol_edge.results.instances` against; benchmarks/research/instances.py selects
rules), and the score rankings only research measures.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rpol_edge.results.instances import (
    NEIGHBOURS,
    InstanceRule,
    field_box,
    label_peaks,
    label_regions,
    map_candidates,
    rank_instances,
)

SCORE_RANKINGS = ("grid", "box", "grid_x_box", "grid_x_top")
"""How an instance found on the score map is scored (benchmarks/research/instances.py measures each):
the product's ``grid`` and ``box`` (`rpol_edge.results.instances.SCORE_RANKINGS`); ``grid_x_box``
their product; ``grid_x_top`` the ``grid`` value times the ``box`` value of the image's strongest
instance (one factor per image)."""


def ranked_instances(
    score: npt.ArrayLike,
    mask: npt.ArrayLike,
    cells: int,
    rule: InstanceRule | None = None,
    ranking: str = "box",
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """`rpol_edge.results.instances.map_instances` with any of `SCORE_RANKINGS`."""
    if ranking not in SCORE_RANKINGS:
        raise ValueError(f"unknown instance ranking {ranking!r}: choose one of {', '.join(SCORE_RANKINGS)}")
    boxes, grid_mean, box_mean = map_candidates(score, mask, cells, rule)
    if not len(boxes):
        return boxes, grid_mean
    scores = {
        "grid": grid_mean,
        "box": box_mean,
        "grid_x_box": grid_mean * box_mean,
        "grid_x_top": grid_mean * box_mean[0],
    }[ranking]
    best = np.argsort(-scores, kind="stable")
    return boxes[best], scores[best]


def _ncut_split(
    cells: npt.NDArray[np.int64],
    feats: npt.NDArray[np.float64],
    coords: npt.NDArray[np.float64],
    r: InstanceRule,
) -> list[npt.NDArray[np.int64]]:
    """Recursive two-way normalized cut of one region's cells (indices into the flat grid)."""
    if len(cells) < 2 * r.min_cells or len(cells) < 4:
        return [cells]
    f = feats[cells]
    d2 = ((coords[cells, None, :] - coords[None, cells, :]) ** 2).sum(-1)
    wmat = np.maximum(f @ f.T, 0.0) * np.exp(-d2 / (2.0 * r.sigma**2)) + 1e-6
    deg = wmat.sum(1)
    dis = 1.0 / np.sqrt(deg)
    _, vecs = np.linalg.eigh(dis[:, None] * wmat * dis[None, :])
    y = dis * vecs[:, -2]  # the second generalized eigenvector of (D - W) y = l D y
    side = y > np.mean(y)
    a, b = cells[side], cells[~side]
    if len(a) < r.min_cells or len(b) < r.min_cells:
        return [cells]
    cut = wmat[side][:, ~side].sum()
    value = cut / deg[side].sum() + cut / deg[~side].sum()
    if value >= r.ncut_max:
        return [cells]
    return _ncut_split(a, feats, coords, r) + _ncut_split(b, feats, coords, r)


def _ncut(
    fg: npt.NDArray[np.bool_], feats: npt.NDArray[np.float64], r: InstanceRule
) -> npt.NDArray[np.int32]:
    h, w = fg.shape
    regions = label_regions(fg).reshape(-1)
    coords = np.stack(np.divmod(np.arange(h * w), w), axis=1).astype(np.float64)
    labels = np.full(h * w, -1, np.int32)
    n = 0
    for k in range(int(regions.max()) + 1):
        for part in _ncut_split(np.nonzero(regions == k)[0], feats, coords, r):
            labels[part] = n
            n += 1
    return labels.reshape(h, w)


def _seeds(
    raw: npt.NDArray[np.float64], fg: npt.NDArray[np.bool_], feats: npt.NDArray[np.float64], seed_cos: float
) -> npt.NDArray[np.int32]:
    h, w = fg.shape
    labels = np.full((h, w), -1, np.int32)
    free = fg.copy()
    n = 0
    while free.any():
        s = int(np.argmax(np.where(free, raw, -np.inf)))
        similar = (feats @ feats[s]).reshape(h, w) > seed_cos
        stack = [divmod(s, w)]
        labels[stack[0]] = n
        free[stack[0]] = False
        while stack:
            y, x = stack.pop()
            for dy, dx in NEIGHBOURS:
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and free[yy, xx] and similar[yy, xx]:
                    free[yy, xx] = False
                    labels[yy, xx] = n
                    stack.append((yy, xx))
        n += 1
    return labels


def label_instances(
    raw: npt.ArrayLike, rule: InstanceRule, features: npt.ArrayLike | None = None
) -> npt.NDArray[np.int32]:
    """(h, w) instance label of every grid cell, -1 for background; ``features`` (C, h, w)."""
    a = np.asarray(raw, np.float64)
    if a.ndim != 2:
        raise ValueError(f"raw response must be (h, w), got shape {a.shape}")
    top = float(a.max())
    if not np.isfinite(top) or top <= 0:
        return np.full(a.shape, -1, np.int32)
    fg = a > rule.rel * top
    if rule.rule == "regions":
        return label_regions(fg)
    if rule.rule == "peaks":
        return label_peaks(a, fg, rule.prominence)
    if features is None:
        raise ValueError(f"the {rule.rule} rule needs the feature grid")
    f = np.asarray(features, np.float64).reshape(-1, a.size).T
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    if rule.rule == "ncut":
        return _ncut(fg, f, rule)
    return _seeds(a, fg, f, rule.seed_cos)


def instance_boxes(
    raw: npt.ArrayLike, size: int, rule: InstanceRule, features: npt.ArrayLike | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Boxes (k, 4) int64 in ``size`` x ``size`` crop pixels and scores (k,), best first."""
    a = np.asarray(raw, np.float64)
    labels = label_instances(a, rule, features)
    order, scores = rank_instances(a, labels, rule)
    g = a - rule.rel * float(a.max())
    kept = []
    for k in order:
        cells = labels == k
        # float64 and no mask: the reference draws each box from the raw grid alone
        b = field_box(np.where(cells, g, -np.abs(g)), cells, size)
        if b is not None:
            kept.append((b, scores[k]))
    if not kept:
        return np.zeros((0, 4), np.int64), np.zeros(0)
    return np.stack([b for b, _ in kept]), np.array([s for _, s in kept])
