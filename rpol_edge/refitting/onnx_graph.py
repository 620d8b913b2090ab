"""The fit graph of an exported ONNX model, and the model with a new w*.

Every graph rpol-edge exports (FP32, FP16, INT8 QDQ, raw-frame input, legacy or dynamo exporter)
ends its backbone in one 1x1 convolution whose weight is w* (core/localizer.py; the INT8 export
never quantizes it, exporters/int8.py). Its input is f, float32 (N, C, h, w), after the model's own
pre-processing and backbone. The fit graph keeps everything up to f and outputs

* ``v_mean``   (N, C): the spatial mean of f,
* ``u_mean``   (N, C): the spatial mean of f / max(||f||, eps) (the norm over channels),
* ``norm_sum`` (N,):   the sum of ||f|| over the h x w cells,

the per-image sums of core/wstar.py, computed in float32 inside the graph (C + C + 1 floats per
image leave the device instead of C x h x w). The ops (ReduceMean, ReduceL2, ReduceSum, Max, Div)
are in TensorRT's ONNX operator matrix. Graphs exported by earlier rpol-edge versions have the
same convolution, so they refit too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rpol_edge.core.metadata import MetadataError, ModelMeta

SUMS = ("v_mean", "u_mean", "norm_sum")
"""The fit graph's outputs, in this order."""
CELLS = "unit_cells"
"""The fit graph of a ``scene`` model (a fixed camera) also outputs f / ||f|| per cell, (N, C, h, w):
the per-cell sums of its scene model (core/scene.py), added on the host after the batch padding is
cut off."""
FIT_KEY = "rpol_edge_fit"
"""metadata_props key of a fit graph written to a file: the model's record, so nobody runs it as a
model (it has no score or mask)."""
EPS = 1e-12
"""The guard of core/wstar.py: an all-zero feature vector gives a zero unit vector, not NaN."""


class RefitError(ValueError):
    """A model that cannot be refitted (no w* convolution, class-wise, caam head...)."""


def onnx_module() -> Any:
    try:
        import onnx
    except ImportError:
        raise RefitError("refitting an ONNX model needs onnx: pip install 'rpol-edge[onnx]'") from None
    return onnx


@dataclass(frozen=True)
class HeadConv:
    """The w* convolution of a graph: the node, its weight (an initializer) and its input f."""

    node: Any
    weight: str
    features: str


def check_refittable(meta: ModelMeta, source: str) -> None:
    """One line for models refit cannot rewrite: w* lives in the graph as one convolution only for
    the class-agnostic rpol head."""
    if meta.head != "rpol":
        raise RefitError(f"{source}: head {meta.head!r} has no w* to refit (the caam baseline sums channels)")
    if meta.operating_point == "zscore":
        raise RefitError(
            f"{source}: a zscore model's cell statistics need a second pass over the frames, which "
            "refit does not run yet; fit it again with `rpol-edge fit --operating-point zscore`"
        )
    if meta.n_heads != 1:
        raise RefitError(
            f"{source}: a class-wise model ({meta.n_heads} heads) needs labels; refit a class-agnostic one"
        )


def scene_shape(meta: ModelMeta) -> list[int]:
    """(1, C, h, w): the scene constant of a ``scene`` model's graph."""
    cells = meta.input_size // meta.feature_stride
    return [1, meta.channels, cells, cells]


def find_scene(model: Any, meta: ModelMeta, source: str) -> HeadConv:
    """A ``scene`` model's Mul of f by its float (1, C, h, w) scene constant: the node, the
    constant and f (the localizer's response, modeling/localizer.py)."""
    inits = {t.name: t for t in model.graph.initializer}
    want = scene_shape(meta)
    for node in model.graph.node:
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        for k in (0, 1):
            b = inits.get(node.input[k])
            if b is not None and list(b.dims) == want and b.data_type == 1:  # FLOAT
                return HeadConv(node, node.input[k], node.input[1 - k])
    raise RefitError(f"{source}: no scene constant (a float {tuple(want)} Mul operand) in the graph")


def find_head(model: Any, meta: ModelMeta, source: str) -> HeadConv:
    """The last Conv whose weight is a (n_heads, channels, 1, 1) initializer: the w* head (the
    backbone's own 1x1 convolutions have another shape or come earlier); for a ``scene`` model,
    which has no w* in its graph, the scene constant's Mul (`find_scene`)."""
    if meta.operating_point == "scene":
        return find_scene(model, meta, source)
    inits = {t.name: t for t in model.graph.initializer}
    want = [meta.n_heads, meta.channels, 1, 1]
    for node in reversed(model.graph.node):
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        w = inits.get(node.input[1])
        if w is not None and list(w.dims) == want and w.data_type == 1:  # FLOAT
            return HeadConv(node, node.input[1], node.input[0])
    raise RefitError(
        f"{source}: no w* convolution (a float {tuple(want)} Conv weight) in the graph; "
        "not a graph rpol-edge exported?"
    )


def opset_of(model: Any) -> int:
    return int(next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0))


