"""Comparator: two runtimes on the same frames, map and box agreement (the parity numbers)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.core.metadata import ModelMeta
from rpol_edge.data import read_dataset
from rpol_edge.data.loader import iterate_batches
from rpol_edge.results.boxes import boxes_from_mask, iou_inclusive
from rpol_edge.runtimes import Output, Runtime, infer_all


@dataclass(frozen=True)
class Agreement:
    n: int
    max_abs_map: float
    mean_abs_map: float
    boxes_identical: int
    boxes_iou_090: int
    """Frames whose largest-contour boxes overlap with IoU >= 0.9."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement(a: Output, b: Output) -> Agreement:
    if a.score.shape != b.score.shape:
        raise ValueError(f"outputs differ in shape: {a.score.shape} vs {b.score.shape}")
    same = close = 0
    for i in range(len(a.score)):
        box_a = boxes_from_mask(a.mask[i, 0], multi_contour=False)
        box_b = boxes_from_mask(b.mask[i, 0], multi_contour=False)
        same += bool(np.array_equal(box_a, box_b))
        close += bool(iou_inclusive(box_a, box_b)[0, 0] >= 0.9)
    diff = np.abs(a.score.astype(np.float64) - b.score.astype(np.float64))
    return Agreement(
        len(a.score), float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0, same, close
    )


def dataset_frames(meta: ModelMeta, data: str, root: Path, split: str, workers: int = 2) -> np.ndarray:
    """A split's images pre-processed for ``meta`` (unreadable ones left out)."""
    samples = read_dataset(data, root, split)
    batches = [b.frames for b in iterate_batches(samples, meta.resize_size, meta.input_size, 16, workers)]
    return np.concatenate(batches)


def compare(a: Runtime, b: Runtime, frames: np.ndarray) -> Agreement:
    """Both runtimes (entered) on the same frames; refuses models that are not the same fit."""
    from rpol_edge.core.metadata import same_model

    if not same_model(a.meta, b.meta):
        raise ValueError(
            "the two files are not the same fitted model (backbone, w*, threshold or preprocessing differ)"
        )
    return agreement(infer_all(a, frames), infer_all(b, frames))
