"""Instance rules the product does not run: the normalized-cut and seed-and-expand
groupings, the reference labelling and per-instance boxes (the oracle that tests check the
product's `rpol_edge.results.instances` against; benchmarks/research/instances.py selects rules).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rpol_edge.results.instances import _NEIGHBOURS, InstanceRule, _peaks, _regions, upsample_matrix


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
    regions = _regions(fg).reshape(-1)
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
            for dy, dx in _NEIGHBOURS:
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
        return _regions(fg)
    if rule.rule == "peaks":
        return _peaks(a, fg, rule.prominence)
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
    n = int(labels.max()) + 1
    if n == 0:
        return np.zeros((0, 4), np.int64), np.zeros(0)
    reduce = np.mean if rule.score == "mean" else np.sum
    scores = np.array([float(reduce(a[labels == k])) for k in range(n)])
    counts = np.bincount(labels[labels >= 0], minlength=n)
    top = float(scores[counts >= rule.min_cells].max()) if (counts >= rule.min_cells).any() else 0.0
    order = [
        k
        for k in np.argsort(-scores, kind="stable")
        if counts[k] >= rule.min_cells and scores[k] >= rule.keep * top
    ]
    order = order[: rule.max_instances]
    g = a - rule.rel * float(a.max())
    boxes = [_box(g, labels == k, size) for k in order]
    kept = [(b, scores[k]) for b, k in zip(boxes, order, strict=True) if b is not None]
    if not kept:
        return np.zeros((0, 4), np.int64), np.zeros(0)
    return np.stack([b for b, _ in kept]), np.array([s for _, s in kept])


def _box(g: npt.NDArray[np.float64], cells: npt.NDArray[np.bool_], size: int) -> npt.NDArray[np.int64] | None:
    """Box of the pixels where the upsampled field (g on the instance, -|g| elsewhere) is > 0.

    Only the instance's cell rectangle plus one cell is upsampled: pixels farther away interpolate
    cells that are all below the level. x1/y1 are one past the last pixel and clipped to size - 1,
    as boxes.py's cv2.boundingRect boxes are, so both rules' boxes compare to the pixel."""
    h, w = g.shape
    field = np.where(cells, g, -np.abs(g))
    ys, xs = np.nonzero(cells)
    r0, r1 = max(0, int(ys.min()) - 1), min(h - 1, int(ys.max()) + 1)
    c0, c1 = max(0, int(xs.min()) - 1), min(w - 1, int(xs.max()) + 1)
    uy, ux = upsample_matrix(h, size), upsample_matrix(w, size)
    py = np.nonzero(uy[:, r0 : r1 + 1].sum(1) > 1 - 1e-9)[0]
    px = np.nonzero(ux[:, c0 : c1 + 1].sum(1) > 1 - 1e-9)[0]
    up = uy[py, r0 : r1 + 1] @ field[r0 : r1 + 1, c0 : c1 + 1] @ ux[px, c0 : c1 + 1].T
    on = up > 0
    rows, cols = np.nonzero(on.any(1))[0], np.nonzero(on.any(0))[0]
    if len(rows) == 0:
        return None
    y0, y1 = int(py[rows[0]]), int(py[rows[-1]])
    x0, x1 = int(px[cols[0]]), int(px[cols[-1]])
    return np.array([x0, y0, min(x1 + 1, size - 1), min(y1 + 1, size - 1)], np.int64)
