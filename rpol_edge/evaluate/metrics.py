"""Box-localization accuracy: GT-known Loc and MaxBoxAcc under both protocols.

Two MaxBoxAccV2 protocols are in use and they give different numbers, so both
are reported, under different names:

* ``maxboxacc_v2`` -- official wsolevaluation (Choe et al., CVPR 2020): every
  contour's box is tried and the best one counts (multi-contour); for each
  IoU delta in (0.3, 0.5, 0.7) the best threshold is taken separately, then
  the three accuracies are averaged.
* ``maxboxacc_v2_rpol`` -- the RPOL reference protocol: largest contour only;
  for each threshold the three delta accuracies are averaged, then the best
  threshold is taken (one threshold for all deltas). It is never higher than
  the official value: a mean of per-delta maxima bounds the maximum of the
  means, and the best of all contours is at least as good as the largest.

A prediction is correct at a delta when its IoU (inclusive pixels, see
:func:`rpol_edge.boxes.iou_inclusive`) with ANY ground-truth box of the image
is at least delta. The accumulator keeps only integer counters, one per
(delta, threshold), so memory does not grow with the data set, counts are
exact, and shards merge by adding.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import numpy.typing as npt

from rpol_edge.results.boxes import contour_boxes, iou_inclusive, largest_box, threshold_mask, to_uint8_map

__all__ = [
    "DEFAULT_THRESHOLDS",
    "IOU_DELTAS",
    "BoxAccuracy",
    "BoxAccuracyResult",
    "DeltaResult",
    "TopKLoc",
    "TopKLocResult",
    "accuracy_percent",
    "best_ious_per_threshold",
    "correct_matrix",
    "oracle_counts",
    "summarize",
]

DEFAULT_THRESHOLDS: npt.NDArray[np.float64] = np.round(np.arange(1, 100) / 100, 2)
"""Score-map thresholds 0.01, 0.02, ..., 0.99, relative to each map's maximum."""

IOU_DELTAS: tuple[float, ...] = (0.3, 0.5, 0.7)
"""IoU deltas of MaxBoxAccV2; 0.5 alone is the delta of GT-known Loc and V1."""

_V1_DELTA = 0.5


class DeltaResult(TypedDict):
    """Accuracies (percent) at one IoU delta."""

    official: float
    """Multi-contour accuracy at this delta's own best threshold."""
    official_threshold: float
    """That threshold (ties to the smallest)."""
    rpol: float
    """Largest-contour accuracy at the RPOL-protocol ``best_threshold``."""


class BoxAccuracyResult(TypedDict):
    """Summary returned by :meth:`BoxAccuracy.result`; accuracies in percent."""

    n_images: int
    operating_threshold: float
    gt_known_loc: float
    maxboxacc: float
    maxboxacc_v2: float
    maxboxacc_v2_rpol: float
    best_threshold: float
    per_delta: dict[str, DeltaResult]
    oracle_dataset: float
    """The best single threshold for the whole set, chosen with the labels (MaxBoxAcc)."""
    oracle_dataset_threshold: float
    oracle_per_image: float
    """Images for which some threshold of the sweep gives a box with IoU >= 0.5: the most any
    per-image rule can get from these maps."""


