"""Eager PyTorch features into the running sums of the closed-form fit (`rpol_edge.core.wstar`).

The sums and the solve are NumPy and torch-free; here a batch of feature maps is reduced to the
per-image sums `FeatureSums.add_image_sums` takes, so `fit` (PyTorch) and `refit` (the fit graph of
an exported model) add through one implementation.
"""

from __future__ import annotations

import torch

from rpol_edge.core.wstar import EPS, FeatureSums


def unit_features(f: torch.Tensor) -> torch.Tensor:
    """f / ||f|| over channels (dim 1), with all-zero vectors mapped to zero instead of NaN."""
    return f / f.norm(dim=1, keepdim=True).clamp_min(EPS)


def add_features(sums: FeatureSums, features: torch.Tensor, heads: torch.Tensor | None = None) -> None:
    """Accumulate a batch of feature maps (N, C, H, W) into ``sums``, in float64; ``heads`` picks
    each image's class row."""
    f = features.detach().to(torch.float64)
    v = f.mean(dim=(2, 3)).cpu().numpy()
    n = f.norm(dim=1, keepdim=True)  # once: the unit features and the plain-mean tau both need it
    unit = f / n.clamp_min(EPS)
    u = unit.mean(dim=(2, 3)).cpu().numpy()
    norms = n.sum(dim=(1, 2, 3)).cpu().numpy()
    idx = None if heads is None else heads.cpu().numpy()
    sums.add_image_sums(v, u, norms, f.shape[2] * f.shape[3], idx)
    if sums.cells.size:  # the scene model of a fixed camera (rpol_edge.core.scene)
        sums.add_cell_sums(unit.sum(dim=0).cpu().numpy())
