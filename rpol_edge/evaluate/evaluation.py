"""Localization accuracy of any runtime on a labelled split, both protocols, by name."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.files import write_bytes_atomic
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.data import DatasetError, Sample, read_dataset
from rpol_edge.data.loader import iterate_batches
from rpol_edge.evaluate.detection_metrics import DetectionCounts, DetectionResult
from rpol_edge.evaluate.metrics import BoxAccuracy, TopKLoc
from rpol_edge.results.detection import box_mode, crop_boxes, peak_of
from rpol_edge.runtimes import Runtime, infer_all

Progress = Callable[[int, int], None]

Classify = Callable[[np.ndarray, Sequence[Sample]], list[int | None]]
"""Top-k Loc's classifier: for a batch of K x K frames and their samples, the rank (0..4) of each
sample's true class among the classifier's top 5, None when it is not there."""


def _whole(items: Sequence[Sample], unit: int) -> Sequence[Sample]:
    return items


@dataclass(frozen=True)
class Reduction:
    """How the ranks of a distributed job share an evaluation: this rank's shard of the samples
    (cut in whole ``unit``s), sums of integer counters and the gathering of examples over ranks.
    The default is one process; the CLI builds a job's from rpol_edge/fitting/distributed.py."""

    shard: Callable[[Sequence[Sample], int], Sequence[Sample]] = _whole
    sum_array: Callable[[np.ndarray], np.ndarray] = np.copy
    gather: Callable[[list[Any]], list[Any]] = list


ONE_PROCESS = Reduction()


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    skipped: list[tuple[Sample, str]] = field(default_factory=list)
    runtime: str = ""


def head_rows(meta: ModelMeta) -> dict[int, int]:
    """Class label -> w* row of a class-wise model (GT-known localization); empty when class-agnostic."""
    labels = [int(c) for c in meta.extra.get("classes", "").split(",") if c] if meta.n_heads > 1 else []
    return {label: row for row, label in enumerate(labels)}


def head_of(sample: Sample, rows: dict[int, int]) -> int:
    """Which head localizes this image: 0, or its class's row."""
    if not rows:
        return 0
    if sample.label not in rows:
        raise DatasetError(f"{sample.image_id}: class-wise model has no head for label {sample.label}")
    return rows[sample.label]


def save_map(folder: Path, image_id: str, score: np.ndarray) -> None:
    path = folder / (image_id.replace("/", "__") + ".npy")
    buf = io.BytesIO()
    np.save(buf, score.astype(np.float32))
    write_bytes_atomic(path, buf.getvalue())


