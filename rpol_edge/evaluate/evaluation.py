"""Localization accuracy of any runtime on a labelled split, both protocols, by name."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.backbones.classifier import Classifier, true_class
from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.files import write_bytes_atomic
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.data import DatasetError, Sample, read_dataset
from rpol_edge.data.loader import iterate_batches
from rpol_edge.evaluate.detection_metrics import DetectionCounts
from rpol_edge.evaluate.metrics import BoxAccuracy, TopKLoc
from rpol_edge.fitting.distributed import (
    SINGLE,
    DistContext,
    all_reduce_array,
    all_reduce_ints,
    gather_examples,
    shard,
)
from rpol_edge.results.detection import box_mode, crop_boxes, peak_of
from rpol_edge.runtimes import Runtime, infer_all

Progress = Callable[[int, int], None]


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
    classifier: Classifier | None = None,
    class_map: dict[str, int] | None = None,
    ctx: DistContext = SINGLE,
    boxes: str | None = None,
) -> EvalResult:
    """Run ``runtime`` (already entered) over the split and score it. GT boxes go through the same
    resize/crop as the images, so both live in the K x K network frame.

    In a torchrun job each rank scores its contiguous shard and the integer counters are summed,
    so every rank returns the metrics of the whole split (``skipped`` then holds examples from every
    rank; ``metrics["n_skipped"]`` the total). ``progress`` counts this rank's shard.

    Next to the paper's metrics (one box per image), ``boxes`` (``largest``, ``all``, None: the
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
    topk = TopKLoc(acc.thresholds) if classifier else None  # it scores the IoUs acc computes
    truth: dict[str, int] = {}
    if classifier:
        truth = {s.image_id: true_class(s.label, class_map or {}, s.image_id) for s in samples}
    skipped: list[tuple[Sample, str]] = []
    done = 0
    mine = shard(samples, ctx, unit=batch_size)
    for batch in iterate_batches(mine, meta.resize_size, meta.input_size, batch_size, workers):
        skipped.extend(batch.skipped)
        out = infer_all(runtime, batch.frames)
        ranked = classifier.topk(batch.frames, 5) if classifier and len(batch.frames) else None
        for i, (sample, t) in enumerate(zip(batch.samples, batch.transforms, strict=True)):
            head = head_of(sample, rows)
            score = out.score[i, head]
            # GT-known Loc scores the model's own mask: the operating point a user of it gets.
            # Top-k Loc shares those IoUs, so both metrics describe the same operating point.
            gt = t.boxes_to_input(sample.boxes)
            largest, op_iou = acc.add(score, gt, out.mask[i, head])
            found.add(*crop_boxes(score, out.mask[i, head], 0.0, mode, cells, peak_of(out, i, head)), gt)
            if topk is not None and ranked is not None:
                hit = np.flatnonzero(ranked[i] == truth[sample.image_id])
                topk.add_ious(largest, op_iou, int(hit[0]) if hit.size else None)
            if save_maps is not None:
                save_map(save_maps, sample.image_id, score)
        done += len(batch.frames) + len(batch.skipped)
        if progress:
            progress(done, len(mine))
    n_skipped = reduce_accuracy(acc, len(skipped), ctx)
    parts = gather_examples([found], ctx)  # scores and hits of every rank, merged in rank order
    found = parts[0]
    for part in parts[1:]:
        found.merge(part)
    skipped = gather_examples(skipped, ctx)
    metrics: dict[str, Any] = dict(acc.result())
    metrics["n_skipped"] = n_skipped
    metrics["n_unlabeled"] = len(unlabeled)
    metrics["operating_threshold"] = meta.threshold
    metrics["operating_point"] = meta.operating.label()
    det = found.result()
    metrics["box_mode"] = mode
    metrics["ap50"] = det["ap50"]
    metrics["recall50"] = det["recall50"]
    metrics["precision50"] = det["precision50"]
    metrics["n_gt_boxes"] = det["n_gt"]
    metrics["n_boxes"] = det["n_detections"]
    if topk is not None and classifier is not None:
        metrics["classifier"] = classifier.name
        metrics.update(topk.result())
    return EvalResult(metrics, skipped, runtime.description)


def reduce_accuracy(acc: BoxAccuracy, n_skipped: int, ctx: DistContext) -> int:
    """Sum the shards' integer counters into ``acc`` (in place); returns the total skip count."""
    acc.largest_correct = all_reduce_array(acc.largest_correct, ctx)
    acc.multi_correct = all_reduce_array(acc.multi_correct, ctx)
    acc.operating_correct, acc.n_images, n_skipped = all_reduce_ints(
        [acc.operating_correct, acc.n_images, n_skipped], ctx
    )
    return n_skipped


def calibrate(model_path: Path, best_threshold: float) -> ModelMeta:
    """Write the best threshold into a fitted model file as its operating point (``fixed``: a
    threshold chosen with labels replaces any label-free rule)."""
    artifact = ModelArtifact.load(model_path)
    artifact.meta = artifact.meta.replace(
        threshold=float(best_threshold), operating_point="fixed", fraction=0.0
    )
    artifact.meta.validate(str(model_path))
    artifact.save(model_path)
    return artifact.meta
