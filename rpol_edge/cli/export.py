"""`rpol-edge export`: a fitted model to ONNX (FP32, FP16, INT8) and TensorRT, or an exported ONNX
to an engine on the device, an OpenVINO IR or a Triton repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rpol_edge.cli.console import err, out
from rpol_edge.cli.errors import cli_errors
from rpol_edge.cli.options import Weights
from rpol_edge.core.extras import require_torch
from rpol_edge.exporters.orchestrator import ExportRequest

EXPORT = ExportRequest(model=Path("model.rpol"), out_dir=Path("export"))
"""The library's defaults: the options below read theirs from here."""


def export_request(options: dict[str, Any]) -> ExportRequest:
    """The command's options as the library's request: the same names, but ``output`` is the
    request's ``out_dir``, ``--onnx`` is not (the graph is always written), and the texts are
    parsed (``batch``, ``trt_targets``, ``frame_size``)."""
    from rpol_edge.core.export_formats import parse_frame_size
    from rpol_edge.exporters.orchestrator import parse_batch
    from rpol_edge.exporters.trt.compat import parse_targets

    fields = {name: value for name, value in options.items() if name not in ("output", "onnx")}
    fields["out_dir"] = options["output"]
    fields["batch"] = parse_batch(options["batch"])
    fields["trt_targets"] = parse_targets(options["trt_targets"]) if options["trt_targets"] else None
    fields["frame_size"] = parse_frame_size(options["frame_size"]) if options["frame_size"] else None
    return ExportRequest(**fields)


Model = Annotated[
    Path,
    typer.Argument(help="the fitted .rpol model, or an exported .onnx graph (see above for which formats)"),
]
Output = Annotated[Path, typer.Option("-o", "--output", help="folder for the exported files")]
Onnx = Annotated[
    bool,
    # Not offered in --help: the graph is always written, so there is nothing to turn on or off;
    # still accepted, as the commands in scripts and docs that pass it keep working.
    typer.Option("--onnx", hidden=True, help="accepted and ignored: the ONNX graph is always written"),
]
Trt = Annotated[bool, typer.Option("--trt", help="build a TensorRT engine (needs TensorRT + GPU)")]
Fp16 = Annotated[bool, typer.Option("--fp16", help="FP16 backbone (ONNX fp16 graph / TensorRT)")]
Int8 = Annotated[
    bool,
    typer.Option("--int8", help="INT8 QDQ ONNX for CPUs (ONNX Runtime), calibrated on --calib-* images"),
]
Batch = Annotated[str, typer.Option(help="N (fixed) or MIN:OPT:MAX (dynamic)")]
Opset = Annotated[int | None, typer.Option(help="ONNX opset (default 17 legacy, 18 dynamo)")]
Exporter = Annotated[str, typer.Option(help="legacy | dynamo (torch.onnx)")]
Simplify = Annotated[
    bool, typer.Option(help="onnxslim: fold shape arithmetic (TensorRT 8.6 needs it for TF-same pads)")
]
TrtTargets = Annotated[
    str | None,
    typer.Option(
        help="TensorRT versions the graphs must pass the static check for, e.g. 8.6,10.3,10.15 "
        "(default: every claimed version whose opset range holds the graph's opset)"
    ),
]
CalibData = Annotated[str, typer.Option(help="INT8 calibration data kind (cub|wsol|voc|folder)")]
CalibRoot = Annotated[Path | None, typer.Option(help="INT8 calibration data root")]
CalibSplit = Annotated[str, typer.Option(help="split of the INT8 calibration data")]
WorkspaceMb = Annotated[int, typer.Option(help="TensorRT builder workspace memory limit, in MB")]
FrameSize = Annotated[
    str | None,
    typer.Option(help="WxH: the graphs take raw camera frames of this size (resize + crop in graph)"),
]
FrameFormat = Annotated[str, typer.Option(help="channel order of those frames: bgr | rgb")]
Openvino = Annotated[
    bool, typer.Option("--openvino", help="also OpenVINO IRs: model.xml (and model.int8.xml with --int8)")
]
OpenvinoPrecision = Annotated[
    str, typer.Option(help="what model.xml runs at: f32 (exact) | bf16 (AMX / AVX-512 BF16 CPUs)")
]
TritonRepository = Annotated[
    Path | None,
    typer.Option(
        "--triton",
        help="also a Triton repository in this folder: ONNX Runtime (and TensorRT) models and "
        "an ensemble that takes RGB frames of any size and answers boxes "
        "(needs a batch range, e.g. 1:4:8)",
    ),
]
TritonName = Annotated[str, typer.Option(help="the ensemble's name in that repository")]
Deepstream = Annotated[
    Path | None,
    typer.Option(
        "--deepstream",
        help="also a DeepStream hand-off in this folder: the float-input graph nvinfer feeds, its "
        "nvinfer config and a README (boxes from the deepstream_probe module, docs/deepstream.md)",
    ),
]


def export(
    model: Model,
    output: Output = Path("export"),
    onnx: Onnx = True,
    trt: Trt = EXPORT.trt,
    fp16: Fp16 = EXPORT.fp16,
    int8: Int8 = EXPORT.int8,
    batch: Batch = "1",
    opset: Opset = EXPORT.opset,
    exporter: Exporter = EXPORT.exporter,
    simplify: Simplify = EXPORT.simplify,
    trt_targets: TrtTargets = None,
    weights: Weights = None,
    calib_data: CalibData = EXPORT.calib_data,
    calib_root: CalibRoot = None,
    calib_split: CalibSplit = EXPORT.calib_split,
    workspace_mb: WorkspaceMb = EXPORT.workspace_mb,
    frame_size: FrameSize = None,
    frame_format: FrameFormat = EXPORT.frame_format,
    openvino: Openvino = EXPORT.openvino,
    openvino_precision: OpenvinoPrecision = EXPORT.openvino_precision,
    triton: TritonRepository = None,
    triton_name: TritonName = EXPORT.triton_name,
    deepstream: Deepstream = None,
) -> None:
    """Fold w* into the graph and export: ONNX, FP16 ONNX, INT8 (QDQ), TensorRT engine.

    MODEL: the fitted .rpol, or an exported .onnx (no PyTorch) for --trt, --openvino, --triton.

    From a .rpol the ONNX graph (model.onnx) is always written: every other format starts from it.
    """
    options = dict(locals())  # the command's options by name, before any other local
    with cli_errors():
        if model.suffix.lower() != ".onnx":
            require_torch("rpol-edge export")
        from rpol_edge.exporters.orchestrator import run_export

        req = export_request(options)
        req.validate()
        with err.status("exporting (trace, check, write)..."):
            result = run_export(req)
        for fmt, path in result.files.items():
            out.print(f"{fmt:14s} {path}")
        if result.trtexec:
            out.print("cross-check with NVIDIA's tool (same ONNX, shapes, precision, timing cache):")
            out.print(result.trtexec, markup=False, highlight=False, soft_wrap=True)
