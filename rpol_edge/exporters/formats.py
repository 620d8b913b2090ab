"""Export formats as data: name -> file name, devices, what it needs. Never positional flags."""

from __future__ import annotations

from dataclasses import dataclass


class ExportError(RuntimeError):
    """The graph could not be exported, checked, or read back."""


@dataclass(frozen=True)
class Format:
    name: str
    filename: str
    devices: tuple[str, ...]
    extra: str
    description: str


FORMATS: dict[str, Format] = {
    "onnx": Format(
        "onnx", "model.onnx", ("cpu", "cuda"), "onnx", "fused FP32 graph (ONNX Runtime, TensorRT input)"
    ),
    "onnx-fp16": Format(
        "onnx-fp16", "model.fp16.onnx", ("cuda",), "onnx", "FP16 backbone graph (strongly typed TensorRT)"
    ),
    "onnx-int8": Format(
        "onnx-int8", "model.int8.onnx", ("cpu",), "ort", "QDQ INT8, calibrated on fit images (CPU)"
    ),
    "onnx-int8-trt": Format(
        "onnx-int8-trt",
        "model.int8.trt.onnx",
        ("cuda",),
        "ort",
        "symmetric QDQ INT8, the TensorRT INT8 source",
    ),
    "trt": Format("trt", "model.engine", ("cuda",), "tensorrt", "TensorRT plan + JSON sidecar"),
}
