"""Feature-graph leads on the cell grid (they need the feature grid, not only the map): seed
expansion (LOST, Simeoni et al. 2021) and the normalized cut (TokenCut, Wang et al. 2022)."""

from __future__ import annotations

import numpy as np

from benchmarks.research.per_image.maps import F, components, upsample


def centred_unit(feats: np.ndarray) -> np.ndarray:
    """(P, C) unit features with the image's mean feature removed, re-normalized."""
    f = feats.reshape(feats.shape[0], -1).T.astype(np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    f = f - f.mean(0, keepdims=True)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def cells_box(cells: np.ndarray, size: int) -> np.ndarray | None:
    """Pixel box of the cells (h, w) bool: where the upsampled indicator is > 0.5."""
    s = upsample(cells.astype(np.float32), size) > 0.5
    if not s.any():
        return None
    ys, xs = np.nonzero(s.any(1))[0], np.nonzero(s.any(0))[0]
    return np.array([xs[0], ys[0], xs[-1], ys[-1]], np.int64)


def grow(seed: int, ok: np.ndarray, h: int, w: int) -> np.ndarray:
    """8-connected component of ``ok`` (flat bool) that holds ``seed``."""
    lab, _ = components(ok.reshape(h, w))
    k = lab.reshape(-1)[seed]
    return (lab == k) if k > 0 else np.zeros((h, w), bool)


def lost_seed(a: F, feats: np.ndarray, size: int, seed_from: str = "peak") -> np.ndarray | None:
    """Seed expansion on centred unit features: the seed is the w* map's peak (``peak``) or LOST's
    own, the cell with the fewest positive correlations (``degree``); the object is the connected
    set of cells correlating positively with the seed (centred cosine > 0: more similar to it than
    the image's average cell)."""
    h, w = a.shape
    f = centred_unit(feats)
    sim = f @ f.T
    seed = int(np.argmax(a)) if seed_from == "peak" else int(np.argmin((sim > 0).sum(1)))
    return cells_box(grow(seed, sim[seed] > 0, h, w), size)


def tokencut(a: F, feats: np.ndarray, size: int, tau: float = 0.0) -> np.ndarray | None:
    """Normalized cut on the cells: affinity 1 where the centred cosine > tau else 1e-5; the
    bipartition by the second generalized eigenvector; the foreground side is the one with the
    larger mean w* response; the object is its connected part holding its most extreme
    eigenvector entry."""
    h, w = a.shape
    f = centred_unit(feats)
    wm = np.where(f @ f.T > tau, 1.0, 1e-5)
    dis = 1 / np.sqrt(wm.sum(1))
    _, vecs = np.linalg.eigh(dis[:, None] * wm * dis[None, :])
    y = dis * vecs[:, -2]
    side = y > y.mean()
    ar = a.reshape(-1)
    if ar[side].mean() < ar[~side].mean():
        side = ~side
        y = -y
    seed = int(np.argmax(np.where(side, np.abs(y - y.mean()), -np.inf)))
    return cells_box(grow(seed, side, h, w), size)
