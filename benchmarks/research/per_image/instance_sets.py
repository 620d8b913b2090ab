"""All boxes (one per object) with scores that rank across images: the persistence watershed's
instances (the ``peaks`` rule, boxed at the sign boundary of each basin or at the level each
instance's own criterion picks) and every component at one relative level."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from benchmarks.research.instance_rules import label_instances
from benchmarks.research.per_image.levels import box_criterion
from benchmarks.research.per_image.maps import EMPTY, WORK, F, components, scale_box, stat_box, upsample
from rpol_edge.results.boxes import iou_inclusive
from rpol_edge.results.instances import InstanceRule, field_box, map_instances

PEAKS_PROMINENCE = 0.5
"""The persistence watershed's prominence (share of the map's maximum) for the ``peaks`` top box:
CV picked 0.5 on 4 of 5 folds (0.4 on one); 0.4-0.6 all within 1 point on raccoon photos."""


def peaks_labels(g: F, rel: float, prominence: float) -> npt.NDArray[np.int32]:
    """Persistence-watershed instances of the cells above rel x max (-1 background)."""
    return label_instances(g, InstanceRule("peaks", rel=rel, prominence=prominence))


def instance_box(g: F, cells: np.ndarray, size: int) -> np.ndarray | None:
    """The instance's box where its upsampled response is above the level (``g``: the response
    minus the level); the other cells count with -|g| (the reference rule's instance box)."""
    return field_box(np.where(cells, g, -np.abs(g)), cells, size)


def instance_box_adaptive(g: F, labels: np.ndarray, k: int, size: int, crit: str) -> np.ndarray | None:
    """The box of instance k at the level its own box criterion picks: the field is g on the
    instance's cells and 0 elsewhere (other instances and background count as background);
    candidate boxes: the component holding the instance's peak at every relative level of its
    own peak; criterion on that field."""
    return box_criterion(np.where(labels == k, g, 0.0), size, crit, which="peak", sign=False)


def all_boxes_adaptive(
    g: F,
    top: np.ndarray | None,
    size: int,
    peak: float,
    crit: str = "bcv",
    rel: float = 0.1,
    prominence: float = 0.3,
    keep: float = 0.5,
    iou_max: float = 0.5,
    per_instance: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The top box first, then one box per instance of the persistence watershed (ALL_BOXES's
    constants by default) whose box overlaps the boxes so far less than ``iou_max``. Scores: the
    instance's peak height times ``peak`` (a raw response: comparable across images); the top
    box gets the image's maximum, so it stays first and distinct peaks never tie."""
    if top is None:
        return EMPTY
    gmax = float(g.max())
    if gmax <= 0:
        return top[None], np.array([0.0])
    labels = peaks_labels(g, rel, prominence)
    n = int(labels.max()) + 1
    heights = np.array([float(g[labels == k].max()) for k in range(n)])
    means = np.array([float(g[labels == k].mean()) for k in range(n)])
    boxes, scores = [top], [gmax * peak]
    order = [k for k in np.argsort(-heights, kind="stable") if means[k] >= keep * means.max()]
    for k in order[:16]:
        if per_instance:
            b = instance_box_adaptive(g, labels, k, size, crit)
        else:
            b = instance_box(g - rel * gmax, labels == k, size)
        if b is None:
            continue
        if max(iou_inclusive(b, np.stack(boxes))[0]) >= iou_max:
            continue
        boxes.append(b)
        scores.append(min(heights[k], gmax * (1 - 1e-6)) * peak)
    return np.stack(boxes), np.array(scores)


def _rank_value(v: np.ndarray, rank: str) -> float:
    return float({"mean": v.mean(), "peak": v.max(), "meanxpeak": v.mean() * v.max(), "mass": v.sum()}[rank])


def watershed(
    a: F, size: int, prominence: float, rank: str = "mean", rel: float = 0.0, keep: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Instances of the persistence watershed over the cells above ``rel`` x max; each box drawn
    where its own upsampled response is above the level (the sign mask's boundary for rel = 0: the
    method's own extent, with touching objects parted at their saddle). Ranked by the instance's
    mean raw response (``mean``), its peak height (``peak``), their product or its sum (``mass``);
    scores are raw responses (cosines), comparable across images, and distinct instances get
    distinct scores. ``keep``: drop instances below keep x the best."""
    a = np.asarray(a, np.float64)
    if not np.isfinite(a.max()) or a.max() <= 0:
        return EMPTY
    labels = label_instances(a, InstanceRule("peaks", rel=rel, prominence=prominence))
    rows = sorted(
        ((_rank_value(a[labels == k], rank), k) for k in range(int(labels.max()) + 1)), key=lambda x: -x[0]
    )
    g = a - rel * float(a.max())
    best = rows[0][0]
    boxes, scores = [], []
    for r, k in rows:
        if r < keep * best:
            break
        b = instance_box(g, labels == k, size)
        if b is not None:
            boxes.append(b)
            scores.append(r)
    if not boxes:
        return EMPTY
    return np.stack(boxes), np.array(scores)


def level_all(g: F, size: int, rel: float, work: int = WORK) -> tuple[np.ndarray, np.ndarray]:
    """Every component above rel x max, one box each, ranked by its peak height (the one holding
    the map's maximum first)."""
    s = upsample(g, work)
    top = float(s.max())
    if top <= 0:
        return EMPTY
    lab, st = components(s > rel * top)
    n = len(st) - 1
    if n <= 0:
        return EMPTY
    peaks = np.zeros(n + 1)
    np.maximum.at(peaks, lab.reshape(-1), s.reshape(-1))
    order = 1 + np.argsort(-peaks[1:], kind="stable")
    boxes = np.stack([scale_box(stat_box(st[k], work), work, size) for k in order])
    return boxes, peaks[order]


def peaks_boxes(
    score: npt.ArrayLike, mask: npt.ArrayLike, peak: float, cells: int, prominence: float = PEAKS_PROMINENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Named option ``peaks``: every instance of the persistence watershed over the sign
    foreground, each boxed at the sign boundary of its own basin, best first. Inputs: the graph's
    outputs (score map K x K, sign mask K x K, peak = max raw response) and the grid size.
    Score = the instance's mean normalized grid value x peak = its mean raw response (a cosine):
    comparable across frames; two instances tie only if their means are equal."""
    rule = InstanceRule("peaks", rel=0.0, keep=0.0, prominence=prominence)
    boxes, scores = map_instances(np.asarray(score), np.asarray(mask), cells, rule, "grid")
    return boxes, scores * max(float(peak), 0.0)
