"""The closed-form fit: running sums of features, tau and w* (METHOD.md, supplement Eq. 25).

Only three quantities per head are kept (sum of spatially averaged features, sum of spatially
averaged unit features, image count), in float64, so memory is O(C) whatever the data size and
shards merge by adding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

EPS = 1e-12


def unit_features(f: torch.Tensor) -> torch.Tensor:
    """f / ||f|| over channels (dim 1), with all-zero vectors mapped to zero instead of NaN."""
    return f / f.norm(dim=1, keepdim=True).clamp_min(EPS)


@dataclass
class FeatureSums:
    """Per-head sums: ``v_sum[k]`` = sum over images of mean_i f_i, ``u_sum[k]`` = of mean_i f̂_i."""

    v_sum: np.ndarray  # (n_heads, C) float64
    u_sum: np.ndarray  # (n_heads, C) float64
    count: np.ndarray  # (n_heads,) int64

    @classmethod
    def zeros(cls, channels: int, n_heads: int = 1) -> FeatureSums:
        return cls(
            np.zeros((n_heads, channels), np.float64),
            np.zeros((n_heads, channels), np.float64),
            np.zeros(n_heads, np.int64),
        )

    def add(self, features: torch.Tensor, heads: torch.Tensor | None = None) -> None:
        """Accumulate a batch of feature maps (N, C, H, W); ``heads`` picks each image's class row."""
        f = features.detach().to(torch.float64)
        v = f.mean(dim=(2, 3)).cpu().numpy()
        u = unit_features(f).mean(dim=(2, 3)).cpu().numpy()
        idx = np.zeros(len(v), np.int64) if heads is None else heads.cpu().numpy().astype(np.int64)
        np.add.at(self.v_sum, idx, v)
        np.add.at(self.u_sum, idx, u)
        np.add.at(self.count, idx, 1)

    def merge(self, other: FeatureSums) -> FeatureSums:
        return FeatureSums(self.v_sum + other.v_sum, self.u_sum + other.u_sum, self.count + other.count)


def tau(v: np.ndarray, u: np.ndarray) -> float:
    """tau = ||v|| / ||u||; scale-free, so sums and means give the same value. 0 when u is zero."""
    nu = float(np.linalg.norm(u))
    return float(np.linalg.norm(v)) / nu if nu > 0 else 0.0


def w_star(v: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, float]:
    """w* = normalize(v - tau u) and tau, for one head; a zero direction stays zero."""
    t = tau(v, u)
    d = np.asarray(v, np.float64) - t * np.asarray(u, np.float64)
    n = float(np.linalg.norm(d))
    return (d / n if n > 0 else d), t


def solve(sums: FeatureSums) -> tuple[np.ndarray, np.ndarray]:
    """w* per head (n_heads, C) and tau per head (n_heads,)."""
    ws, taus = zip(*(w_star(v, u) for v, u in zip(sums.v_sum, sums.u_sum, strict=True)), strict=True)
    return np.stack(ws), np.asarray(taus, np.float64)
