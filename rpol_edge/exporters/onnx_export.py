"""Export the Localizer (normalization, backbone, folded head, min-max, upsampling, threshold) as
one ONNX graph, with every metadata field in ``metadata_props``.

Input ``frames`` uint8 NHWC (batch fixed or dynamic); outputs ``score`` float32 (N, M, K, K) and
``mask`` uint8 (N, M, K, K). Host code is left with the contour step and the mapping to frame pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.export_formats import ExportError
from rpol_edge.core.extras import require_torch
from rpol_edge.core.files import atomic_write
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.onnx_meta import INPUT, OUTPUTS
from rpol_edge.exporters.onnx_finish import finish_graph, require_onnx

if TYPE_CHECKING:
    import torch

# torch is imported inside the export functions only: importing this module loads no torch until
# an export runs.

EXPORTERS = ("legacy", "dynamo")
"""legacy (TorchScript) is the default while torch ships it: it writes opset 17 exactly, which TensorRT
10.3 on JetPack 6 parses; dynamo (torch >= 2.9's default) writes opset 18 for this graph."""
DEFAULT_OPSET = {"legacy": 17, "dynamo": 18}
"""The dynamo exporter cannot down-convert this graph (its Pad) to 17, so it defaults to 18."""


def _trace(
    module: torch.nn.Module,
    dummy: torch.Tensor,
    path: Path,
    opset: int,
    dynamic: bool,
    exporter: str,
    names: tuple[str, ...] = OUTPUTS,
) -> None:
    import torch

    inputs, outputs = [INPUT], list(names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            axes = {INPUT: {0: "batch"}, **{o: {0: "batch"} for o in names}} if dynamic else None
            torch.onnx.export(
                module,
                (dummy,),
                str(path),
                opset_version=opset,
                dynamic_axes=axes,
                dynamo=False,
                input_names=inputs,
                output_names=outputs,
            )
            return
        shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic else None
        program = torch.onnx.export(
            module,
            (dummy,),
            dynamo=True,
            opset_version=opset,
            dynamic_shapes=shapes,
            optimize=True,
            verbose=False,
            input_names=inputs,
            output_names=outputs,
        )
        if program is None:
            raise ExportError("the dynamo exporter returned no program")
        program.save(str(path))


def export_onnx(
    model_path: Path,
    out_path: Path,
    opset: int | None = None,
    batch: tuple[int, int, int] | None = None,
    precision: str = "fp32",
    exporter: str = "legacy",
    simplify: bool = True,
    weights: Path | None = None,
    frame: tuple[int, int, str] | None = None,
    trt_targets: Sequence[str] | None = None,
) -> ModelMeta:
    """Write the fused graph to ``out_path``; ``batch`` (min, opt, max) with min == max fixes the
    batch dimension, anything else (or None) makes it dynamic. ``frame`` (W, H, bgr|rgb) makes the
    graph take raw W x H frames and resize, crop and reorder them itself (`FrameInput`).
    Returns the metadata written.

    The graph must pass the static TensorRT check (:mod:`rpol_edge.exporters.trt.compat`) for
    ``trt_targets`` (None: every claimed TensorRT version whose opset range holds the graph's
    opset) or nothing is written. ``simplify`` (onnxslim) folds the shape arithmetic of
    TF-"same" padding (INT64 ConstantOfShape, which TensorRT 8.6's matrix does not list) into
    constants."""
    require_torch("ONNX export")
    import torch

    from rpol_edge.modeling.factory import build_localizer

    onnx = require_onnx()
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose {', '.join(EXPORTERS)}")
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"ONNX precision {precision!r}: choose fp32 or fp16 (INT8 is a separate export)")
    if opset is None:
        opset = DEFAULT_OPSET[exporter]
    artifact = ModelArtifact.load(model_path)
    meta = artifact.meta.replace(opset=opset, precision=precision)
    if meta.n_heads != 1:
        raise ExportError("class-wise models need the class at inference; export a class-agnostic fit")
    localizer = build_localizer(artifact, weights).eval()
    if precision == "fp16":
        localizer.half_backbone()
    module: torch.nn.Module = localizer
    if frame is not None:
        from rpol_edge.exporters.frame_input import FrameInput

        width, height, fmt = frame
        try:
            module = FrameInput(localizer, width, height, meta.resize_size, fmt).eval()
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        meta = meta.replace(frame_width=width, frame_height=height, frame_format=fmt)
    lo, opt, hi = batch or (1, 1, 0)
    dynamic = batch is None or lo != hi
    # torch.export specializes a dimension traced at size 1, so a dynamic batch is traced at 2.
    dummy = torch.zeros((max(opt, 2) if dynamic else lo, *meta.input_shape()), dtype=torch.uint8)
    written = meta

    def write(tmp: Path) -> None:
        nonlocal written
        _trace(module, dummy, tmp, opset, dynamic, exporter)
        model = onnx.load(str(tmp))
        if simplify:
            model = _simplify(model)
        written = finish_graph(model, meta, trt_targets, out_path.name)
        onnx.save(model, str(tmp))

    atomic_write(out_path, write)
    return written


def _simplify(model):  # type: ignore[no-untyped-def]
    try:
        import onnxslim
    except ImportError:
        raise ExportError("--simplify needs onnxslim: pip install 'rpol-edge[onnx]'") from None
    return onnxslim.slim(model)
