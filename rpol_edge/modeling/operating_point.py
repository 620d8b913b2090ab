"""Operating points: how a localization map becomes the mask a user sees, without labels.

MaxBoxAcc picks its threshold with ground truth; a deployed localizer has none. Each rule here
turns the raw response ``a = w*^T f / ||f||`` (feature grid, before the clamp) and the upsampled
score map into a mask, with torch ops that export to ONNX ops TensorRT's parser accepts (Greater,
LessOrEqual, ReduceMean/Max/Min, Where, ArgMax, Gather, Resize): no data-dependent Python branch,
no loop, no arithmetic on UINT8 tensors. The rule is a constant of the module, chosen at fit time.

* ``fixed``: the paper's rule, keep ``u8 > int(t * max u8)`` for a fixed t (0.5 unless calibrated).
* ``sign``: the method's own sign: keep the pixels where the bilinearly upsampled raw response is
  positive, i.e. where ``w*^T f_i > 0``: f_i lies on the excitatory side of w*, its norm above tau
  along it. It needs no constant at all.
* ``otsu``: per image, Otsu's threshold on the 256-bin histogram of the feature-grid map.
* ``fraction``: per image, keep the share q of feature cells with the highest scores; q is fitted
  without labels as the share of fit-image positions with ``||f_i|| > tau``.
* ``scene``: a fixed camera. The response is the evidence 1 - cos(f_i, b_i) against the scene model
  fitted on the camera's own frames (rpol_edge/core/scene.py), and the mask keeps it above a level
  relative to its maximum, with the ``fixed`` rule's arithmetic.
* ``zscore``: a fixed camera whose w* map finds the objects but whose scene responds too. The
  response is taken in its cell's terms, (a_i - mean_i) / std_i over the fit frames, and the mask
  keeps it above a level (the sign rule's ops on z minus the level).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The rule record itself is torch-free (metadata.py), so `info` on an ONNX file needs no torch.
from rpol_edge.core.metadata import DEFAULT_OPERATING_POINT, OperatingPoint

__all__ = ["DEFAULT_OPERATING_POINT", "OperatingPoint"]

EPS = 1e-12


def threshold_cuts(threshold: float) -> torch.Tensor:
    """int(t * p) for every possible uint8 peak p, in the reference's float64 arithmetic."""
    return torch.tensor([float(int(threshold * p)) for p in range(256)], dtype=torch.float32)


def minmax(a: torch.Tensor) -> torch.Tensor:
    """Per-map min-max to [0, 1]; a constant map gives zeros (hi == lo makes the numerator 0 too)."""
    lo = a.amin(dim=(2, 3), keepdim=True)
    hi = a.amax(dim=(2, 3), keepdim=True)
    return (a - lo) / (hi - lo).clamp_min(EPS)


def upsample(a: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(a, size=(size, size), mode="bilinear", align_corners=True)


def to_u8_levels(score: torch.Tensor) -> torch.Tensor:
    """int(score * 255) as float32: the reference's uint8 map, kept in float for TensorRT."""
    return torch.floor(score * 255.0)


def fixed_mask(score: torch.Tensor, cut_table: torch.Tensor) -> torch.Tensor:
    """u8 > int(t * max u8); int(t * peak) is looked up (a Gather over 256 constants) rather than
    multiplied, because the reference multiplies in float64 and a float32 product rounds differently
    for some (t, peak), e.g. 0.29 * 100; float64 is not available in TensorRT."""
    u8 = to_u8_levels(score)
    peak = u8.amax(dim=(2, 3), keepdim=True).long()
    return (u8 > cut_table[peak]).to(torch.uint8)


def sign_mask(raw: torch.Tensor, size: int) -> torch.Tensor:
    """Pixels where the bilinearly upsampled raw response is positive (w*^T f > 0)."""
    return (upsample(raw, size) > 0).to(torch.uint8)


def otsu_levels(grid_score: torch.Tensor) -> torch.Tensor:
    """Otsu's level k (N, M, 1, 1) on the uint8 histogram of each feature-grid map: the k that
    maximizes the between-class variance of {<= k} and {> k}; ties go to the smallest k.

    Built from a (cells x 256) comparison rather than a histogram op or a cumulative sum, so it is
    plain Greater/ReduceMean in the graph; on a 14 x 14 grid that is 50 k comparisons per map.
    """
    n, m = grid_score.shape[:2]
    u8 = to_u8_levels(grid_score).reshape(n, m, -1, 1)
    levels = torch.arange(256, dtype=u8.dtype, device=u8.device)
    below = (u8 <= levels).to(u8.dtype)  # (N, M, P, 256)
    w0 = below.mean(dim=2)  # share of cells at or below each level
    mu0 = (below * u8).mean(dim=2)  # their partial mean (times w0)
    mu = u8.mean(dim=2)
    between = (mu * w0 - mu0) ** 2 / (w0 * (1.0 - w0)).clamp_min(EPS)
    return between.argmax(dim=-1).to(u8.dtype).reshape(n, m, 1, 1)


def otsu_mask(score: torch.Tensor, grid_score: torch.Tensor) -> torch.Tensor:
    return (to_u8_levels(score) > otsu_levels(grid_score)).to(torch.uint8)


def fraction_levels(grid_score: torch.Tensor, fraction: float) -> torch.Tensor:
    """The smallest grid value v (N, M, 1, 1) whose cells at or above it are at most ``fraction`` of
    the map (the map's maximum always qualifies): a quantile without TopK's static k or a sort."""
    n, m = grid_score.shape[:2]
    x = grid_score.reshape(n, m, -1)
    share_above = (x[:, :, None, :] >= x[:, :, :, None]).to(x.dtype).mean(dim=3)  # (N, M, P)
    ok = (share_above <= fraction) | (x >= x.amax(dim=2, keepdim=True))
    return torch.where(ok, x, torch.full_like(x, 2.0)).amin(dim=2).reshape(n, m, 1, 1)


def fraction_mask(score: torch.Tensor, grid_score: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keep score >= the map's (1 - q) quantile; zero scores never count as foreground (they are the
    clamped, non-excitatory side), so a constant map gives an empty mask as the other rules do."""
    v = fraction_levels(grid_score, fraction)
    return ((score >= v) & (score > 0)).to(torch.uint8)


def norm_share_above(norms: torch.Tensor, tau: float) -> float:
    """q of the ``fraction`` rule: share of feature positions with ||f_i|| > tau."""
    return float((norms > tau).to(torch.float64).mean())
