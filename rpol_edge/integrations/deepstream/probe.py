"""The pad probe for a DeepStream pipeline: nvinfer's tensor meta -> NumPy -> rpol-edge's box.

Thin glue over `deepstream_decode` (which tests call with arrays): find the ``NvDsInferTensorMeta``
that nvinfer (``network-type=100``, ``output-tensor-meta=1``) attached to each frame, copy its host
buffers out through ``pyds.get_ptr`` and ctypes (as NVIDIA's deepstream_python_apps do), decode, and
attach the box as an ``NvDsObjectMeta`` so nvdsosd draws it and a tracker can follow it.

pyds and GStreamer's Python bindings come with DeepStream; they are imported only when a probe is
made, so this module imports anywhere.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rpol_edge.core.metadata import MetadataError
from rpol_edge.core.onnx_meta import MAP_OUTPUTS as OUTPUTS
from rpol_edge.integrations.deepstream.decode import Handoff
from rpol_edge.results.detection import Detection

NVDSINFER_DTYPES: dict[int, type[np.generic]] = {0: np.float32, 1: np.float16, 2: np.int8, 3: np.int32}
"""NvDsInferDataType (FLOAT, HALF, INT8, INT32) -> NumPy; nvinfer has no UINT8, hence the float mask."""
UNTRACKED_OBJECT_ID = 0xFFFFFFFFFFFFFFFF


def layer_array(address: int, dims: Sequence[int], data_type: int) -> np.ndarray:
    """A copy of ``prod(dims)`` elements of NvDsInferDataType ``data_type`` at host ``address``.

    A copy, because the buffer belongs to nvinfer's output pool and is refilled once the probe
    returns."""
    if data_type not in NVDSINFER_DTYPES:
        raise MetadataError(f"tensor data type {data_type}: not one nvinfer writes (0..3)")
    if not address:
        raise MetadataError("tensor has no host buffer (disable-output-host-copy=1?)")
    out = np.empty(tuple(int(d) for d in dims), dtype=NVDSINFER_DTYPES[data_type])
    ctypes.memmove(out.ctypes.data, int(address), out.nbytes)
    return out


def tensor_arrays(pyds: Any, tensor_meta: Any) -> dict[str, np.ndarray]:
    """Output layer name -> its array (shape from ``inferDims``, no batch axis: one frame's)."""
    out: dict[str, np.ndarray] = {}
    for i in range(int(tensor_meta.num_output_layers)):
        layer = pyds.get_nvds_LayerInfo(tensor_meta, i)  # sets layer.buffer to the frame's host copy
        dims = [int(layer.inferDims.d[j]) for j in range(int(layer.inferDims.numDims))]
        out[str(layer.layerName)] = layer_array(pyds.get_ptr(layer.buffer), dims, int(layer.dataType))
    return out


def score_and_mask(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The two outputs the graph names (``output-blob-names=score;mask``)."""
    missing = [name for name in OUTPUTS if name not in arrays]
    if missing:
        raise MetadataError(
            f"the tensor meta has {', '.join(sorted(arrays)) or 'no layers'}, not {' and '.join(missing)}: "
            "is output-blob-names=score;mask?"
        )
    return arrays[OUTPUTS[0]], arrays[OUTPUTS[1]]


def frame_tensor_meta(pyds: Any, frame_meta: Any, unique_id: int) -> Any | None:
    """The tensor meta nvinfer ``unique_id`` attached to this frame, or None."""
    item = frame_meta.frame_user_meta_list
    while item is not None:
        user_meta = pyds.NvDsUserMeta.cast(item.data)
        if user_meta.base_meta.meta_type == pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META:
            tensor_meta = pyds.NvDsInferTensorMeta.cast(user_meta.user_meta_data)
            if int(tensor_meta.unique_id) == unique_id:
                return tensor_meta
        item = item.next
    return None


def rect(box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """Inclusive pixel box (x0, y0, x1, y1) -> NvOSD_RectParams (left, top, width, height)."""
    x0, y0, x1, y1 = box
    return float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)


def attach_object(pyds: Any, batch_meta: Any, frame_meta: Any, d: Detection, component_id: int) -> None:
    """The box as an object of class 0 on the frame (confidence: the mean score inside it)."""
    assert d.box is not None
    obj = pyds.nvds_acquire_obj_meta_from_pool(batch_meta)
    r = obj.rect_params
    r.left, r.top, r.width, r.height = rect(d.box)
    r.border_width = 3
    r.border_color.set(0.0, 1.0, 0.0, 1.0)
    r.has_bg_color = 0
    obj.confidence = float(d.score)
    obj.class_id = 0
    obj.unique_component_id = component_id
    obj.object_id = UNTRACKED_OBJECT_ID
    obj.obj_label = "object"
    obj.text_params.display_text = f"object {d.score:.2f}"
    pyds.nvds_add_obj_meta_to_frame(frame_meta, obj, None)


def make_probe(
    handoff: Handoff,
    frame_size: tuple[int, int] | None = None,
    min_area: float = 0.0,
    attach: bool = True,
    on_detection: Callable[[Any, Detection], None] | None = None,
) -> Callable[[Any, Any, Any], Any]:
    """A buffer probe for nvinfer's src pad: ``pad.add_probe(Gst.PadProbeType.BUFFER, probe)``.

    ``frame_size``: (W, H) of the frames nvinfer scaled, nvstreammux's ``width`` x ``height``; None
    reads them from the pad's caps (the batched surface, the same size). ``attach``: add the box as
    an ``NvDsObjectMeta``; ``on_detection(frame_meta, detection)`` is called for every frame with
    tensors, a frame without an object included (``detection.box`` None). A hand-off that does not
    match the tensors is reported in one line on stderr and the probe removes itself.
    """
    import pyds
    from gi.repository import Gst

    checked: list[bool] = []
    gie_id = handoff.gie_unique_id

    def probe(pad: Any, info: Any, _user_data: Any = None) -> Any:
        buf = info.get_buffer()
        if buf is None:
            return Gst.PadProbeReturn.OK
        batch_meta = pyds.gst_buffer_get_nvds_batch_meta(hash(buf))
        size = frame_size or _caps_size(pad)
        item = batch_meta.frame_meta_list
        try:
            while item is not None:
                frame_meta = pyds.NvDsFrameMeta.cast(item.data)
                tensor_meta = frame_tensor_meta(pyds, frame_meta, gie_id)
                if tensor_meta is not None:
                    if not checked:
                        net = tensor_meta.network_info
                        handoff.check_network(net.width, net.height, bool(tensor_meta.maintain_aspect_ratio))
                        checked.append(True)
                    score, mask = score_and_mask(tensor_arrays(pyds, tensor_meta))
                    d = handoff.decode(score, mask, size, min_area)
                    if attach and d.box is not None:
                        attach_object(pyds, batch_meta, frame_meta, d, gie_id)
                    if on_detection is not None:
                        on_detection(frame_meta, d)
                item = item.next
        except (MetadataError, ValueError) as exc:
            print(f"rpol-edge probe: {exc}; probe removed", file=sys.stderr)
            return Gst.PadProbeReturn.REMOVE
        return Gst.PadProbeReturn.OK

    return probe


def _caps_size(pad: Any) -> tuple[int, int]:
    s = pad.get_current_caps().get_structure(0)
    return int(s.get_value("width")), int(s.get_value("height"))
