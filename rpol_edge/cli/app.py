"""Thin typer CLI: each command parses its options and calls one library function."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

from rpol_edge.core.extras import MissingExtra, require_opencv

try:  # before the imports below: they load OpenCV, and a missing one must be one line, not a traceback
    require_opencv()
except MissingExtra as exc:
    sys.stderr.write(f"error: {exc}\n")
    raise SystemExit(2) from None

import typer  # noqa: E402
from rich.table import Table  # noqa: E402

from rpol_edge.cli.common import (  # noqa: E402
    TOPK_KEYS,
    check_writable,
    cli_errors,
    err,
    metrics_table,
    out,
    progress_bar,
    rank_progress,
    report_skips,
)
from rpol_edge.cli.run import run_command  # noqa: E402
from rpol_edge.core.extras import require_torch  # noqa: E402
from rpol_edge.data.sample import SAMPLE_ROOT  # noqa: E402

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Unsupervised object localization for the edge."
)

Data = Annotated[str, typer.Option("--data", help="cub | wsol | voc | folder")]
Root = Annotated[Path, typer.Option("--root", help="data-set root folder")]
Split = Annotated[str, typer.Option("--split", help="split name (train, test, ...)")]
RuntimeOpt = Annotated[str, typer.Option("--runtime", help="auto | torch | ort | trt")]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA when reachable) | cpu | cuda | cuda:N")]
Weights = Annotated[Path | None, typer.Option("--weights", help="backbone checkpoint file")]
CudaGraph = Annotated[
    bool | None,
    typer.Option(
        "--cuda-graph/--no-cuda-graph",
        help="CUDA graphs (torch: default on for CUDA; trt: default off); falls back with a log line",
        show_default=False,
    ),
]


@app.command()
def fit(
    root: Root,
    data: Data = "folder",
    split: Split = "train",
    output: Annotated[Path, typer.Option("-o", "--output", help="model file to write (.rpol)")] = Path(
        "model.rpol"
    ),
    backbone: Annotated[
        str, typer.Option(help="preset (lite0, moco_r50, dino_vits16, dino_r50, sup_r50) or timm name")
    ] = "lite0",
    weights: Weights = None,
    output_stride: Annotated[int, typer.Option(help="ResNet output stride 32/16/8")] = 32,
    input_size: Annotated[int, typer.Option(help="network input K (square)")] = 448,
    resize_size: Annotated[
        int | None, typer.Option(help="resize S before the K crop (default K*480/448)")
    ] = None,
    fit_size: Annotated[int | None, typer.Option(help="fit resolution (default: the input size)")] = None,
    reference_fit: Annotated[bool, typer.Option(help="the reference's fit: 224x224 resize, no crop")] = False,
    head: Annotated[str, typer.Option(help="rpol | caam (baseline)")] = "rpol",
    tau: Annotated[
        str, typer.Option("--tau", help="joint (Eq. 25, default) | mean (plain mean feature norm)")
    ] = "joint",
    classwise: Annotated[bool, typer.Option(help="one w* per class label")] = False,
    sampling_ratio: Annotated[float, typer.Option(help="fit on this random fraction")] = 1.0,
    seed: int = 0,
    operating_point: Annotated[
        str | None,
        typer.Option(
            help="mask rule: sign (label-free: w*^T f > 0; the default with --head rpol) | fixed (the "
            "paper's, at --threshold; the default with --head caam) | otsu | fraction (top --fraction)"
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="a fixed operating threshold (implies --operating-point fixed; default 0.5)"),
    ] = None,
    fraction: Annotated[float, typer.Option(help="share of each map the fraction rule keeps")] = 0.0,
    batch_size: int = 16,
    workers: Annotated[int, typer.Option(help="decoding worker processes")] = 2,
    device: Device = "auto",
    checkpoint_every: Annotated[
        int, typer.Option(help="save each rank's partial sums every N of its images (0: only on SIGTERM)")
    ] = 0,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="folder for the checkpoints (default: OUTPUT.ckpt)")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue from the checkpoints of the same command")] = False,
) -> None:
    """Fit w* on unlabeled images (closed form, frozen backbone) and write the model file.

    Under torchrun (`torchrun --nproc-per-node N -m rpol_edge fit ...`) each rank fits its shard
    and rank 0 writes the file (README, "Scale-out")."""
    with cli_errors():
        require_torch("rpol-edge fit")
        from rpol_edge.fitting.checkpoint import CheckpointOptions, FitStopped
        from rpol_edge.fitting.pipeline import FitConfig, fit_to_file

        cfg = FitConfig(
            data=data,
            root=root,
            split=split,
            backbone=backbone,
            weights=weights,
            output_stride=output_stride,
            input_size=input_size,
            resize_size=resize_size,
            fit_size=fit_size,
            reference_fit=reference_fit,
            head=head,
            tau_mode=tau,
            classwise=classwise,
            sampling_ratio=sampling_ratio,
            seed=seed,
            operating_point=operating_point or ("fixed" if threshold is not None else None),
            threshold=0.5 if threshold is None else threshold,
            fraction=fraction,
            batch_size=batch_size,
            workers=workers,
            device=device,
        )
        cfg.validate()
        check_writable(output)
        ckpt_dir = checkpoint_dir or output.with_name(output.name + ".ckpt")
        ckpt = CheckpointOptions(ckpt_dir, checkpoint_every, resume)
        ckpt.validate()
        try:
            result, ctx = fit_to_file(cfg, output, ckpt, rank_progress("fit"))
        except FitStopped as exc:
            err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(128 + exc.signum) from None
        m = result.artifact.meta
        if result.resumed_at is not None:
            where = f"{ctx.label}: " if ctx.enabled else ""
            err.print(f"{where}resumed at image {result.resumed_at} of its shard", highlight=False)
        if ctx.is_main:
            report_skips(result.skipped, m.n_skipped)
            out.print(
                f"wrote {output}: {m.backbone} K={m.input_size} tau={m.tau:.4f} ({m.tau_mode}) "
                f"images={m.n_images} skipped={m.n_skipped} operating point: {m.operating.label()}"
                + (f" ranks={ctx.world_size}" if ctx.enabled else "")
            )


@app.command()
def info(model: Path) -> None:
    """Print the metadata record of a model file, ONNX file or engine."""
    from rpol_edge.core.model_file import read_meta

    with cli_errors():
        meta = read_meta(model)
        table = Table(show_header=False, box=None)
        for k, v in meta.to_dict().items():
            table.add_row(k, str(v))
        table.add_row("mask rule", meta.operating.describe())
        out.print(table)
        if model.suffix.lower() == ".onnx":
            from rpol_edge.exporters.trtexec import trtexec_lines

            lines = trtexec_lines(model)
            if not lines:
                out.print("no trtexec command: the ONNX Runtime (CPU) INT8 graph is not a TensorRT source")
            for label, cmd in lines:
                out.print(f"# trtexec, {label}:", highlight=False)
                out.print(cmd, markup=False, highlight=False, soft_wrap=True)


@app.command("eval")
def eval_cmd(
    model: Path,
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
    batch_size: int = 8,
    workers: int = 2,
    cuda_graph: CudaGraph = None,
) -> None:
    """Localization accuracy (GT-known Loc, MaxBoxAcc, MaxBoxAccV2 both protocols; Top-k Loc).

    Under torchrun each rank scores its shard; rank 0 prints and writes the whole split's metrics."""
    from rpol_edge.backbones.classifier import load_classifier, read_class_map
    from rpol_edge.core.files import write_text_atomic
    from rpol_edge.evaluate.evaluation import calibrate as write_threshold
    from rpol_edge.evaluate.evaluation import evaluate
    from rpol_edge.fitting.distributed import process_group, rank_device
    from rpol_edge.runtimes import choose, open_runtime, resolve_device

    with cli_errors(), process_group(backend="gloo") as ctx:  # a few hundred integers: gloo is plenty
        if calibrate and model.suffix != ".rpol":
            raise ValueError("--calibrate writes into a fitted .rpol model; calibrate it, then re-export")
        if json_out:
            check_writable(json_out)
        if (classifier_weights or class_map) and not classifier:
            raise ValueError("--classifier-weights and --class-map need --classifier NAME")
        if classifier and ctx.enabled:
            raise ValueError("--classifier under torchrun is not supported yet: run Top-k Loc in one process")
        cmap = read_class_map(class_map)
        clf = load_classifier(classifier, classifier_weights) if classifier else None
        dev = rank_device(resolve_device(choose(model, runtime), device), ctx)
        rt = open_runtime(model, runtime, device=dev, weights=weights, cuda_graph=cuda_graph)
        with rt, rank_progress("eval")(ctx) as update:
            result = evaluate(rt, data, root, split, save_maps, batch_size, workers, update, clf, cmap, ctx)
        if not ctx.is_main:
            return
        report_skips(result.skipped, result.metrics["n_skipped"])
        metrics = {"model": str(model), "runtime": result.runtime, **result.metrics}
        out.print(metrics_table("metric", metrics, TOPK_KEYS if clf else ()))
        if json_out:
            write_text_atomic(json_out, json.dumps(metrics, indent=1, default=str))
        if calibrate:
            meta = write_threshold(model, metrics["best_threshold"])
            out.print(f"operating point of {model} set to the fixed threshold {meta.threshold}")


