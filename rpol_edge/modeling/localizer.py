"""The localizer as one module: the PyTorch reference runtime and exactly what gets exported.

uint8 NHWC frames in; normalization, backbone, w* folded into a 1x1 conv divided by the channel L2
norm, clamp, per-image min-max, bilinear upsampling and the operating point (mask rule, see
operating_point.py) all happen inside, with no data-dependent Python branch, so the ONNX/TensorRT
graphs cannot disagree with the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from rpol_edge.modeling.operating_point import (
    OperatingPoint,
    fixed_mask,
    fraction_mask,
    minmax,
    otsu_mask,
    sign_mask,
    threshold_cuts,
    upsample,
)

EPS = 1e-12

__all__ = ["EPS", "Localizer", "channel_constant", "threshold_cuts"]


def channel_constant(values: tuple[float, float, float]) -> torch.Tensor:
    """Per-channel normalization constants: a scalar when all three are equal (Lite0's 0.5/0.5),
    else (1, 3, 1, 1).

    Why a scalar: ONNX Runtime runs quantized convolutions in NHWC and moves the input Transpose
    below the normalization, where a (1, 3, 1, 1) constant broadcasts over an innermost axis of 3.
    Measured on the INT8 Lite0@448 graph (2 threads, batch 1): Sub and Div 1.2 ms each that way,
    0.13 ms with a scalar; 13.3 -> 11.1 ms in all. The arithmetic is the same, bit for bit.
    """
    t = torch.tensor(values, dtype=torch.float32)
    return t[0].clone() if bool((t == t[0]).all()) else t.view(1, 3, 1, 1)


class Localizer(nn.Module):
    """frames (N, K, K, 3) uint8 -> score (N, M, K, K) float32 in [0, 1], mask (N, M, K, K) uint8
    {0, 1}, peak (N, M) float32: the largest raw response of each map, the scale the min-max
    normalization of the score map takes out (``--boxes all`` ranks boxes across images with it).

    M is the number of heads: 1 for a class-agnostic w*, one per class for a class-wise fit.
    """

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor
    cut_table: torch.Tensor
    scene: torch.Tensor | None
    cell_mean: torch.Tensor | None
    cell_std: torch.Tensor | None

    def __init__(
        self,
        backbone: nn.Module,
        w: torch.Tensor,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        input_size: int,
        threshold: float,
        head: str = "rpol",
        operating_point: OperatingPoint | None = None,
        scene: torch.Tensor | None = None,
        zstats: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if head not in ("rpol", "caam"):
            raise ValueError(f"unknown head {head!r}")
        self.backbone = backbone
        w = w.reshape(-1, w.shape[-1]).to(torch.float32)
        self.head = nn.Conv2d(w.shape[1], w.shape[0], kernel_size=1, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(w[:, :, None, None])
        self.head.requires_grad_(False)
        self.normalize_by_norm = head == "rpol"
        # Scaled by 255 so the uint8 -> float conversion needs no separate division.
        self.register_buffer("pixel_mean", channel_constant(mean) * 255.0)
        self.register_buffer("pixel_std", channel_constant(std) * 255.0)
        self.operating_point = operating_point or OperatingPoint("fixed", threshold)
        self.register_buffer("cut_table", threshold_cuts(self.operating_point.threshold))
        self.input_size = int(input_size)
        if (scene is None) != (self.operating_point.rule != "scene"):
            raise ValueError("the scene operating point and a scene model (C, H, W) come together")
        # (1, C, H, W) float32: the unit direction of the scene at each cell (rpol_edge.core.scene).
        self.register_buffer("scene", None if scene is None else scene.to(torch.float32)[None])
        if (zstats is None) != (self.operating_point.rule != "zscore"):
            raise ValueError("the zscore operating point and the cell statistics (2, H, W) come together")
        # (1, 1, H, W) each: the w* response's mean and spread per cell over the fit frames.
        self.register_buffer("cell_mean", None if zstats is None else zstats[0].to(torch.float32)[None, None])
        self.register_buffer("cell_std", None if zstats is None else zstats[1].to(torch.float32)[None, None])
        self.eval()

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        # Cast before the transpose: TensorRT's ONNX parser takes UINT8 only at the network's I/O,
        # through a Cast (onnx-tensorrt docs/operators.md); a Transpose on UINT8 is rejected.
        x = frames.to(self.pixel_mean.dtype).permute(0, 3, 1, 2)
        return self.backbone((x - self.pixel_mean) / self.pixel_std)

    def response(self, f: torch.Tensor) -> torch.Tensor:
        """a_i = w*^T f_i / ||f_i|| (guarded: a zero feature gives 0), before the clamp; with a
        scene model, the evidence 1 - cos(f_i, b_i) against it instead; with cell statistics, a_i
        in standard deviations of its cell, (a_i - mean_i) / std_i (rpol_edge.core.scene)."""
        f = f.float()
        if self.scene is not None:
            cos = (f * self.scene).sum(dim=1, keepdim=True) / f.norm(dim=1, keepdim=True).clamp_min(EPS)
            return 1.0 - cos
        a = self.head(f)
        if self.normalize_by_norm:
            a = a / f.norm(dim=1, keepdim=True).clamp_min(EPS)
        if self.cell_mean is not None and self.cell_std is not None:  # zscore: in its cell's terms
            a = (a - self.cell_mean) / self.cell_std
        return a

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.localize(self.features(frames))

    def localize(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone features -> (score, mask, peak); split from forward so features can be computed
        once."""
        raw = self.response(f)
        grid = minmax(raw.clamp_min(0.0))
        score = upsample(grid, self.input_size).float().clamp(0.0, 1.0)
        peak = raw.amax(dim=(2, 3)).float()
        return score, self.mask(score, grid, raw), peak

    def mask(self, score: torch.Tensor, grid: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """The operating point's mask; the rule is a constant of the module, not a data branch."""
        rule = self.operating_point.rule
        if rule == "sign":
            return sign_mask(raw, self.input_size)
        if rule == "zscore":  # z above the level: the sign rule's ops on z - level
            return sign_mask(raw - self.operating_point.threshold, self.input_size)
        if rule == "otsu":
            return otsu_mask(score, grid)
        if rule == "fraction":
            return fraction_mask(score, grid, self.operating_point.fraction)
        return self.binarize(score)  # fixed; scene: its level relative to the evidence maximum

    def half_backbone(self) -> Localizer:
        """FP16 backbone (and input normalization); head, min-max, upsampling and threshold stay FP32,
        so the map's normalization and the mask do not lose precision."""
        self.backbone.half()
        self.pixel_mean = self.pixel_mean.half()
        self.pixel_std = self.pixel_std.half()
        return self

    def binarize(self, score: torch.Tensor) -> torch.Tensor:
        """The reference threshold: u8 = int(score*255); keep u8 > int(t * max u8)."""
        return fixed_mask(score, self.cut_table)
