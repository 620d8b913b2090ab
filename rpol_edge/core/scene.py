"""The scene model of a fixed camera: what the frames of one view share, fitted without labels.

Photos of animals share an object; the frames of a fixed camera share the scene. At each cell of
the feature grid the scene model is the direction of the mean unit feature of the fit frames,
b = m / ||m|| with m = mean_t f_t / ||f_t||; per frame the evidence of something new at a cell is
1 - cos(f, b), 0 where the frame shows the scene as it usually is. The sums are the per-cell
counterpart of the fit's own (`FeatureSums.cells`), so shards, resume and refit add them the same
way, and b folds into the exported graph as one constant (C, H, W).
"""

from __future__ import annotations

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