@app.command()
def predict(
    model: Path,
    images: Annotated[list[Path], typer.Argument(help="image files")],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for overlays and JSON")] = Path(
        "predictions"
    ),
    runtime: RuntimeOpt = "auto",
    device: Device = "auto",
    weights: Weights = None,
) -> None:
    """Box (original pixels, JSON) and overlay PNG for each image."""
    from rpol_edge.evaluate.predict import predict_files
    from rpol_edge.runtimes import open_runtime

    with cli_errors():
        rt = open_runtime(model, runtime, device=device, weights=weights)
        with rt, progress_bar("predict") as update:
            records, skipped = predict_files(rt, images, output, progress=update)
        report_skips(skipped)
        for r in records:
            out.print(f"{r['image']}: box={r['box']} score={r['score']:.3f}", highlight=False)
        out.print(f"wrote {len(records)} overlay(s) and JSON file(s) to {output}")


def _frame_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    from rpol_edge.exporters.frame_input import parse_frame_size  # a torch module: only when asked

    return parse_frame_size(text)


@app.command()
def export(
    model: Path,
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for the exported files")] = Path(
        "export"
    ),
    onnx: Annotated[
        bool,
        typer.Option("--onnx", help="the fused ONNX graph (always written: every format starts from it)"),
    ] = True,
    trt: Annotated[
        bool, typer.Option("--trt", help="build a TensorRT engine (needs TensorRT + GPU)")
    ] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 backbone (ONNX fp16 graph / TensorRT)")] = False,
    int8: Annotated[
        bool,
        typer.Option("--int8", help="INT8 QDQ ONNX for CPUs (ONNX Runtime), calibrated on --calib-* images"),
    ] = False,
    batch: Annotated[str, typer.Option(help="N (fixed) or MIN:OPT:MAX (dynamic)")] = "1",
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default 17 legacy, 18 dynamo)")] = None,
    exporter: Annotated[str, typer.Option(help="legacy | dynamo (torch.onnx)")] = "legacy",
    simplify: Annotated[
        bool, typer.Option(help="onnxslim: fold shape arithmetic (TensorRT 8.6 needs it for TF-same pads)")
    ] = True,
    trt_targets: Annotated[
        str | None,
        typer.Option(
            help="TensorRT versions the graphs must pass the static check for, e.g. 8.6,10.3,10.15 "
            "(default: every claimed version whose opset range holds the graph's opset)"
        ),
    ] = None,
    weights: Weights = None,
    calib_data: Annotated[str, typer.Option(help="INT8 calibration data kind (cub|wsol|voc|folder)")] = "",
    calib_root: Annotated[Path | None, typer.Option(help="INT8 calibration data root")] = None,
    calib_split: str = "train",
    workspace_mb: int = 1024,
    frame_size: Annotated[
        str | None,
        typer.Option(help="WxH: the graphs take raw camera frames of this size (resize + crop in graph)"),
    ] = None,
    frame_format: Annotated[str, typer.Option(help="channel order of those frames: bgr | rgb")] = "bgr",
) -> None:
    """Fold w* into the graph and export: ONNX, FP16 ONNX, INT8 (QDQ), TensorRT engine.

    MODEL is the fitted .rpol; or, with --trt on the device, an exported .onnx to build the
    engine from (no PyTorch needed there).
    """
    with cli_errors():
        if model.suffix.lower() != ".onnx":
            require_torch("rpol-edge export")
        from rpol_edge.exporters.pipeline import ExportRequest, parse_batch, run_export
        from rpol_edge.exporters.trt_compat import parse_targets

        req = ExportRequest(
            model=model,
            out_dir=output,
            trt=trt,
            fp16=fp16,
            int8=int8,
            batch=parse_batch(batch),
            opset=opset,
            exporter=exporter,
            simplify=simplify,
            trt_targets=parse_targets(trt_targets) if trt_targets else None,
            weights=weights,
            calib_data=calib_data,
            calib_root=calib_root,
            calib_split=calib_split,
            workspace_mb=workspace_mb,
            frame_size=_frame_size(frame_size),
            frame_format=frame_format,
        )
        req.validate()
        with err.status("exporting (trace, check, write)..."):
            result = run_export(req)
        for fmt, path in result.files.items():
            out.print(f"{fmt:10s} {path}")
        if result.trtexec:
            out.print("cross-check with NVIDIA's tool (same ONNX, shapes, precision, timing cache):")
            out.print(result.trtexec, markup=False, highlight=False, soft_wrap=True)


