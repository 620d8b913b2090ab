"""`rpol-edge eval`, `compare` and `demo`: accuracy on a labelled split, parity between two
model files, and the whole method on the bundled sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rpol_edge.cli.console import err, out, report_skips
from rpol_edge.cli.errors import cli_errors
from rpol_edge.cli.metrics_table import TOPK_KEYS, metrics_table
from rpol_edge.cli.options import (
    RUNTIME_CHOICES,
    BatchSize,
    Boxes,
    CudaGraph,
    Data,
    Device,
    ModelFile,
    Root,
    RuntimeOpt,
    Split,
    Weights,
    Workers,
)
from rpol_edge.cli.paths import check_writable
from rpol_edge.cli.progress import progress_bar, rank_progress
from rpol_edge.core.extras import require_torch

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from rpol_edge.backbones.classifier import Classifier
    from rpol_edge.data import Sample
    from rpol_edge.evaluate.evaluation import Classify, Reduction
    from rpol_edge.fitting.distributed import DistContext

ORACLE_KEYS = ("oracle_dataset", "oracle_dataset_threshold", "oracle_per_image")
"""Beside the label-free result (gt_known_loc): what the same maps give with thresholds chosen with
the labels, one for the whole set (MaxBoxAcc) and one per image."""

DETECTION_KEYS = ("box_mode", "top_box_loc", "ap50", "recall50", "precision50")
"""Per-object rows of the eval table (every ground-truth box counts), after the paper's metrics."""


def job_reduction(ctx: DistContext) -> Reduction:
    """`evaluate`'s reduction over the ranks of a torchrun job (one process outside one)."""
    from rpol_edge.evaluate.evaluation import Reduction
    from rpol_edge.fitting.distributed import all_reduce_array, gather_examples, shard

    return Reduction(
        shard=lambda items, unit: shard(items, ctx, unit=unit),
        sum_array=lambda a: all_reduce_array(a, ctx),
        gather=lambda items: gather_examples(items, ctx),
    )


def topk_classify(classifier: Classifier, class_map: dict[str, int]) -> Classify:
    """`evaluate`'s Top-k Loc classifier: the rank of each sample's true class in its top 5."""
    import numpy as np  # noqa: F811 (the annotations' name, imported for use here)

    from rpol_edge.backbones.classifier import true_class

    def classify(frames: np.ndarray, samples: Sequence[Sample]) -> list[int | None]:
        ranked = classifier.topk(frames, 5)
        hits = [
            np.flatnonzero(r == true_class(s.label, class_map, s.image_id))
            for r, s in zip(ranked, samples, strict=True)
        ]
        return [int(h[0]) if h.size else None for h in hits]

    return classify


