"""Pre-processing geometry shared by fitting, evaluation, prediction and live runs.

An image is resized to S x S and center-cropped to K x K (the reference protocol; S == K means a
plain resize). `CropTransform` remembers that mapping so ground-truth boxes can be carried into the
network frame and predicted boxes back to original pixels with the same arithmetic everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropTransform:
    src_w: int
    src_h: int
    resize: int
    crop: int

    def __post_init__(self) -> None:
        if self.crop <= 0 or self.resize < self.crop:
            raise ValueError(f"resize {self.resize} must be >= crop {self.crop} > 0")
        if self.src_w <= 0 or self.src_h <= 0:
            raise ValueError(f"empty image ({self.src_w}x{self.src_h})")

    @property
    def offset(self) -> int:
        # torchvision's CenterCrop rounds the offset; the reference evaluates with it.
        return int(round((self.resize - self.crop) / 2.0))

    @property
    def scale_x(self) -> float:
        return self.resize / self.src_w

    @property
    def scale_y(self) -> float:
        return self.resize / self.src_h

    def boxes_to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Original-pixel boxes (x0, y0, x1, y1) -> network-frame boxes, rounded and clipped to [0, K-1]."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, 0::2] = b[:, 0::2] * self.scale_x - self.offset
        out[:, 1::2] = b[:, 1::2] * self.scale_y - self.offset
        return np.clip(np.round(out), 0, self.crop - 1).astype(np.int64)

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Network-frame boxes -> original-image pixels, clipped to the image."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, 0::2] = np.clip((b[:, 0::2] + self.offset) / self.scale_x, 0, self.src_w - 1)
        out[:, 1::2] = np.clip((b[:, 1::2] + self.offset) / self.scale_y, 0, self.src_h - 1)
        return np.round(out).astype(np.int64)

    def map_to_original(self, score_map: np.ndarray) -> np.ndarray:
        """A K x K map laid back onto the original frame (zeros where the crop cut the frame)."""
        full = np.zeros((self.resize, self.resize), dtype=score_map.dtype)
        o = self.offset
        full[o : o + self.crop, o : o + self.crop] = score_map
        return cv2.resize(full, (self.src_w, self.src_h), interpolation=cv2.INTER_LINEAR)


def resize_crop(image: np.ndarray, resize: int, crop: int) -> tuple[np.ndarray, CropTransform]:
    """uint8 HxWx3 -> uint8 KxKx3 contiguous, and the transform that produced it."""
    h, w = image.shape[:2]
    t = CropTransform(src_w=w, src_h=h, resize=resize, crop=crop)
    # INTER_AREA when shrinking avoids the aliasing a plain bilinear resize of large photos shows.
    interp = cv2.INTER_AREA if resize < min(h, w) else cv2.INTER_LINEAR
    resized = cv2.resize(image, (resize, resize), interpolation=interp)
    o = t.offset
    return np.ascontiguousarray(resized[o : o + crop, o : o + crop]), t
