"""What travels between the pipeline's threads, and the one JSON record written per frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rpol_edge.core.geometry import CropTransform
from rpol_edge.live._opencv import cv2
from rpol_edge.results.detection import Detection, detection_record

STAGES = ("capture", "pre", "infer", "post", "render", "write")
"""Per-frame latency split, in pipeline order; every record and the summary use these names.
``render`` draws the overlay; ``write`` is the image outputs (video encoding, JPEG files, window)."""


@dataclass
class Frame:
    index: int
    """Capture sequence number; gaps in the output mean frames dropped by a live source."""
    timestamp: float
    """Wall-clock seconds (``time.time()``) when the frame was read: for records, to be matched
    with other logs. Never for intervals: the wall clock jumps (NTP sync on a Jetson at boot)."""
    started: float
    """``time.perf_counter()`` when its read began, or when a live frame arrived: the latency origin
    and the monotonic capture time (video timelines)."""
    image: np.ndarray
    """uint8 (H, W, 3) as the source delivered it: BGR unless ``is_rgb``."""
    name: str | None = None
    is_rgb: bool = False
    ms: dict[str, float] = field(default_factory=dict)
    position_s: float | None = None
    """Position in a video file (seconds): see `Captured.position_s`."""
    stream: int = 0
    """Which of the run's sources (0-based, in the order given); ``index`` counts within it."""
    batch: int = 1
    """How many frames shared this frame's inference call (streams batched together)."""

    def bgr(self) -> np.ndarray:
        """The frame in BGR, the order the overlay draws in (converted only for RGB sources)."""
        return cv2.cvtColor(self.image, cv2.COLOR_RGB2BGR) if self.is_rgb else self.image


@dataclass
class FrameResult:
    frame: Frame
    detection: Detection
    score: np.ndarray
    """(K, K) float32 score map (of the one head: `run` takes class-agnostic models only)."""
    transform: CropTransform
    latency_ms: float = 0.0
    """Read start to output written."""


def frame_record(r: FrameResult) -> dict[str, Any]:
    """The JSONL line: box in original-frame pixels, score, per-stage and end-to-end milliseconds."""
    rec: dict[str, Any] = {"stream": r.frame.stream, "frame": r.frame.index}
    if r.frame.position_s is not None:  # a video file: where in the video, to match its frames
        rec["position_s"] = r.frame.position_s
    rec["timestamp"] = round(r.frame.timestamp, 6)  # wall clock when it was read
    if r.frame.name is not None:
        rec["image"] = r.frame.name
    rec["width"] = r.transform.src_w
    rec["height"] = r.transform.src_h
    rec.update(detection_record(r.detection))
    rec["ms"] = {s: round(r.frame.ms.get(s, 0.0), 3) for s in STAGES}
    rec["batch"] = r.frame.batch
    rec["latency_ms"] = round(r.latency_ms, 3)
    return rec
