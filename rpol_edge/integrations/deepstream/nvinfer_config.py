"""The nvinfer config and the README of a DeepStream folder: what the hand-off graph
assumes, written so `decode.load_handoff` can read it back and refuse a changed one.
"""

from __future__ import annotations

from typing import Any

from rpol_edge import __version__
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.onnx_meta import MAP_OUTPUTS as OUTPUTS
from rpol_edge.integrations.deepstream.decode import (
    CONFIG_NAME,
    MODE_NAMES,
    ONNX_NAME,
    SIDECAR_NAME,
    NvinferSettings,
)

COMMENTS = {
    "process-mode": "1: primary, the whole frame.",
    "model-engine-file": "nvinfer builds the engine on the first start and writes it under this name "
    "beside the ONNX (the folder must be writable); later starts load it.",
    "batch-size": "The graph's batch: fixed, or the maximum of a dynamic one.",
    "network-mode": "0 FP32, 2 FP16 (TensorRT's FP16 flag over the FP32 graph).",
    "net-scale-factor": "y = net-scale-factor * (x - offsets[c]) on the uint8 RGB pixels.",
    "model-color-format": "0: RGB (planar, NCHW).",
    "maintain-aspect-ratio": "Stretch the whole frame to the network size: the geometry the decode "
    "maps boxes back with. Do not change.",
    "scaling-filter": "1: bilinear (nvinfer's default is nearest neighbour).",
    "scaling-compute-hw": "1: scale on the GPU (0 lets nvinfer pick: the VIC on Jetson; 2: the VIC).",
    "network-type": "100: nvinfer parses nothing; with output-tensor-meta=1 the raw score and mask "
    "tensors go to the pad probe (rpol_edge.integrations.deepstream.probe).",
}


KEY_ORDER = (
    "gpu-id", "gie-unique-id", "process-mode", "interval", "onnx-file", "model-engine-file", "batch-size",
    "network-mode", "workspace-size", "net-scale-factor", "offsets", "model-color-format",
    "maintain-aspect-ratio", "symmetric-padding", "scaling-filter", "scaling-compute-hw", "network-type",
    "output-tensor-meta", "output-blob-names",
)  # fmt: skip


def config_text(settings: NvinferSettings, meta: ModelMeta) -> str:
    """The nvinfer config (GLib key file), the keys commented where a user may wonder."""
    k, s = meta.input_size, meta.resize_size
    lines = [
        f"# rpol-edge localizer: {meta.backbone}, network input {s}x{s} float32 RGB 0..255, "
        f"center {k}x{k} crop in the graph, outputs score and mask (1x{k}x{k} float32).",
        f"# Written by rpol-edge {__version__} export --deepstream: read README.txt first.",
        "[property]",
    ]
    written = settings.properties()
    props = {key: written[key] for key in KEY_ORDER}
    if settings.net_scale_factor == 1.0 and not any(settings.offsets):
        norm_note = "The identity here: mean and std stay in the graph (exact for any std)."
    else:
        norm_note = "Part of the normalization folded here, the rest in the graph."
    for key, value in props.items():
        note = COMMENTS.get(key)
        if key == "net-scale-factor":
            note = f"{COMMENTS[key]} {norm_note}"
        if note:
            lines.append(f"# {note}")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def assumptions(
    meta: ModelMeta, settings: NvinferSettings, batch: tuple[int, int], normalization: str
) -> dict[str, Any]:
    """What the config assumes, in words and numbers, for the record."""
    k, s = meta.input_size, meta.resize_size
    return {
        "network_input": {
            "name": "frames",
            "dtype": "float32",
            "layout": "NCHW",
            "shape": [3, s, s],
            "color": "RGB",
            "values": "net-scale-factor * (pixel - offsets[c])",
        },
        "outputs": {name: {"dtype": "float32", "shape": [meta.n_heads, k, k]} for name in OUTPUTS},
        "batch": {"min": batch[0], "max": batch[1]},
        "precision": MODE_NAMES[settings.network_mode],
        "normalization": normalization,
        "geometry": (
            f"nvinfer stretches the whole frame (width and height rounded down to even) to {s}x{s}; "
            f"the graph takes the center {k}x{k} (offset {int(round((s - k) / 2.0))}); boxes map back "
            "with CropTransform over the even-rounded frame"
        ),
    }


