"""INT8 for CPU edge devices: ONNX Runtime static quantization (QDQ), calibrated on fit images.

Only the backbone's convolutions are quantized: the folded head, the norm division, min-max and the
threshold stay FP32, since they are cheap and the map's shape depends on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.artifact import atomic_write
from rpol_edge.data import read_dataset
from rpol_edge.export.onnx_export import (
    INPUT,
    ExportError,
    _set_metadata,
    onnx_batch_range,
    read_onnx_meta,
    targets_for_opset,
)
from rpol_edge.fit import sample_subset
from rpol_edge.loader import iterate_batches
from rpol_edge.metadata import ModelMeta


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


def quantize_int8(
    fp32_onnx: Path,
    out_path: Path,
    data: str,
    root: Path,
    split: str,
    count: int = 64,
    symmetric: bool = False,
    trt_targets: tuple[str, ...] | None = None,
) -> ModelMeta:
    """Write a QDQ INT8 model next to the FP32 one, carrying the same metadata (precision int8).

    ``symmetric`` writes int8 activations with zero point 0, the only form TensorRT accepts for
    explicit quantization; the default (uint8 activations) suits ONNX Runtime's CPU kernels.
    The symmetric graph is a TensorRT source, so it must pass the static TensorRT check
    (``trt_targets``, default: the targets recorded in the FP32 graph) before it is written.
    """
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise ExportError("INT8 export needs onnxruntime: pip install 'rpol-edge[ort]'") from None
    meta = read_onnx_meta(fp32_onnx)
    lo, _ = onnx_batch_range(fp32_onnx)
    frames = calibration_frames(data, root, split, meta.resize_size, meta.input_size, count, batch=lo)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, Any] | None:
            batch = next(frames, None)
            return None if batch is None else {INPUT: batch}

    scheme = "symmetric" if symmetric else "asymmetric"
    # The CPU (uint8) graph is not a TensorRT source: it does not inherit the FP32 graph's TRT claim.
    extra = {k: v for k, v in meta.extra.items() if symmetric or k != "trt_targets"}
    written = meta.replace(precision="int8", extra={**extra, "int8_scheme": scheme})
    model = onnx.load(str(fp32_onnx))
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    head = convs[-1:]  # the folded w* conv is the last convolution of the graph

    def write(tmp: Path) -> None:
        pre = tmp.with_suffix(".pre.onnx")
        try:
            quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
            quantize_static(  # onnxruntime raises its own exception types: reported as ExportError below
                str(pre),
                str(tmp),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv"],
                nodes_to_exclude=head,
                calibrate_method=CalibrationMethod.MinMax,
                # TensorRT takes int8 Q/DQ with zero point 0 and float biases (no int32 bias DQ).
                extra_options={
                    "ActivationSymmetric": symmetric,
                    "WeightSymmetric": True,
                    "QuantizeBias": not symmetric,
                },
            )
        except Exception as exc:
            if isinstance(exc, ExportError):
                raise
            raise ExportError(f"INT8 quantization failed: {exc.__class__.__name__}: {exc}") from None
        finally:
            pre.unlink(missing_ok=True)
        q = onnx.load(str(tmp))
        if symmetric:
            from rpol_edge.export.trt_compat import parse_targets, require_compatible

            recorded = meta.extra.get("trt_targets", "")
            targets = trt_targets or (parse_targets(recorded) if recorded else targets_for_opset(meta.opset))
            require_compatible(q, targets, out_path.name)
        _set_metadata(q, written)
        onnx.save(q, str(tmp))

    atomic_write(out_path, write)
    return written
