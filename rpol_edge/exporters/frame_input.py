"""Raw camera frames in: resize, center crop and colour order moved into the exported graph.

`FrameInput` wraps the Localizer (which stays the reference) for one fixed frame size, so a runtime
only copies the camera frame as it comes. The geometry is `geometry.CropTransform`'s (S x S, crop
offset rounded as torchvision does), so boxes map back to frame pixels through the same code.

Interpolation: bilinear with half-pixel centres and no antialias (ONNX Resize ``linear`` /
``half_pixel``), which is what ``cv2.resize(INTER_LINEAR)`` computes (OpenCV in 11-bit fixed point,
so the two differ by at most one grey level before the rounding below). The host path
(`geometry.resize_crop`) uses INTER_AREA when it shrinks; a graph cannot do that cheaply, so maps
differ slightly for frames larger than S (measured: benchmarks/product/frame_input.py; docs/export.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rpol_edge.core.geometry import CropTransform

FRAME_FORMATS = ("bgr", "rgb")


class FrameInput(nn.Module):
    """frames (N, H, W, 3) uint8, ``fmt`` channel order -> the Localizer's (score, mask, peak)."""

    def __init__(self, localizer: nn.Module, width: int, height: int, resize: int, fmt: str) -> None:
        super().__init__()
        if fmt not in FRAME_FORMATS:
            raise ValueError(f"frame format {fmt!r}: choose {', '.join(FRAME_FORMATS)}")
        crop = int(localizer.input_size)  # type: ignore[arg-type]
        self.geometry = CropTransform(src_w=width, src_h=height, resize=resize, crop=crop)
        self.localizer = localizer
        self.bgr = fmt == "bgr"

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = self.geometry
        # Cast first: TensorRT takes UINT8 only at the network's I/O, through a Cast.
        x = frames.to(torch.float32).permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(g.resize, g.resize), mode="bilinear", align_corners=False, antialias=False)
        o = g.offset
        x = x[:, :, o : o + g.crop, o : o + g.crop]
        if self.bgr:
            x = x[:, [2, 1, 0]]
        # The host path hands the Localizer uint8 pixels: round the same way (values stay in 0..255).
        x = torch.round(x)
        return self.localizer(x.permute(0, 2, 3, 1))  # type: ignore[no-any-return]
