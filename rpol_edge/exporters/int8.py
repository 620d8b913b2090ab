"""INT8 for CPU edge devices and TensorRT: ONNX Runtime static quantization, calibrated on fit images.

What gets quantized is a `Recipe` (data, recorded in the artifact's metadata as ``int8_recipe``).
The folded head (1x1 w* conv, channel norm, min-max, Resize, threshold) always stays FP32: it is
cheap and the map's shape depends on it. `CPU_RECIPE` was chosen by measurement
(benchmarks/fidelity/int8_search.py; docs/export.md); `TRT_RECIPE` is the symmetric QDQ graph TensorRT
takes for explicit quantization.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.core.export_formats import ExportError
from rpol_edge.core.files import atomic_write
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.onnx_meta import INPUT, onnx_batch_range, read_onnx_meta
from rpol_edge.data import read_dataset, sample_subset
from rpol_edge.data.loader import iterate_batches
from rpol_edge.exporters.onnx_finish import set_metadata
from rpol_edge.exporters.trt.compat import recorded_targets

FLOAT_GROUPS = ("stem", "depthwise", "last_conv")
"""Backbone convolutions a recipe may keep in FP32 (the w* head conv is never quantized)."""


@dataclass(frozen=True)
class Recipe:
    """One way to quantize the graph; every field is an onnxruntime.quantization choice."""

    format: str = "qdq"
    """``qdq`` (QuantizeLinear/DequantizeLinear pairs, fused by ORT) or ``qoperator`` (QLinearConv)."""
    per_channel: bool = True
    activation: str = "u8"
    """``u8`` (asymmetric uint8: ORT's U8S8 VNNI kernels) or ``s8`` (int8)."""
    weight: str = "s8"
    reduce_range: bool = False
    """7-bit weights: avoids the int16 overflow of U8S8 on CPUs without VNNI; not needed with VNNI."""
    symmetric_activations: bool = False
    calibration: str = "minmax"
    """``minmax``, ``entropy`` or ``percentile``."""
    ops: tuple[str, ...] = ("Conv",)
    """Operator types quantized (Add: the MBConv residuals)."""
    keep_float: tuple[str, ...] = ()
    """Groups of backbone convolutions left in FP32, from FLOAT_GROUPS."""
    quantize_bias: bool = True
    count: int = 64
    """Calibration images."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    def validate(self) -> None:
        checks = {
            "format": (self.format, ("qdq", "qoperator")),
            "activation": (self.activation, ("u8", "s8")),
            "weight": (self.weight, ("u8", "s8")),
            "calibration": (self.calibration, ("minmax", "entropy", "percentile")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ExportError(f"INT8 recipe: {name} {value!r}, choose {', '.join(allowed)}")
        unknown = set(self.keep_float) - set(FLOAT_GROUPS)
        if unknown:
            raise ExportError(f"INT8 recipe: unknown float group(s) {sorted(unknown)}; from {FLOAT_GROUPS}")
        if self.count < 1:
            raise ExportError("INT8 recipe: at least one calibration image")


CPU_RECIPE = Recipe(ops=("Conv", "Clip"))
"""Chosen by benchmarks/fidelity/int8_search.py (docs/export.md). Quantizing Clip (ReLU6) gives each
Conv output its [0, 6] scale: no DequantizeLinear->QuantizeLinear re-quantization per block, and
about 8x finer activation steps than the pre-ReLU6 range."""

TRT_RECIPE = Recipe(activation="s8", symmetric_activations=True, quantize_bias=False)
"""TensorRT explicit quantization: int8 Q/DQ with zero point 0 and float biases (no int32 bias DQ)."""


def calibration_frames(
    data: str, root: Path, split: str, resize: int, crop: int, count: int = 64, seed: int = 0, batch: int = 1
) -> Iterator[np.ndarray]:
    """Batches of ``batch`` pre-processed frames (the graph's fixed batch, or 1 when it is dynamic)."""
    samples = read_dataset(data, root, split)
    ratio = min(1.0, count / max(len(samples), 1))
    pending: list[np.ndarray] = []
    for b in iterate_batches(sample_subset(samples, ratio, seed), resize, crop, batch_size=8, workers=0):
        pending.extend(b.frames)
        while len(pending) >= batch:
            yield np.stack(pending[:batch])
            pending = pending[batch:]


def raw_calibration_frames(
    data: str, root: Path, split: str, meta: ModelMeta, count: int = 64, seed: int = 0, batch: int = 1
) -> Iterator[np.ndarray]:
    """For a graph exported with ``--frame-size``: photos stretched to the W x H frame (bilinear),
    in its channel order, so the calibration sees what a camera would hand it."""
    import cv2

    from rpol_edge.data.images import ImageError, load_rgb

    samples = read_dataset(data, root, split)
    picked = sample_subset(samples, min(1.0, count / max(len(samples), 1)), seed)
    pending: list[np.ndarray] = []
    for s in picked:
        try:
            image = load_rgb(s.path)
        except ImageError:
            continue  # the FP32 export already ran; an unreadable photo only shrinks the set
        frame = cv2.resize(image, (meta.frame_width, meta.frame_height), interpolation=cv2.INTER_LINEAR)
        pending.append(frame[..., ::-1] if meta.frame_format == "bgr" else frame)
        while len(pending) >= batch:
            yield np.ascontiguousarray(np.stack(pending[:batch]))
            pending = pending[batch:]


def float_nodes(model: Any, groups: tuple[str, ...]) -> list[str]:
    """Names of the Conv nodes to keep in FP32: always the w* head (the graph's last Conv), plus
    the requested backbone groups. Convs appear in graph order, the stem first."""
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    if len(convs) < 2:
        raise ExportError("INT8: the graph has no backbone convolution to quantize")
    keep = [convs[-1].name]
    if "stem" in groups:
        keep.append(convs[0].name)
    if "last_conv" in groups:
        keep.append(convs[-2].name)
    if "depthwise" in groups:
        for n in convs[:-1]:
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            if group > 1:
                keep.append(n.name)
    return keep


def quantize_int8(
    fp32_onnx: Path,
    out_path: Path,
    data: str,
    root: Path,
    split: str,
    count: int | None = None,
    symmetric: bool = False,
    recipe: Recipe | None = None,
    trt_targets: tuple[str, ...] | None = None,
) -> ModelMeta:
    """Write an INT8 model next to the FP32 one, carrying the same metadata (precision int8, the
    recipe under ``extra['int8_recipe']``). ``symmetric`` picks `TRT_RECIPE` (the only form TensorRT
    accepts for explicit quantization); otherwise ``recipe`` or `CPU_RECIPE`.

    The symmetric graph is a TensorRT source, so it must pass the static TensorRT check
    (``trt_targets``, default: the targets recorded in the FP32 graph) before it is written.
    """
    _require_ort()
    import onnx

    r = recipe or (TRT_RECIPE if symmetric else CPU_RECIPE)
    if count is not None:
        r = replace(r, count=count)
    r.validate()
    meta = read_onnx_meta(fp32_onnx)
    batches = _calibration_batches(fp32_onnx, meta, data, root, split, r.count)
    trt_source = _is_trt_source(r)
    written = _int8_meta(meta, r, trt_source)
    keep = float_nodes(onnx.load(str(fp32_onnx)), r.keep_float)

    def write(tmp: Path) -> None:
        _quantize(fp32_onnx, tmp, batches, r, keep)
        q = onnx.load(str(tmp))
        if trt_source:
            from rpol_edge.exporters.trt.compat import require_compatible

            require_compatible(q, trt_targets or recorded_targets(meta), out_path.name)
        set_metadata(q, written)
        onnx.save(q, str(tmp))

    atomic_write(out_path, write)
    return written


def _require_ort() -> None:
    try:
        import onnx  # noqa: F401
        from onnxruntime.quantization import (  # noqa: F401
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: F401
    except ImportError:
        raise ExportError("INT8 export needs onnxruntime: pip install 'rpol-edge[ort]'") from None


def _calibration_batches(
    fp32_onnx: Path, meta: ModelMeta, data: str, root: Path, split: str, count: int
) -> list[np.ndarray]:
    """The calibration frames, in batches of the graph's smallest batch, as the graph takes them."""
    lo, _ = onnx_batch_range(fp32_onnx)
    if meta.raw_frames:
        stream = raw_calibration_frames(data, root, split, meta, count, batch=lo)
    else:
        stream = calibration_frames(data, root, split, meta.resize_size, meta.input_size, count, batch=lo)
    # uint8 frames, ~40 MB for 64 at 448: held so the number of batches is known before calibrating.
    batches = list(stream)
    if not batches:
        raise ExportError(f"INT8: no readable calibration image in {root} ({split})")
    return batches


def _is_trt_source(r: Recipe) -> bool:
    """What the graph is follows from the recipe used, not from the flag that picked the default one:
    QDQ with symmetric int8 activations (zero point 0) and float biases is TensorRT's
    explicit-quantization form (TRT_RECIPE); anything else is a CPU graph."""
    return r.format == "qdq" and r.activation == "s8" and r.symmetric_activations and not r.quantize_bias


def _int8_meta(meta: ModelMeta, r: Recipe, trt_source: bool) -> ModelMeta:
    """The FP32 graph's record as precision int8, with the scheme and the recipe."""
    scheme = "symmetric" if r.symmetric_activations else "asymmetric"
    # The CPU (uint8) graph is not a TensorRT source: it does not inherit the FP32 graph's TRT claim.
    extra = {k: v for k, v in meta.extra.items() if trt_source or k != "trt_targets"}
    return meta.replace(precision="int8", extra={**extra, "int8_scheme": scheme, "int8_recipe": r.to_json()})


def _quantize(fp32_onnx: Path, tmp: Path, batches: list[np.ndarray], r: Recipe, keep: list[str]) -> None:
    """ONNX Runtime's static quantization of ``fp32_onnx`` into ``tmp``, calibrated on ``batches``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    frames = iter(batches)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, Any] | None:
            batch = next(frames, None)
            return None if batch is None else {INPUT: batch}

    types = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    options: dict[str, Any] = {
        "ActivationSymmetric": r.symmetric_activations,
        "WeightSymmetric": True,
        "QuantizeBias": r.quantize_bias,
    }
    if r.calibration == "minmax":
        # MinMax ranges merge exactly chunk by chunk: bounded memory at any count. (The histogram
        # methods keep every activation of every image until the end: about 230 MB per image at 448.)
        # onnxruntime 1.32 flushes every N batches and then finds nothing left when N divides the
        # number of batches ("No data is collected"): pick an N that does not (the batches actually
        # read: unreadable photos, a small split and a fixed graph batch all change their number).
        options["CalibMaxIntermediateOutputs"] = next(n for n in range(8, 64) if len(batches) % n)
    pre = tmp.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
        quantize_static(  # onnxruntime raises its own exception types: reported as ExportError below
            str(pre),
            str(tmp),
            Reader(),
            quant_format=QuantFormat.QDQ if r.format == "qdq" else QuantFormat.QOperator,
            per_channel=r.per_channel,
            reduce_range=r.reduce_range,
            activation_type=types[r.activation],
            weight_type=types[r.weight],
            op_types_to_quantize=list(r.ops),
            nodes_to_exclude=keep,
            calibrate_method=methods[r.calibration],
            extra_options=options,
        )
    except Exception as exc:
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"INT8 quantization failed: {exc.__class__.__name__}: {exc}") from None
    finally:
        pre.unlink(missing_ok=True)
