"""The closed-form fit: running sums of features, tau and w* (METHOD.md, supplement Eq. 25).

Per head only the sum of spatially averaged features, the sum of spatially averaged unit features
and the image count are kept (plus, for ``tau_mode="mean"``, the sum of per-position norms and the
position count), in float64, so memory is O(C) whatever the data size and shards merge by adding.

The sums and the solve are NumPy, without torch: `FeatureSums.add_image_sums` takes per-image sums
computed anywhere (PyTorch eager in `fit`, through `rpol_edge.modeling.feature_sums`; the fit graph
of an exported model in `refit`), so both paths share one solve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPS = 1e-12
"""The guard of a unit feature f / max(||f||, EPS): an all-zero vector stays zero, not NaN."""


@dataclass
class FeatureSums:
    """Per-head sums: ``v_sum[k]`` = sum over images of mean_i f_i, ``u_sum[k]`` = of mean_i f̂_i."""

    v_sum: np.ndarray  # (n_heads, C) float64
    u_sum: np.ndarray  # (n_heads, C) float64
    count: np.ndarray  # (n_heads,) int64
    norm_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """(n_heads,) float64: sum of ||f_i|| over every position of every image (the plain-mean tau)."""
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """(n_heads,) int64: how many positions ``norm_sum`` adds up."""
    cells: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """(C, H, W) float64: sum over images of the unit feature at each grid cell, for the scene model
    of a fixed camera (`rpol_edge.core.scene`); empty when the fit does not keep one."""

    def __post_init__(self) -> None:
        # Older call sites build sums from (v, u, count) only; their norm sums start at zero.
        if self.norm_sum.shape != self.count.shape:
            self.norm_sum = np.zeros(self.count.shape, np.float64)
        if self.positions.shape != self.count.shape:
            self.positions = np.zeros(self.count.shape, np.int64)

    @classmethod
    def zeros(cls, channels: int, n_heads: int = 1, grid: tuple[int, int] | None = None) -> FeatureSums:
        """Empty sums; ``grid`` (H, W) also keeps the per-cell sums of a scene model."""
        cells = np.zeros((channels, *grid), np.float64) if grid else np.zeros(0)
        return cls(
            np.zeros((n_heads, channels), np.float64),
            np.zeros((n_heads, channels), np.float64),
            np.zeros(n_heads, np.int64),
            cells=cells,
        )

    def add_cell_sums(self, cells: np.ndarray) -> None:
        """Add a batch's sum of unit features per cell, (C, H, W), to the scene model's sums."""
        cells = np.asarray(cells, np.float64)
        if cells.shape != self.cells.shape:
            raise ValueError(
                f"cell sums of shape {cells.shape} do not fit running sums of {self.cells.shape}"
            )
        self.cells += cells

    def add_image_sums(
        self,
        v: np.ndarray,
        u: np.ndarray,
        norms: np.ndarray,
        positions: int,
        heads: np.ndarray | None = None,
    ) -> None:
        """Accumulate per-image sums of a batch: ``v`` (N, C) spatial mean of f, ``u`` (N, C)
        spatial mean of f / ||f||, ``norms`` (N,) the sum of ||f_i|| over the image's
        ``positions`` feature cells; added in float64 whatever precision they were computed in."""
        v = np.asarray(v, np.float64).reshape(len(v), -1)
        u = np.asarray(u, np.float64).reshape(len(u), -1)
        norms = np.asarray(norms, np.float64).reshape(-1)
        if not (v.shape == u.shape and v.shape[1:] == self.v_sum.shape[1:] and len(norms) == len(v)):
            raise ValueError(
                f"image sums of shapes {v.shape}, {u.shape}, {norms.shape} do not fit running sums "
                f"of {self.v_sum.shape[1]} channels"
            )
        idx = np.zeros(len(v), np.int64) if heads is None else np.asarray(heads).astype(np.int64)
        np.add.at(self.v_sum, idx, v)
        np.add.at(self.u_sum, idx, u)
        np.add.at(self.count, idx, 1)
        np.add.at(self.norm_sum, idx, norms)
        np.add.at(self.positions, idx, int(positions))

    def merge(self, other: FeatureSums) -> FeatureSums:
        return FeatureSums(
            self.v_sum + other.v_sum,
            self.u_sum + other.u_sum,
            self.count + other.count,
            self.norm_sum + other.norm_sum,
            self.positions + other.positions,
            self.cells + other.cells,
        )


def tau(v: np.ndarray, u: np.ndarray) -> float:
    """tau = ||v|| / ||u||; scale-free, so sums and means give the same value. 0 when u is zero."""
    nu = float(np.linalg.norm(u))
    return float(np.linalg.norm(v)) / nu if nu > 0 else 0.0


def tau_mean_norm(norm_sum: float, positions: int) -> float:
    """The "straightforward" tau the paper argues against: the plain mean feature norm E||f|| over
    every position of every image (not weighted by cosine similarity). 0 with no positions."""
    return float(norm_sum) / int(positions) if positions > 0 else 0.0


def direction(v: np.ndarray, u: np.ndarray, t: float) -> np.ndarray:
    """v - tau u, unnormalized: its norm Z is the normalizer of the representer importances."""
    return np.asarray(v, np.float64) - t * np.asarray(u, np.float64)


def w_star(v: np.ndarray, u: np.ndarray, t: float | None = None) -> tuple[np.ndarray, float]:
    """w* = normalize(v - tau u) and tau (Eq. 25 unless given), for one head; a zero direction stays zero."""
    t = tau(v, u) if t is None else float(t)
    d = direction(v, u, t)
    n = float(np.linalg.norm(d))
    return (d / n if n > 0 else d), t


def head_taus(sums: FeatureSums, tau_mode: str = "joint") -> np.ndarray:
    """tau per head (n_heads,): ``joint`` = ||v|| / ||u|| (Eq. 25), ``mean`` = E||f||."""
    if tau_mode == "joint":
        return np.asarray([tau(v, u) for v, u in zip(sums.v_sum, sums.u_sum, strict=True)], np.float64)
    if tau_mode == "mean":
        return np.asarray(
            [tau_mean_norm(s, int(n)) for s, n in zip(sums.norm_sum, sums.positions, strict=True)], np.float64
        )
    raise ValueError(f"tau mode {tau_mode!r}: choose joint or mean")


def solve(sums: FeatureSums, tau_mode: str = "joint") -> tuple[np.ndarray, np.ndarray]:
    """w* per head (n_heads, C) and tau per head (n_heads,)."""
    taus = head_taus(sums, tau_mode)
    ws = [w_star(v, u, t)[0] for v, u, t in zip(sums.v_sum, sums.u_sum, taus, strict=True)]
    return np.stack(ws), taus