def eval_cmd(
    model: ModelFile,
    root: Root,
    data: Data = "voc",
    split: Split = "test",
    runtime: RuntimeOpt = "auto",
    device: Device = "auto",
    weights: Weights = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the metrics here")] = None,
    save_maps: Annotated[Path | None, typer.Option(help="one float32 .npy score map per image")] = None,
    calibrate: Annotated[
        bool, typer.Option(help="store the best threshold as the model's operating one")
    ] = False,
    classifier: Annotated[
        str | None,
        typer.Option(help="Top-1/Top-5 Loc with this classifier: 'lite0' (embedded ImageNet) or a timm name"),
    ] = None,
    classifier_weights: Annotated[
        Path | None, typer.Option(help="classifier state dict (timm architecture --classifier)")
    ] = None,
    class_map: Annotated[
        Path | None, typer.Option(help='JSON: data-set label -> classifier class, "*" for unlabeled images')
    ] = None,
    batch_size: BatchSize = 8,
    workers: Workers = 2,
    cuda_graph: CudaGraph = None,
    boxes: Boxes = None,
) -> None:
    """Localization accuracy (GT-known Loc, MaxBoxAcc, MaxBoxAccV2 both protocols; Top-k Loc).

    Under torchrun each rank scores its shard; rank 0 prints and writes the whole split's metrics."""
    from rpol_edge.backbones.classifier import load_classifier, read_class_map
    from rpol_edge.core.files import write_text_atomic
    from rpol_edge.evaluate.evaluation import calibrate as write_threshold
    from rpol_edge.evaluate.evaluation import evaluate
    from rpol_edge.fitting.distributed import process_group, rank_device
    from rpol_edge.results.detection import check_boxes
    from rpol_edge.runtimes import choose, open_runtime, resolve_device

    with cli_errors(), process_group(backend="gloo") as ctx:  # a few hundred integers: gloo is plenty
        if calibrate and model.suffix != ".rpol":
            raise ValueError("--calibrate writes into a fitted .rpol model; calibrate it, then re-export")
        if json_out:
            check_writable(json_out)
        if boxes is not None:
            check_boxes(boxes)
        if (classifier_weights or class_map) and not classifier:
            raise ValueError("--classifier-weights and --class-map need --classifier NAME")
        if classifier and ctx.enabled:
            raise ValueError("--classifier under torchrun is not supported yet: run Top-k Loc in one process")
        cmap = read_class_map(class_map)
        clf = load_classifier(classifier, classifier_weights) if classifier else None
        dev = rank_device(resolve_device(choose(model, runtime), device), ctx)
        rt = open_runtime(model, runtime, device=dev, weights=weights, cuda_graph=cuda_graph)
        with rt, rank_progress("eval")(ctx) as update:
            classify = topk_classify(clf, cmap) if clf else None
            reduction = job_reduction(ctx)
            result = evaluate(
                rt, data, root, split, save_maps, batch_size, workers, update, classify, reduction, boxes
            )
        if not ctx.is_main:
            return
        report_skips(result.skipped, result.metrics["n_skipped"])
        metrics = {"model": str(model), "runtime": result.runtime, **result.metrics}
        if clf:
            metrics["classifier"] = clf.name
        out.print(metrics_table("metric", metrics, ORACLE_KEYS + (TOPK_KEYS if clf else ()) + DETECTION_KEYS))
        if json_out:
            write_text_atomic(json_out, json.dumps(metrics, indent=1, default=str))
        if calibrate:
            meta = write_threshold(model, metrics["best_threshold"])
            out.print(f"operating point of {model} set to {meta.operating.label()}")


def compare(
    reference: Annotated[Path, typer.Argument(help="reference model file (usually the .rpol, torch FP32)")],
    candidate: Annotated[Path, typer.Argument(help="model file to check against it (.onnx, .engine, .rpol)")],
    root: Root,
    data: Data = "voc",
    split: Split = "test",
    ref_device: Annotated[str, typer.Option(help="device of the reference runtime")] = "cpu",
    device: Device = "auto",
    precision: Annotated[str | None, typer.Option(help="torch candidate precision fp32 | fp16")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the agreement record here")] = None,
    workers: Workers = 2,
    runtime: Annotated[
        str, typer.Option("--runtime", help=f"candidate's runtime: {RUNTIME_CHOICES}")
    ] = "auto",
    ref_runtime: Annotated[str, typer.Option(help="reference's runtime (auto: by file type)")] = "auto",
) -> None:
    """Parity of two runtimes on a split: max/mean |score map difference| and box agreement."""
    from rpol_edge.core.files import write_text_atomic
    from rpol_edge.evaluate.compare import compare as run_compare
    from rpol_edge.evaluate.compare import dataset_frames
    from rpol_edge.runtimes import open_runtime

    with cli_errors():
        ref = open_runtime(reference, ref_runtime, device=ref_device)
        cand = open_runtime(candidate, runtime, device=device, precision=precision)
        with ref, cand, err.status(f"comparing {cand.description} with {ref.description}..."):
            frames = dataset_frames(ref.meta, data, root, split, workers)
            result = run_compare(ref, cand, frames)
        record = {"reference": ref.description, "candidate": cand.description, **result.to_dict()}
        for key, value in record.items():
            out.print(f"{key:16s} {value}", highlight=False)
        if json_out:
            write_text_atomic(json_out, json.dumps(record, indent=1))


def demo(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="folder for the model, metrics, overlays")
    ] = Path("out/demo"),
    input_size: Annotated[int, typer.Option(help="network input K (square) of the fit")] = 448,
    workers: Workers = 2,
) -> None:
    """Fit on the bundled sample photos, evaluate, and write overlays: the whole method in one go."""
    with cli_errors():
        require_torch("rpol-edge demo")
        from rpol_edge.api.demo import run_demo

        with progress_bar("fit on bundled sample") as update:
            result = run_demo(output, input_size, workers, update)
        out.print(metrics_table("metric (bundled test split)", result.metrics))
        out.print(f"model: {result.model}\noverlays: {result.n_overlays} PNG + JSON in {result.overlays}")
