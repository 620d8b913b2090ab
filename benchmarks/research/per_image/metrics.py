"""Scores of the boxes: top-box GT-known Loc, per-object AP50 / recall / precision at IoU 0.5
(one-to-one greedy matching), ties, the oracles of a map, and percentile intervals."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.research.per_image.data import THRESHOLDS, field
from benchmarks.research.per_image.maps import upsample
from rpol_edge.evaluate.detection_metrics import average_precision, match_image
from rpol_edge.results.boxes import contour_boxes, iou_inclusive, threshold_mask, to_uint8_map


def top_hits(tops: list[np.ndarray | None], gts: list[np.ndarray]) -> np.ndarray:
    """Per image: 1 where the top box has IoU >= 0.5 with any GT box."""
    return np.array(
        [
            int(b is not None and iou_inclusive(np.asarray(b), g).max() >= 0.5)
            for b, g in zip(tops, gts, strict=True)
        ]
    )


def det_parts(
    alls: list[dict[str, Any]], gts: list[np.ndarray], key: str
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per image: the scores, the true-positive flags and the GT count of one all-boxes output."""
    scores, tps, ngt = [], [], []
    for x, g in zip(alls, gts, strict=True):
        boxes, sc = x[key]
        tps.append(match_image(boxes, sc, g))
        scores.append(np.asarray(sc, np.float64))
        ngt.append(len(g))
    return scores, tps, np.array(ngt)


def det_metrics(
    scores: list[np.ndarray], tps: list[np.ndarray], ngt: np.ndarray, idx: np.ndarray
) -> dict[str, float]:
    """AP50, recall and precision (in %) of the images ``idx`` (a bootstrap draw may repeat one)."""
    s = np.concatenate([scores[i] for i in idx])
    t = np.concatenate([tps[i] for i in idx])
    n = int(ngt[idx].sum())
    return {
        "ap50": 100 * average_precision(s, t, n),
        "recall50": 100 * t.sum() / max(n, 1),
        "precision50": 100 * t.sum() / max(len(s), 1),
    }


def ties(alls: list[dict[str, Any]], key: str) -> int:
    """Images where two boxes share a score."""
    return int(sum(len(x[key][1]) != len(np.unique(x[key][1])) for x in alls))


def oracle_hits(d: dict[str, Any], kind: str, size: int) -> np.ndarray:
    """(N, len(THRESHOLDS)) hit of the largest contour of the uint8 score map at each threshold."""
    out = np.zeros((len(d["raw"]), len(THRESHOLDS)), bool)
    for i in range(len(d["raw"])):
        u8 = to_uint8_map(np.clip(upsample(field(d, i, kind), size), 0, 1))
        for j, t in enumerate(THRESHOLDS):
            boxes, k = contour_boxes(threshold_mask(u8, float(t)))
            out[i, j] = iou_inclusive(boxes[k], d["boxes"][i]).max() >= 0.5
    return out


def ci(x: np.ndarray) -> list[float]:
    """The 95 % percentile interval, rounded to 0.1."""
    return [round(float(v), 1) for v in np.percentile(x, [2.5, 97.5])]
