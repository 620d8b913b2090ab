"""Export formats as data: name -> file name, devices, what it needs. Never positional flags."""

from __future__ import annotations

from dataclasses import dataclass


class ExportError(RuntimeError):
    """The graph could not be exported, checked, or read back."""


MAX_FRAME_SIDE = 8192
"""The largest raw-frame side a graph is exported for (8K video is 7680 x 4320): the graph holds
one frame's resize buffers, so a typo like 99999x99999 would ask for tens of GB."""


def parse_frame_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720), each side in 1..MAX_FRAME_SIDE."""
    w, sep, h = text.lower().partition("x")
    try:
        size = (int(w), int(h))
    except ValueError:
        size = (0, 0)
    if not sep or min(size) <= 0:
        raise ValueError(f"frame_size={text!r}: give WIDTHxHEIGHT, e.g. 1280x720")
    if max(size) > MAX_FRAME_SIDE:
        raise ValueError(f"frame_size={text}: at most {MAX_FRAME_SIDE} pixels a side")
    return size


def check_frame_covers_input(size: tuple[int, int], input_size: int) -> None:
    """A raw frame smaller than the model's K x K input would be upsampled inside the graph: no
    detail is gained and the box is as coarse as the frame, so it is refused."""
    if min(size) < input_size:
        raise ExportError(
            f"frame_size={size[0]}x{size[1]}: smaller than the model's {input_size}x{input_size} input, "
            f"the graph would upsample every frame; give frames of at least {input_size} a side (or "
            "export without `frame_size` and let the host resize)"
        )


DEEPSTREAM_INT8 = (
    "`deepstream` with int8=True: nvinfer builds INT8 only with a calibration table (int8-calib-file), "
    "which rpol-edge does not write; export the hand-off in FP32 or with fp16=True (network-mode=2)"
)
"""Without a table nvinfer (DeepStream 6.2, nvdsinfer_model_builder.cpp) warns and builds FP16."""


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
    "openvino": Format(
        "openvino", "model.xml", ("cpu",), "openvino", "OpenVINO IR of the FP32 graph (+ .bin)"
    ),
    "openvino-int8": Format(
        "openvino-int8", "model.int8.xml", ("cpu",), "openvino", "OpenVINO IR of the QDQ INT8 graph (+ .bin)"
    ),
}