def _reduce(
    onnx: Any, op: str, x: str, axes: list[int], keep: int, out: str, opset: int, extra: list[Any]
) -> Any:
    """A Reduce* node whose axes are an attribute (opset < 18; ReduceSum < 13) or an input."""
    if op == "ReduceSum" and opset >= 13 or opset >= 18:
        name = f"{out}/axes"
        extra.append(onnx.numpy_helper.from_array(np.asarray(axes, np.int64), name))
        return onnx.helper.make_node(op, [x, name], [out], keepdims=keep, name=out)
    return onnx.helper.make_node(op, [x], [out], axes=axes, keepdims=keep, name=out)


def fit_graph(model: Any, meta: ModelMeta, source: str) -> Any:
    """A new ModelProto: the model's input and everything up to f, then the three per-image sums.
    ``model`` is left as it is."""
    onnx = onnx_module()
    check_refittable(meta, source)
    head = find_head(model, meta, source)
    opset = opset_of(model)
    f = head.features
    consts: list[Any] = []
    eps = "fit/eps"
    consts.append(onnx.numpy_helper.from_array(np.asarray(EPS, np.float32), eps))
    nodes = [
        _reduce(onnx, "ReduceMean", f, [2, 3], 0, SUMS[0], opset, consts),
        _reduce(onnx, "ReduceL2", f, [1], 1, "fit/norm", opset, consts),
        onnx.helper.make_node("Max", ["fit/norm", eps], ["fit/norm_guarded"], name="fit/norm_guarded"),
        onnx.helper.make_node("Div", [f, "fit/norm_guarded"], ["fit/unit"], name="fit/unit"),
        _reduce(onnx, "ReduceMean", "fit/unit", [2, 3], 0, SUMS[1], opset, consts),
        _reduce(onnx, "ReduceSum", "fit/norm", [1, 2, 3], 0, SUMS[2], opset, consts),
    ]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    n: Any = batch.dim_param or batch.dim_value or "batch"
    c = meta.channels
    outputs = [
        onnx.helper.make_tensor_value_info(SUMS[0], onnx.TensorProto.FLOAT, [n, c]),
        onnx.helper.make_tensor_value_info(SUMS[1], onnx.TensorProto.FLOAT, [n, c]),
        onnx.helper.make_tensor_value_info(SUMS[2], onnx.TensorProto.FLOAT, [n]),
    ]
    if meta.operating_point == "scene":
        nodes.append(onnx.helper.make_node("Identity", ["fit/unit"], [CELLS], name=CELLS))
        outputs.append(
            onnx.helper.make_tensor_value_info(CELLS, onnx.TensorProto.FLOAT, [n, *scene_shape(meta)[1:]])
        )
    kept = _needed(list(model.graph.node), {f})
    used = {i for node in kept for i in node.input}
    graph = onnx.helper.make_graph(
        kept + nodes,
        "rpol_edge_fit",
        list(model.graph.input),
        outputs,
        initializer=[t for t in model.graph.initializer if t.name in used] + consts,
    )
    fit = onnx.helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    prop = fit.metadata_props.add()
    prop.key, prop.value = FIT_KEY, meta.to_json()
    return fit


def _needed(nodes: list[Any], wanted: set[str]) -> list[Any]:
    """The nodes that ``wanted`` tensors depend on, in their original (topological) order."""
    need = set(wanted)
    keep = []
    for node in reversed(nodes):
        if any(o in need for o in node.output):
            keep.append(node)
            need.update(i for i in node.input if i)
    return keep[::-1]


def head_weight(model: Any, meta: ModelMeta, source: str) -> np.ndarray:
    """w* as the graph holds it, (n_heads, C) float32 (a ``scene`` model: its scene, `weight_array`)."""
    onnx = onnx_module()
    head = find_head(model, meta, source)
    init = next(t for t in model.graph.initializer if t.name == head.weight)
    return weight_array(onnx.numpy_helper.to_array(init), meta)


def weight_array(value: Any, meta: ModelMeta) -> np.ndarray:
    """A graph's w* as (n_heads, C) float32; a ``scene`` model's scene as (C, h, w)."""
    shape = scene_shape(meta)[1:] if meta.operating_point == "scene" else [meta.n_heads, meta.channels]
    return np.asarray(value, np.float32).reshape(shape)


def replace_head(model: Any, meta: ModelMeta, w: np.ndarray, source: str) -> None:
    """Put ``w`` (n_heads, C) into the w* convolution's weight, in place; nothing else changes.
    For a ``scene`` model ``w`` is its scene, (C, h, w), put into the scene constant."""
    onnx = onnx_module()
    head = find_head(model, meta, source)
    shape = scene_shape(meta) if meta.operating_point == "scene" else [meta.n_heads, meta.channels, 1, 1]
    w32 = np.asarray(w, np.float32).reshape(shape)
    for i, t in enumerate(model.graph.initializer):
        if t.name == head.weight:
            model.graph.initializer[i].CopyFrom(onnx.numpy_helper.from_array(w32, head.weight))
            return
    raise MetadataError(f"{source}: the w* weight {head.weight!r} vanished")  # find_head found it
