"""`rpol-edge export`: a fitted model to ONNX (FP32, FP16, INT8) and TensorRT, or an exported ONNX
to an engine on the device, an OpenVINO IR or a Triton repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rpol_edge.cli.console import err, out
from rpol_edge.cli.errors import cli_errors
from rpol_edge.cli.options import Weights
from rpol_edge.core.extras import require_torch
from rpol_edge.exporters.orchestrator import ExportRequest

EXPORT = ExportRequest(model=Path("model.rpol"), out_dir=Path("export"))
"""The library's defaults: the options below read theirs from here."""


def _frame_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    from rpol_edge.core.export_formats import parse_frame_size

    return parse_frame_size(text)


def export(
    model: Annotated[
        Path,
        typer.Argument(
            help="the fitted .rpol model, or an exported .onnx graph (see above for which formats)"
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for the exported files")] = Path(
        "export"
    ),
    onnx: Annotated[
        bool,
        # Not offered in --help: the graph is always written, so there is nothing to turn on or off;
        # still accepted, as the commands in scripts and docs that pass it keep working.
        typer.Option("--onnx", hidden=True, help="accepted and ignored: the ONNX graph is always written"),
    ] = True,
    trt: Annotated[
        bool, typer.Option("--trt", help="build a TensorRT engine (needs TensorRT + GPU)")
    ] = EXPORT.trt,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="FP16 backbone (ONNX fp16 graph / TensorRT)")
    ] = EXPORT.fp16,
    int8: Annotated[
        bool,
        typer.Option("--int8", help="INT8 QDQ ONNX for CPUs (ONNX Runtime), calibrated on --calib-* images"),
    ] = EXPORT.int8,
    batch: Annotated[str, typer.Option(help="N (fixed) or MIN:OPT:MAX (dynamic)")] = "1",
    opset: Annotated[
        int | None, typer.Option(help="ONNX opset (default 17 legacy, 18 dynamo)")
    ] = EXPORT.opset,
    exporter: Annotated[str, typer.Option(help="legacy | dynamo (torch.onnx)")] = EXPORT.exporter,
    simplify: Annotated[
        bool, typer.Option(help="onnxslim: fold shape arithmetic (TensorRT 8.6 needs it for TF-same pads)")
    ] = EXPORT.simplify,
    trt_targets: Annotated[
        str | None,
        typer.Option(
            help="TensorRT versions the graphs must pass the static check for, e.g. 8.6,10.3,10.15 "
            "(default: every claimed version whose opset range holds the graph's opset)"
        ),
    ] = None,
    weights: Weights = None,
    calib_data: Annotated[str, typer.Option(help="INT8 calibration data kind (cub|wsol|voc|folder)")] = (
        EXPORT.calib_data
    ),
    calib_root: Annotated[Path | None, typer.Option(help="INT8 calibration data root")] = None,
    calib_split: Annotated[str, typer.Option(help="split of the INT8 calibration data")] = EXPORT.calib_split,
    workspace_mb: Annotated[
        int, typer.Option(help="TensorRT builder workspace memory limit, in MB")
    ] = EXPORT.workspace_mb,
    frame_size: Annotated[
        str | None,
        typer.Option(help="WxH: the graphs take raw camera frames of this size (resize + crop in graph)"),
    ] = None,
    frame_format: Annotated[str, typer.Option(help="channel order of those frames: bgr | rgb")] = (
        EXPORT.frame_format
    ),
    openvino: Annotated[
        bool, typer.Option("--openvino", help="also OpenVINO IRs: model.xml (and model.int8.xml with --int8)")
    ] = EXPORT.openvino,
    openvino_precision: Annotated[
        str, typer.Option(help="what model.xml runs at: f32 (exact) | bf16 (AMX / AVX-512 BF16 CPUs)")
    ] = EXPORT.openvino_precision,
    triton: Annotated[
        Path | None,
        typer.Option(
            "--triton",
            help="also a Triton repository in this folder: ONNX Runtime (and TensorRT) models and "
            "an ensemble that takes RGB frames of any size and answers boxes "
            "(needs a batch range, e.g. 1:4:8)",
        ),
    ] = None,
    triton_name: Annotated[str, typer.Option(help="the ensemble's name in that repository")] = (
        EXPORT.triton_name
    ),
    deepstream: Annotated[
        Path | None,
        typer.Option(
            "--deepstream",
            help="also a DeepStream hand-off in this folder: the float-input graph nvinfer feeds, its "
            "nvinfer config and a README (boxes from the deepstream_probe module, docs/deepstream.md)",
        ),
    ] = None,
) -> None:
    """Fold w* into the graph and export: ONNX, FP16 ONNX, INT8 (QDQ), TensorRT engine.

    MODEL: the fitted .rpol, or an exported .onnx (no PyTorch) for --trt, --openvino, --triton.

    From a .rpol the ONNX graph (model.onnx) is always written: every other format starts from it.
    """
    with cli_errors():
        if model.suffix.lower() != ".onnx":
            require_torch("rpol-edge export")
        from rpol_edge.exporters.orchestrator import ExportRequest, parse_batch, run_export
        from rpol_edge.exporters.trt.compat import parse_targets

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
            openvino=openvino,
            openvino_precision=openvino_precision,
            triton=triton,
            triton_name=triton_name,
            deepstream=deepstream,
        )
        req.validate()
        with err.status("exporting (trace, check, write)..."):
            result = run_export(req)
        for fmt, path in result.files.items():
            out.print(f"{fmt:14s} {path}")
        if result.trtexec:
            out.print("cross-check with NVIDIA's tool (same ONNX, shapes, precision, timing cache):")
            out.print(result.trtexec, markup=False, highlight=False, soft_wrap=True)