def evaluate(
    runtime: Runtime,
    data: str,
    root: Path,
    split: str,
    save_maps: Path | None = None,
    batch_size: int = 8,
    workers: int = 2,
    progress: Progress | None = None,
    classify: Classify | None = None,
    reduction: Reduction = ONE_PROCESS,
    boxes: str | None = None,
) -> EvalResult:
    """Run ``runtime`` (already entered) over the split and score it. GT boxes go through the same
    resize/crop as the images, so both live in the K x K network frame.

    In a torchrun job (``reduction``) each rank scores its contiguous shard and the integer
    counters are summed, so every rank returns the metrics of the whole split (``skipped`` then
    holds examples from every rank; ``metrics["n_skipped"]`` the total). ``progress`` counts this
    rank's shard. ``classify``: Top-1/Top-5 Loc with it (`Classify`).

    Next to the paper's metrics (one box per image), ``boxes`` (one of `BOX_MODES`, None: the
    model's recorded mode) gives the boxes that AP50, recall and precision at IoU 0.5 score
    against every ground-truth box (rpol_edge/evaluate/detection_metrics.py)."""
    meta = runtime.meta
    mode, cells = box_mode(meta, boxes)
    found = DetectionCounts()
    samples = read_dataset(data, root, split)
    unlabeled = [s for s in samples if not len(s.boxes)]
    samples = [s for s in samples if len(s.boxes)]
    if not samples:
        raise DatasetError(f"{data} split {split!r} under {root} has no boxes to evaluate against")
    acc = BoxAccuracy(operating_threshold=meta.threshold)
    rows = head_rows(meta)
    topk = TopKLoc(acc.thresholds) if classify else None  # it scores the IoUs acc computes
    skipped: list[tuple[Sample, str]] = []
    done = 0
    mine = reduction.shard(samples, batch_size)
    for batch in iterate_batches(mine, meta.resize_size, meta.input_size, batch_size, workers):
        skipped.extend(batch.skipped)
        out = infer_all(runtime, batch.frames)
        ranks = classify(batch.frames, batch.samples) if classify and len(batch.frames) else None
        for i, (sample, t) in enumerate(zip(batch.samples, batch.transforms, strict=True)):
            head = head_of(sample, rows)
            score = out.score[i, head]
            # GT-known Loc scores the model's own mask: the operating point a user of it gets.
            # Top-k Loc shares those IoUs, so both metrics describe the same operating point.
            gt = t.boxes_to_input(sample.boxes)
            largest, op_iou = acc.add(score, gt, out.mask[i, head])
            found.add(*crop_boxes(score, out.mask[i, head], 0.0, mode, cells, peak_of(out, i, head)), gt)
            if topk is not None and ranks is not None:
                topk.add_ious(largest, op_iou, ranks[i])
            if save_maps is not None:
                save_map(save_maps, sample.image_id, score)
        done += len(batch.frames) + len(batch.skipped)
        if progress:
            progress(done, len(mine))
    n_skipped = reduce_accuracy(acc, len(skipped), reduction)
    parts = reduction.gather([found])  # scores and hits of every rank, merged in rank order
    for part in parts[1:]:
        parts[0].merge(part)
    metrics: dict[str, Any] = {**acc.result(), "n_skipped": n_skipped, "n_unlabeled": len(unlabeled)}
    metrics.update(operating_threshold=meta.threshold, operating_point=meta.operating.label())
    metrics.update(detection_metrics(parts[0].result(), mode))
    if topk is not None:
        metrics.update(topk.result())
    return EvalResult(metrics, reduction.gather(skipped), runtime.description)


def detection_metrics(det: DetectionResult, mode: str) -> dict[str, Any]:
    """The per-object keys of the eval record, from `DetectionCounts.result`."""
    return {
        "box_mode": mode,
        "top_box_loc": det["top_box_loc"],
        "ap50": det["ap50"],
        "recall50": det["recall50"],
        "precision50": det["precision50"],
        "n_gt_boxes": det["n_gt"],
        "n_boxes": det["n_detections"],
    }


def reduce_accuracy(acc: BoxAccuracy, n_skipped: int, reduction: Reduction) -> int:
    """Sum the shards' integer counters into ``acc`` (in place); returns the total skip count."""
    acc.largest_correct = reduction.sum_array(acc.largest_correct)
    acc.multi_correct = reduction.sum_array(acc.multi_correct)
    ints = np.array([acc.operating_correct, acc.per_image_correct, acc.n_images, n_skipped], np.int64)
    acc.operating_correct, acc.per_image_correct, acc.n_images, n_skipped = (
        int(x) for x in reduction.sum_array(ints)
    )
    return n_skipped


def calibrate(model_path: Path, best_threshold: float) -> ModelMeta:
    """Write the best threshold into a fitted model file as its operating point (``fixed``: a
    threshold chosen with labels replaces any label-free rule). A ``scene`` model keeps its rule
    and takes the threshold as its level: its map is the evidence against its scene."""
    artifact = ModelArtifact.load(model_path)
    if artifact.meta.operating_point == "zscore":
        raise ValueError(
            f"{model_path}: a zscore model's level is in standard deviations, not a share of the map's "
            "maximum: fit it again with zscore_level= instead of calibrating"
        )
    rule = "scene" if artifact.meta.operating_point == "scene" else "fixed"
    artifact.meta = artifact.meta.replace(threshold=float(best_threshold), operating_point=rule, fraction=0.0)
    artifact.meta.validate(str(model_path))
    artifact.save(model_path)
    return artifact.meta