@app.command()
def bench(
    models: Annotated[
        list[str],
        typer.Argument(
            help="model files (.rpol, .onnx, .engine) on their runtime, or PATH@key=value,... with runtime "
            "options, e.g. m.rpol@precision=fp16 exp/model.onnx@runtime=ort,device=cuda"
        ),
    ],
    images: Annotated[Path, typer.Option(help="folder of images to time on")] = SAMPLE_ROOT / "JPEGImages",
    device: Device = "auto",
    batch: Annotated[str, typer.Option(help="batch sizes, comma-separated, e.g. 1,4")] = "1",
    iters: int = 30,
    warmup: int = 5,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch/ORT")] = None,
    reference: Annotated[bool, typer.Option(help="time the reference implementation's pipeline")] = True,
    backbone: Annotated[bool, typer.Option(help="time the bare backbone per runtime (needs .rpol)")] = True,
    eval_data: Annotated[str, typer.Option(help="accuracy + parity per row (voc, cub, wsol)")] = "",
    eval_root: Annotated[Path | None, typer.Option(help="data root for --eval-data")] = None,
    eval_split: Annotated[str, typer.Option(help="split for --eval-data")] = "test",
    work_dir: Annotated[Path, typer.Option(help="bare-backbone ONNX and scratch files")] = Path("bench_work"),
    json_out: Annotated[Path | None, typer.Option("--json", help="write the record (machine, rows)")] = None,
    markdown: Annotated[Path | None, typer.Option(help="write the tables as Markdown here")] = None,
    plot_out: Annotated[Path | None, typer.Option("--plot", help="PNG: p50 ms per row/batch/stage")] = None,
    cuda_graph: CudaGraph = None,
    rounds: Annotated[
        int, typer.Option(help="time every row this many times, a new process each, rows interleaved")
    ] = 1,
) -> None:
    """The one benchmark: each runtime x precision x batch in its own process, against the
    reference pipeline and the bare backbone; p50/p90/p99 per stage, throughput, size, peak memory."""
    import shlex
    import sys

    from rpol_edge.bench import report, runner
    from rpol_edge.bench import spec as bench_spec
    from rpol_edge.data.images import is_image_path

    with cli_errors():
        files = sorted(p for p in images.iterdir() if is_image_path(p))[:32] if images.is_dir() else [images]
        if not files:
            raise ValueError(f"no images in {images}")
        try:
            batches = sorted({int(x) for x in batch.split(",") if x.strip()})
        except ValueError:
            raise ValueError(f"--batch {batch!r}: give sizes like 1,4") from None
        if not batches or min(batches) < 1:
            raise ValueError(f"--batch {batch!r}: sizes must be >= 1")
        if rounds < 1:
            raise ValueError(f"--rounds {rounds}: give 1 or more")
        if bool(eval_data) != bool(eval_root):
            raise ValueError("--eval-data and --eval-root go together")
        for path in (json_out, markdown, plot_out):
            if path:
                check_writable(path)
        specs = [bench_spec.parse_spec(m) for m in models]
        if cuda_graph is not None:  # a spec's own @cuda_graph=... wins; ONNX Runtime has no such option
            for spec in specs:
                if spec.runtime in ("torch", "trt"):
                    spec.options.setdefault("cuda_graph", cuda_graph)
        cfg = runner.BenchConfig(
            specs=specs, images=files, batches=batches, iters=iters,
            warmup=warmup, device=device, threads=threads, reference=reference, backbone=backbone,
            work_dir=work_dir, eval_data=eval_data, eval_root=eval_root, eval_split=eval_split,
            rounds=rounds,
        )  # fmt: skip
        with err.status("benchmark...") as status:
            rows = runner.run_bench(cfg, lambda what: status.update(f"timing {what} (own process)..."))
        title = (
            "ms per batch; img/s; vs ref / vs 1st = speed-up over the reference / the first model given;"
            " vs backbone = infer time over the bare one"
        )
        table = Table(*report.COLUMNS, title=title)
        for r in report.table_rows(rows):
            table.add_row(*r)
        out.print(table)
        acc = report.accuracy_rows(rows)
        if acc:
            at = Table(*report.ACC_COLUMNS, title=f"accuracy and parity with the reference ({eval_split})")
            for r in acc:
                at.add_row(*r)
            out.print(at)
        command = "rpol-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        rec = report.record(rows, cfg, command)
        if json_out:
            report.write_json(json_out, rec)
        if markdown:
            from rpol_edge.core.files import write_text_atomic

            write_text_atomic(markdown, report.to_markdown(rows, f"`{command}`\n"))
        if plot_out:
            title = f"{rec['machine'].get('gpu') or platform_name()}, {len(files)} images"
            report.plot(rows, plot_out, title)


