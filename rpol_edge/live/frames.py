"""What travels between the pipeline's threads, and the one JSON record written per frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rpol_edge.geometry import CropTransform
from rpol_edge.predict import Detection, detection_record

STAGES = ("capture", "pre", "infer", "post", "render")
"""Per-frame latency split, in pipeline order; every record and the summary use these names."""


@dataclass
class Frame:
    index: int
    """Capture sequence number; gaps in the output mean frames dropped by a live source."""
    timestamp: float
    """Wall-clock seconds (``time.time()``) when the frame was read."""
    started: float
    """``time.perf_counter()`` when its read began, or when a live frame arrived: the latency origin."""
    bgr: np.ndarray
    name: str | None = None
    ms: dict[str, float] = field(default_factory=dict)


@dataclass
class FrameResult:
    frame: Frame
    detection: Detection
    score: np.ndarray
    """(K, K) float32 score map of the first head, for the overlay."""
    transform: CropTransform
    latency_ms: float = 0.0
    """Read start to output written."""


def frame_record(r: FrameResult) -> dict[str, Any]:
    """The JSONL line: box in original-frame pixels, score, per-stage and end-to-end milliseconds."""
    rec: dict[str, Any] = {"frame": r.frame.index, "timestamp": round(r.frame.timestamp, 6)}
    if r.frame.name is not None:
        rec["image"] = r.frame.name
    rec["width"] = r.transform.src_w
    rec["height"] = r.transform.src_h
    rec.update(detection_record(r.detection))
    rec["ms"] = {s: round(r.frame.ms.get(s, 0.0), 3) for s in STAGES}
    rec["latency_ms"] = round(r.latency_ms, 3)
    return rec