def readme_text(meta: ModelMeta, settings: NvinferSettings, batch: tuple[int, int]) -> str:
    k, s = meta.input_size, meta.resize_size
    engine = settings.model_engine_file
    return f"""rpol-edge localizer for NVIDIA DeepStream (Gst-nvinfer)
============================================================

Written by rpol-edge {__version__} (rpol-edge export --deepstream). Model: {meta.backbone},
operating point {meta.operating.label()}, input {k}x{k}.

Files
  {ONNX_NAME:28s} the graph nvinfer builds its TensorRT engine from: input float32
  {"":28s} (N, 3, {s}, {s}) planar RGB 0..255, the center {k}x{k} cropped inside; outputs
  {"":28s} score and mask (N, 1, {k}, {k}) float32 (mask 0/1). Batch {_batch(batch)}.
  {CONFIG_NAME:28s} the nvinfer config (network-type=100, output-tensor-meta=1).
  {SIDECAR_NAME:28s} the model's metadata and what the config assumes; the decode reads it
  {"":28s} and refuses a config or graph that does not match.
  {engine:28s} written by nvinfer on its first start (not by rpol-edge).

What nvinfer does, what the probe does
  nvinfer stretches each whole frame (nvstreammux's output) to {s}x{s} (maintain-aspect-ratio=0,
  bilinear, on the GPU), writes it as float RGB with net-scale-factor=1 and offsets 0 (the
  model's mean/std normalization is in the graph), runs the engine and attaches the raw score
  and mask tensors to the frame. It draws nothing by itself: a pad probe on nvinfer's src pad
  turns the tensors into the box, with the same contour code as rpol-edge, mapped back to the
  frame with the geometry nvinfer used, and attaches it as an object (class 0, label "object",
  confidence = mean score in the box).

On the DeepStream machine
  rpol-edge's base install, no extras: NumPy and OpenCV, no PyTorch (pip install -e . in the
  repository; on Jetson, docs/jetson.md: JetPack's OpenCV, the jetpack6x extra).
  The engine build alone (checks the graph and the config on this TensorRT):
    gst-launch-1.0 filesrc location=video.mp4 ! qtdemux ! h264parse ! nvv4l2decoder ! m.sink_0 \\
      nvstreammux name=m batch-size={settings.batch_size} width=1280 height=720 ! \\
      nvinfer config-file-path={CONFIG_NAME} ! fakesink
  In deepstream-app: [primary-gie] enable=1, config-file={CONFIG_NAME}; deepstream-app has no
  Python probe, so it runs the model but shows no box: use a Python pipeline for boxes.

  In a Python pipeline (pyds, as NVIDIA's deepstream_python_apps):
    from rpol_edge.integrations.deepstream.decode import load_handoff
    from rpol_edge.integrations.deepstream.probe import make_probe
    handoff = load_handoff("THIS_FOLDER")     # refuses a mismatched config or graph
    pgie.get_static_pad("src").add_probe(
        Gst.PadProbeType.BUFFER, make_probe(handoff, frame_size=(MUX_WIDTH, MUX_HEIGHT)))
  frame_size is the size of the frames nvinfer scaled: nvstreammux's width and height (leave it
  out to read it from the pad's caps). make_probe(..., on_detection=fn) calls fn(frame_meta,
  detection) for every frame; detection.box is None when the frame has no object.

Do not edit
  onnx-file, process-mode, network-type, output-tensor-meta, output-blob-names,
  model-color-format, net-scale-factor, offsets, maintain-aspect-ratio: the graph and the decode
  assume them, and load_handoff refuses a config where they changed. batch-size (up to the graph's
  maximum), network-mode (0 FP32, 2 FP16), gie-unique-id, scaling-filter and scaling-compute-hw
  may be changed; update model-engine-file to nvinfer's name for the new batch-size and mode.

Not supported: INT8 (nvinfer needs a calibration table), class-wise models, secondary mode.
"""


def _batch(batch: tuple[int, int]) -> str:
    return f"fixed {batch[0]}" if batch[0] == batch[1] else f"dynamic {batch[0]}..{batch[1]}"
