"""Per-object detection metrics: class-agnostic AP50, recall and precision at IoU 0.5.

GT-known Loc asks one question per image (is the top box on some animal?); these count every
ground-truth box, so an image with three animals and one box scores one hit out of three.

* Matching, per image: detections in descending score order (ties keep the given order); each takes
  the unmatched ground-truth box it overlaps most, if that IoU is at least ``iou_threshold``
  (a true positive), else it is a false positive. One-to-one: a ground-truth box is matched at
  most once, so a duplicate box on an already found animal counts against precision.
* AP: the detections of all images pooled and sorted by score, precision made monotone from the
  right, integrated over every recall step (PASCAL VOC 2010+ all-point interpolation), over every
  ground-truth box. Every ``difficult`` flag is ignored: all boxes count.
* Recall and precision: of every box returned (no score cut), TP / ground-truth boxes and
  TP / detections.

IoU is the inclusive-pixel one of :func:`rpol_edge.results.boxes.iou_inclusive`, as everywhere else.
Pure numpy; an accumulator with integer counts and a score list, so shards merge by concatenation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np
import numpy.typing as npt

from rpol_edge.results.boxes import iou_inclusive

__all__ = ["DetectionCounts", "DetectionResult", "average_precision", "match_image"]


def match_image(
    boxes: npt.ArrayLike, scores: npt.ArrayLike, gt: npt.ArrayLike, iou_threshold: float = 0.5
) -> npt.NDArray[np.bool_]:
    """True-positive flag of each detection (in the given order), greedy one-to-one by score."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    s = np.asarray(scores, np.float64).reshape(-1)
    g = np.asarray(gt, np.float64).reshape(-1, 4)
    if len(b) != len(s):
        raise ValueError(f"{len(b)} boxes but {len(s)} scores")
    tp = np.zeros(len(b), dtype=bool)
    if len(b) == 0 or len(g) == 0:
        return tp
    iou = iou_inclusive(b, g)
    free = np.ones(len(g), dtype=bool)
    for i in np.argsort(-s, kind="stable"):
        cand = np.where(free, iou[i], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            tp[i] = True
            free[j] = False
    return tp


def average_precision(scores: npt.ArrayLike, tp: npt.ArrayLike, n_gt: int) -> float:
    """All-point interpolated AP (0..1) of pooled detections; 0 without ground truth or detections."""
    s = np.asarray(scores, np.float64).reshape(-1)
    hit = np.asarray(tp, bool).reshape(-1)
    if n_gt <= 0 or len(s) == 0:
        return 0.0
    order = np.argsort(-s, kind="stable")
    cum_tp = np.cumsum(hit[order])
    recall = cum_tp / n_gt
    precision = cum_tp / np.arange(1, len(s) + 1)
    # Monotone envelope from the right, then the area under the step curve at each recall change.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


class DetectionResult(TypedDict):
    """Percentages over every ground-truth box (AP50, recall) and every detection (precision)."""

    ap50: float
    recall50: float
    precision50: float
    n_gt: int
    n_detections: int
    true_positives: int
    n_images: int
    top_box_loc: float
    """Images whose first (top) box has IoU >= the threshold with some ground-truth box: GT-known
    Loc of the box mode's top box."""


@dataclass
class DetectionCounts:
    """Accumulates detections of many images; ``result()`` gives AP50, recall and precision."""

    iou_threshold: float = 0.5
    scores: list[float] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)
    n_gt: int = 0
    n_images: int = 0
    top_hits: int = 0

    def add(self, boxes: npt.ArrayLike, scores: npt.ArrayLike, gt: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """One image: its detections (k, 4) with scores (k,), its ground-truth boxes (m, 4)."""
        tp = match_image(boxes, scores, gt, self.iou_threshold)
        self.scores.extend(float(x) for x in np.asarray(scores, np.float64).reshape(-1))
        self.hits.extend(bool(x) for x in tp)
        g = np.asarray(gt).reshape(-1, 4)
        top = np.asarray(boxes).reshape(-1, 4)[:1]
        self.top_hits += int(
            len(top) > 0 and len(g) > 0 and iou_inclusive(top[0], g).max() >= self.iou_threshold
        )
        self.n_gt += len(g)
        self.n_images += 1
        return tp

    def merge(self, other: DetectionCounts) -> None:
        if other.iou_threshold != self.iou_threshold:
            raise ValueError("cannot merge counts taken at different IoU thresholds")
        self.scores.extend(other.scores)
        self.hits.extend(other.hits)
        self.n_gt += other.n_gt
        self.n_images += other.n_images
        self.top_hits += other.top_hits

    def result(self) -> DetectionResult:
        tp = int(sum(self.hits))
        n_det = len(self.scores)
        return {
            "ap50": 100.0 * average_precision(self.scores, self.hits, self.n_gt),
            "recall50": 100.0 * tp / self.n_gt if self.n_gt else 0.0,
            "precision50": 100.0 * tp / n_det if n_det else 0.0,
            "n_gt": self.n_gt,
            "n_detections": n_det,
            "true_positives": tp,
            "n_images": self.n_images,
            "top_box_loc": 100.0 * self.top_hits / self.n_images if self.n_images else 0.0,
        }