def best_ious_per_threshold(
    score_map: npt.NDArray[np.generic],
    gt_boxes: npt.NDArray[np.generic],
    thresholds: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Best IoU with any GT box at each threshold, for both contour modes.

    Returns ``(largest, multi)``, each of shape ``(len(thresholds),)``:
    ``largest[j]`` is the best IoU of the largest contour's box with any GT
    box, ``multi[j]`` the best over every contour's box, so
    ``multi >= largest`` everywhere. Both come from one ``findContours`` call
    per threshold. An image without GT boxes has best IoU 0 everywhere.
    """
    gt = np.asarray(gt_boxes).reshape(-1, 4)
    map_u8 = to_uint8_map(score_map)
    largest = np.zeros(len(thresholds), dtype=np.float64)
    multi = np.zeros(len(thresholds), dtype=np.float64)
    if len(gt) == 0:
        return largest, multi
    for j, t in enumerate(thresholds):
        boxes, index = contour_boxes(threshold_mask(map_u8, float(t)))
        per_box = iou_inclusive(boxes, gt).max(axis=1)
        largest[j] = per_box[index]
        multi[j] = per_box.max()
    return largest, multi


def correct_matrix(
    best_ious: npt.NDArray[np.float64], deltas: tuple[float, ...] = IOU_DELTAS
) -> npt.NDArray[np.int64]:
    """0/1 matrix ``(len(deltas), T)``: whether ``best_ious[j] >= delta``."""
    result: npt.NDArray[np.int64] = (best_ious[None, :] >= np.asarray(deltas)[:, None]).astype(np.int64)
    return result


def oracle_counts(hits: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], int]:
    """From ``hits`` (n_images, T), whether image i's largest-contour box at threshold j has IoU
    >= 0.5: the images each threshold gets right (their maximum is the dataset oracle, MaxBoxAcc)
    and the images that SOME threshold gets right (the per-image oracle: a threshold chosen per
    image with its label)."""
    h = np.asarray(hits, bool)
    h = h.reshape(-1, h.shape[-1]) if h.size else h.reshape(0, max(h.shape[-1:], default=0))
    return h.sum(axis=0, dtype=np.int64), int(h.any(axis=1).sum())


def accuracy_percent(
    correct: npt.NDArray[np.integer] | np.integer | int, n_images: int
) -> npt.NDArray[np.float64]:
    """``100 * correct / n_images`` as float64; all zeros when ``n_images`` is 0."""
    counts = np.asarray(correct, dtype=np.float64)
    if n_images == 0:
        return np.zeros_like(counts)
    result: npt.NDArray[np.float64] = 100.0 * counts / n_images
    return result


def summarize(
    thresholds: npt.NDArray[np.float64],
    largest_correct: npt.NDArray[np.int64],
    multi_correct: npt.NDArray[np.int64],
    operating_correct: int,
    n_images: int,
    operating_threshold: float,
    deltas: tuple[float, ...] = IOU_DELTAS,
    per_image_correct: int = 0,
) -> BoxAccuracyResult:
    """Turn the counters into the reported accuracies.

    ``thresholds`` must be sorted ascending; ``largest_correct`` and
    ``multi_correct`` are counts of shape ``(len(deltas), T)``. Maxima are
    taken over the integer counts, so ties are exact and resolve to the
    smallest threshold (``np.argmax`` returns the first maximum). With no
    image every accuracy is 0.0 and the thresholds are the smallest one.
    ``per_image_correct``: the per-image oracle's count (`oracle_counts`).
    """
    n_deltas = len(deltas)
    v1_row = deltas.index(_V1_DELTA)
    oracle_best = int(np.argmax(largest_correct[v1_row]))
    rpol_sums = largest_correct.sum(axis=0)
    best = int(np.argmax(rpol_sums))
    official_best = np.argmax(multi_correct, axis=1)
    official_counts = multi_correct[np.arange(n_deltas), official_best]
    denominator = n_deltas * n_images
    per_delta: dict[str, DeltaResult] = {}
    for i, delta in enumerate(deltas):
        per_delta[f"{delta:g}"] = DeltaResult(
            official=float(accuracy_percent(official_counts[i], n_images)),
            official_threshold=float(thresholds[official_best[i]]),
            rpol=float(accuracy_percent(largest_correct[i, best], n_images)),
        )
    return BoxAccuracyResult(
        n_images=n_images,
        operating_threshold=operating_threshold,
        gt_known_loc=float(accuracy_percent(operating_correct, n_images)),
        maxboxacc=float(accuracy_percent(largest_correct[v1_row].max(), n_images)),
        maxboxacc_v2=float(accuracy_percent(official_counts.sum(), denominator)),
        maxboxacc_v2_rpol=float(accuracy_percent(rpol_sums[best], denominator)),
        best_threshold=float(thresholds[best]),
        per_delta=per_delta,
        oracle_dataset=float(accuracy_percent(largest_correct[v1_row, oracle_best], n_images)),
        oracle_dataset_threshold=float(thresholds[oracle_best]),
        oracle_per_image=float(accuracy_percent(per_image_correct, n_images)),
    )


class BoxAccuracy:
    """Streaming accumulator of box accuracy over images.

    ``thresholds`` are relative score-map thresholds in ``[0, 1]``; they are
    sorted and de-duplicated, which makes "ties go to the smallest threshold"
    well defined. ``operating_threshold`` is the one threshold used for
    GT-known Loc (largest contour, delta 0.5); it need not be one of
    ``thresholds``.

    Per image the work is one ``findContours`` per threshold; the state is
    ``2 * 3 * len(thresholds)`` integers whatever the number of images.
    """

    def __init__(
        self,
        thresholds: npt.ArrayLike = DEFAULT_THRESHOLDS,
        operating_threshold: float = 0.5,
    ) -> None:
        values = np.unique(np.asarray(thresholds, dtype=np.float64))
        if values.size == 0:
            raise ValueError("thresholds must not be empty")
        if not np.all((values >= 0.0) & (values <= 1.0)):
            raise ValueError("thresholds must lie in [0, 1]")
        if not 0.0 <= operating_threshold <= 1.0:
            raise ValueError("operating_threshold must lie in [0, 1]")
        self.thresholds: npt.NDArray[np.float64] = values
        self.operating_threshold = float(operating_threshold)
        self.deltas: tuple[float, ...] = IOU_DELTAS
        self.n_images = 0
        self.largest_correct: npt.NDArray[np.int64] = np.zeros(
            (len(self.deltas), values.size), dtype=np.int64
        )
        self.multi_correct: npt.NDArray[np.int64] = np.zeros_like(self.largest_correct)
        self.operating_correct = 0
        self.per_image_correct = 0

    def add(
        self,
        score_map: npt.NDArray[np.generic],
        gt_boxes: npt.NDArray[np.generic],
        mask: npt.NDArray[np.generic] | None = None,
    ) -> tuple[npt.NDArray[np.float64], float]:
        """Count one image; returns its largest-contour IoU per threshold and its IoU at the
        operating point, so Top-k Loc (:meth:`TopKLoc.add_ious`) reuses them instead of
        finding the contours again.

        ``score_map`` is ``(H, W)`` in ``[0, 1]`` (the network input size,
        e.g. ``K x K``); ``gt_boxes`` is ``(M, 4)`` (or ``(4,)``) of
        ``[x0, y0, x1, y1]`` inclusive pixel coordinates of the same map.
        ``mask``, when given, is the model's own operating-point mask: GT-known
        Loc then scores its largest contour (what a user of the model sees)
        instead of ``operating_threshold`` applied to ``score_map``.
        """
        largest, multi = best_ious_per_threshold(score_map, gt_boxes, self.thresholds)
        self.largest_correct += correct_matrix(largest, self.deltas)
        self.multi_correct += correct_matrix(multi, self.deltas)
        self.per_image_correct += oracle_counts(largest[None] >= _V1_DELTA)[1]
        if mask is None:
            iou = self._operating_iou(score_map, gt_boxes, largest)
        else:
            gt = np.asarray(gt_boxes).reshape(-1, 4)
            iou = float(iou_inclusive(largest_box(mask), gt).max()) if len(gt) else 0.0
        self.operating_correct += int(iou >= _V1_DELTA)
        self.n_images += 1
        return largest, iou

    def merge(self, other: BoxAccuracy) -> None:
        """Add another accumulator's counts (e.g. a shard) into this one.

        Both must use the same thresholds and operating threshold, otherwise
        the counters do not describe the same quantities.
        """
        if (
            not np.array_equal(self.thresholds, other.thresholds)
            or self.operating_threshold != other.operating_threshold
        ):
            raise ValueError("cannot merge BoxAccuracy objects with different thresholds")
        self.largest_correct += other.largest_correct
        self.multi_correct += other.multi_correct
        self.operating_correct += other.operating_correct
        self.per_image_correct += other.per_image_correct
        self.n_images += other.n_images

    def curves(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Accuracy (percent) per delta and threshold: ``(largest, multi)``, each ``(3, T)``."""
        return (
            accuracy_percent(self.largest_correct, self.n_images),
            accuracy_percent(self.multi_correct, self.n_images),
        )

    def result(self) -> BoxAccuracyResult:
        """The accuracies so far; all zeros (never NaN) before the first image."""
        return summarize(
            self.thresholds,
            self.largest_correct,
            self.multi_correct,
            self.operating_correct,
            self.n_images,
            self.operating_threshold,
            self.deltas,
            self.per_image_correct,
        )

    def _operating_iou(
        self,
        score_map: npt.NDArray[np.generic],
        gt_boxes: npt.NDArray[np.generic],
        largest: npt.NDArray[np.float64],
    ) -> float:
        matches = np.flatnonzero(self.thresholds == self.operating_threshold)
        if matches.size:
            return float(largest[matches[0]])
        only = np.array([self.operating_threshold], dtype=np.float64)
        return float(best_ious_per_threshold(score_map, gt_boxes, only)[0][0])


class TopKLocResult(TypedDict):
    """Top-k Loc (percent): box correct (largest contour, IoU >= 0.5) AND the true class in the top k."""

    n_images: int
    top1_cls: float
    top5_cls: float
    top1_loc: float
    """At the operating threshold."""
    top5_loc: float
    top1_loc_best: float
    """At the threshold that maximizes it (``top1_loc_best_threshold``)."""
    top1_loc_best_threshold: float
    top5_loc_best: float
    top5_loc_best_threshold: float


class TopKLoc:
    """Streaming Top-1 / Top-5 Loc (Song et al., ICCV 2023, Table 8; wsolevaluation's definition): an
    image counts when its ground-truth class is among the classifier's top k AND the largest
    contour's box has IoU >= 0.5 with a ground-truth box. Integer counters per threshold, like
    :class:`BoxAccuracy`."""

    def __init__(self, thresholds: npt.ArrayLike = DEFAULT_THRESHOLDS) -> None:
        """``thresholds``: those of the BoxAccuracy whose IoUs :meth:`add_ious` receives."""
        self.thresholds: npt.NDArray[np.float64] = np.unique(np.asarray(thresholds, dtype=np.float64))
        self.ks = (1, 5)
        self.correct: npt.NDArray[np.int64] = np.zeros((len(self.ks), self.thresholds.size), np.int64)
        self.operating: npt.NDArray[np.int64] = np.zeros(len(self.ks), np.int64)
        self.cls_correct: npt.NDArray[np.int64] = np.zeros(len(self.ks), np.int64)
        self.n_images = 0

    def add_ious(self, largest_ious: npt.NDArray[np.float64], operating_iou: float, rank: int | None) -> None:
        """One image from its best IoUs per threshold (largest contour), its IoU at the operating
        threshold, and the 0-based rank of the true class in the classifier's output (None: not in it)."""
        in_top = np.array([rank is not None and rank < k for k in self.ks])
        loc_ok = np.asarray(largest_ious) >= _V1_DELTA
        self.correct += (in_top[:, None] & loc_ok[None, :]).astype(np.int64)
        self.operating += (in_top & (operating_iou >= _V1_DELTA)).astype(np.int64)
        self.cls_correct += in_top.astype(np.int64)
        self.n_images += 1

    def result(self) -> TopKLocResult:
        n = self.n_images
        best = np.argmax(self.correct, axis=1)
        pct = accuracy_percent
        return TopKLocResult(
            n_images=n,
            top1_cls=float(pct(self.cls_correct[0], n)),
            top5_cls=float(pct(self.cls_correct[1], n)),
            top1_loc=float(pct(self.operating[0], n)),
            top5_loc=float(pct(self.operating[1], n)),
            top1_loc_best=float(pct(self.correct[0, best[0]], n)),
            top1_loc_best_threshold=float(self.thresholds[best[0]]),
            top5_loc_best=float(pct(self.correct[1, best[1]], n)),
            top5_loc_best_threshold=float(self.thresholds[best[1]]),
        )