def platform_name() -> str:
    import os
    import platform

    return f"{platform.machine()} {platform.processor() or ''} x{os.cpu_count()}".strip()


@app.command()
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
    workers: int = 2,
) -> None:
    """Parity of two runtimes on a split: max/mean |score map difference| and box agreement."""
    from rpol_edge.core.files import write_text_atomic
    from rpol_edge.evaluate.compare import compare as run_compare
    from rpol_edge.evaluate.compare import dataset_frames
    from rpol_edge.runtimes import open_runtime

    with cli_errors():
        ref = open_runtime(reference, "auto", device=ref_device)
        cand = open_runtime(candidate, "auto", device=device, precision=precision)
        with ref, cand, err.status(f"comparing {cand.description} with {ref.description}..."):
            frames = dataset_frames(ref.meta, data, root, split, workers)
            result = run_compare(ref, cand, frames)
        record = {"reference": ref.description, "candidate": cand.description, **result.to_dict()}
        for key, value in record.items():
            out.print(f"{key:16s} {value}", highlight=False)
        if json_out:
            write_text_atomic(json_out, json.dumps(record, indent=1))


@app.command()
def demo(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="folder for the model, metrics, overlays")
    ] = Path("out/demo"),
    input_size: int = 448,
    workers: int = 2,
) -> None:
    """Fit on the bundled sample photos, evaluate, and write overlays: the whole method in one go."""
    with cli_errors():
        require_torch("rpol-edge demo")
        from rpol_edge.evaluate.demo import run_demo

        with progress_bar("fit on bundled sample") as update:
            result = run_demo(output, input_size, workers, update)
        out.print(metrics_table("metric (bundled test split)", result.metrics))
        out.print(f"model: {result.model}\noverlays: {result.n_overlays} PNG + JSON in {result.overlays}")


