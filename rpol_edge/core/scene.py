"""The scene model of a fixed camera: what the frames of one view share, fitted without labels.

Photos of animals share an object; the frames of a fixed camera share the scene. At each cell of
the feature grid the scene model is the direction of the mean unit feature of the fit frames,
b = m / ||m|| with m = mean_t f_t / ||f_t||; per frame the evidence of something new at a cell is
1 - cos(f, b), 0 where the frame shows the scene as it usually is. The sums are the per-cell
counterpart of the fit's own (`FeatureSums.cells`), so shards, resume and refit add them the same
way, and b folds into the exported graph as one constant (C, H, W).

Where the w* map does find the objects but parts of the scene respond too (small animals on a
fixed view), the ``zscore`` rule keeps the response's own statistics per cell instead: its mean
and spread over the fit frames, so a part of the scene that responds in every frame drops out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rpol_edge.core.wstar import EPS


def background(cells: np.ndarray) -> np.ndarray:
    """b (C, H, W) float32: the unit direction of the per-cell sum of unit features (the count
    cancels in the normalization); a cell whose sum is zero stays zero (evidence 1 there)."""
    m = np.asarray(cells, np.float64)
    return (m / np.maximum(np.linalg.norm(m, axis=0, keepdims=True), EPS)).astype(np.float32)


def evidence(features: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - cos(f, b) per cell, (N, H, W) from features (N, C, H, W): the response the ``scene``
    operating point thresholds (the graph computes the same; this is its NumPy reference)."""
    f = np.asarray(features, np.float64)
    cos = (f * np.asarray(b, np.float64)[None]).sum(1) / np.maximum(np.linalg.norm(f, axis=1), EPS)
    return 1.0 - cos


@dataclass
class ResponseSums:
    """Per cell, the sum and the sum of squares of the w* response over the fit frames, and their
    count: the ``zscore`` rule's statistics (a second pass once w* is known; shards merge by adding,
    and `rpol_edge.fitting.distributed.all_reduce_fields` reduces them)."""

    total: np.ndarray  # (H, W) float64
    squares: np.ndarray  # (H, W) float64
    count: int = 0

    @classmethod
    def zeros(cls, grid: tuple[int, int]) -> ResponseSums:
        return cls(np.zeros(grid, np.float64), np.zeros(grid, np.float64), 0)

    def add(self, responses: np.ndarray) -> None:
        """Add a batch of raw responses a = w*^T f / ||f||, (N, H, W)."""
        a = np.asarray(responses, np.float64)
        if a.shape[1:] != self.total.shape:
            raise ValueError(f"responses of shape {a.shape} do not fit cell sums of {self.total.shape}")
        self.total += a.sum(0)
        self.squares += (a * a).sum(0)
        self.count += len(a)


SPREAD_FLOOR = 1e-3
"""The smallest standard deviation a cell is given: a cell that never changed over the fit frames
(a constant border) would otherwise turn float noise into large z."""


def response_stats(sums: ResponseSums) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard deviation) of the response per cell, (H, W) float32 each."""
    n = max(sums.count, 1)
    mean = sums.total / n
    var = np.maximum(sums.squares / n - mean * mean, 0.0)
    return mean.astype(np.float32), np.maximum(np.sqrt(var), SPREAD_FLOOR).astype(np.float32)


def zscores(responses: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """z = (a - mean) / std per cell, (N, H, W): the ``zscore`` rule's map (NumPy reference)."""
    return (np.asarray(responses, np.float64) - mean) / std
