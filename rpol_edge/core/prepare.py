"""One frame -> the model's input: on the host (resize, crop, RGB) or, for a graph exported with
``--frame-size WxH``, in the graph (the host only checks the size and passes the frame through).

Either way the `CropTransform` returned is the geometry's, so boxes map back to frame pixels with
the same code. Shared by the live runner and `predict`; no torch here (runtime side).
"""

from __future__ import annotations

import cv2
import numpy as np

from rpol_edge.core.geometry import CropTransform, resize_crop
from rpol_edge.core.metadata import ModelMeta


class FrameSizeError(ValueError):
    """A frame whose size is not the one a raw-frame graph was exported for."""


def describe(meta: ModelMeta) -> str:
    """Which pre-processing path a model uses, in a few words (logs, run summaries)."""
    if meta.raw_frames:
        return f"in graph ({meta.frame_width}x{meta.frame_height} {meta.frame_format} frames, host copy only)"
    return f"on host (resize {meta.resize_size}, crop {meta.input_size}, RGB)"


def prepare(image: np.ndarray, meta: ModelMeta, is_rgb: bool) -> tuple[np.ndarray, CropTransform]:
    """uint8 (H, W, 3) frame, RGB if ``is_rgb`` else BGR -> (model input frame, its transform)."""
    h, w = image.shape[:2]
    if meta.raw_frames:
        if (w, h) != (meta.frame_width, meta.frame_height):
            raise FrameSizeError(
                f"the model takes {meta.frame_width}x{meta.frame_height} frames (exported with "
                f"--frame-size), this source gives {w}x{h}: export it with --frame-size {w}x{h}, "
                "or use a model exported without --frame-size"
            )
        if is_rgb != (meta.frame_format == "rgb"):
            image = image[..., ::-1]  # a source in the other order: one reversed copy
        return np.ascontiguousarray(image), CropTransform(w, h, meta.resize_size, meta.input_size)
    return resize_crop_rgb(image, meta.resize_size, meta.input_size, is_rgb)


def resize_crop_rgb(
    image: np.ndarray, resize: int, crop: int, is_rgb: bool
) -> tuple[np.ndarray, CropTransform]:
    """The host's framing: resize to ``resize`` x ``resize``, centre-crop ``crop`` x ``crop``, RGB;
    what a K x K model takes, and what ``fit --source`` fits on (the data-set loader's framing)."""
    # Resize and crop first, then convert only the K x K crop: resizing works per channel, so this
    # is bit-identical to converting the whole frame first, at a fraction of the cost.
    x, transform = resize_crop(image, resize, crop)
    if not is_rgb:
        x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB)
    return x, transform
