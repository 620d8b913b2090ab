"""The feature grid behind an exported graph's score map: the graph's bilinear upsampling
(align_corners=True) as a matrix, and the grid recovered from the K x K score map through its
pseudo-inverse, which the host-side box rules (instances.py) start from. Pure numpy; no torch."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

__all__ = ["FIT_TOL", "downsample_matrix", "grid_cells", "grid_from_score", "upsample_matrix"]


# The graphs output only the K x K score map and mask. The score map is U g U^T, with g the h x h
# min-max normalized, clamped grid and U the (K, h) align_corners=True bilinear weights (the graph's
# own upsampling, rpol_edge/modeling/operating_point.py `upsample`), so g comes back exactly (up to
# float32 rounding) through the pseudo-inverse of U. On the cells with a positive raw response g is
# raw / max(raw) whenever some cell is <= 0 (the clamped map's minimum is then 0), which is all the
# persistence watershed needs: its order, its prominence (a share of the maximum) and the relative
# foreground are scale-free. What the score map cannot give back is the scale (max raw, a cosine)
# and the negative cells' values; the mask (the sign of the upsampled raw response) stands in for
# the latter when a box is drawn.


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
            f"(max difference {err:.2g}); --boxes all and objects need the model's feature stride and an "
            "unquantized score map"
        )
    return g