def _parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--point {text!r}: expected X,Y in original-image pixels, e.g. 120,80") from None
    return x, y


@app.command()
def explain(
    model: Annotated[Path, typer.Argument(help="fitted model file (.rpol)")],
    images: Annotated[list[Path], typer.Argument(help="query image(s): one pass over the training set")],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for the figures and JSON")] = Path(
        "explain"
    ),
    point: Annotated[
        list[str] | None,
        typer.Option("--point", help="X,Y in original pixels (repeatable); default: map peak and lowest"),
    ] = None,
    data: Annotated[str | None, typer.Option("--data", help="training data kind (default: fit's)")] = None,
    root: Annotated[Path | None, typer.Option("--root", help="training data root (default: fit's)")] = None,
    split: Annotated[str | None, typer.Option("--split", help="training split (default: fit's)")] = None,
    top: Annotated[int, typer.Option("--top", help="K most excitatory and K most inhibitory images")] = 3,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="float16 feature cache folder (written if empty)")
    ] = None,
    head_index: Annotated[int, typer.Option(help="class-wise model: which head (class row)")] = 0,
    weights: Weights = None,
    no_figure: Annotated[bool, typer.Option("--no-figure", help="JSON only")] = False,
    batch_size: int = 16,
    workers: int = 2,
) -> None:
    """Representer points: which training images (and where) push a query point's activation up or down."""
    from rpol_edge.explain.explainer import ExplainConfig
    from rpol_edge.explain.explainer import explain as run_explain
    from rpol_edge.explain.figure import write_explanation

    with cli_errors():
        cfg = ExplainConfig(
            model=model,
            images=images,
            points=[_parse_point(p) for p in point or []],
            data=data,
            root=root,
            split=split,
            top=top,
            cache=cache,
            head_index=head_index,
            weights=weights,
            batch_size=batch_size,
            workers=workers,
        )
        if output.exists() and not output.is_dir():
            raise ValueError(f"-o {output}: exists and is not a folder")
        with progress_bar("explain") as update:
            explanations = run_explain(cfg, update)
        files = []
        for ex in explanations:
            files += write_explanation(ex, output, figures=not no_figure)
            for q in ex.queries:
                out.print(
                    f"{Path(ex.meta['image']).name} {q.source} ({q.x:.0f},{q.y:.0f}): a_q={q.a_q:+.6f} "
                    f"sum r={q.sum_r:+.6f} |diff|={abs(q.sum_r - q.a_q):.1e}",
                    highlight=False,
                )
        out.print(f"wrote {len(files)} file(s) to {output}")


# Commands that live beside their library are attached here.
app.command("run")(run_command)


def main() -> None:
    app(prog_name="rpol-edge")


if __name__ == "__main__":
    main()
