"""The fit graph and the w* replacement through OpenVINO's own graph API (an IR, or an ONNX file
read by OpenVINO), the same cut and the same three reductions as `onnx_graph`."""

from __future__ import annotations

from typing import Any

import numpy as np

from rpol_edge.core.metadata import ModelMeta
from rpol_edge.refitting.onnx_graph import (
    CELLS,
    EPS,
    SUMS,
    RefitError,
    check_refittable,
    scene_shape,
    weight_array,
)


def ov_modules() -> tuple[Any, Any]:
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        raise RefitError(
            "refitting with OpenVINO needs openvino: pip install 'rpol-edge[openvino]'"
        ) from None
    return ov, ops


def find_scene(model: Any, meta: ModelMeta, source: str) -> tuple[Any, int]:
    """A ``scene`` model's Multiply of f by its float (1, C, h, w) scene Constant, and which of
    its inputs the Constant is."""
    want = scene_shape(meta)
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Multiply":
            continue
        for k in (0, 1):
            b = op.input_value(k).get_node()
            if b.get_type_name() == "Constant" and list(b.get_output_shape(0)) == want:
                if b.get_output_element_type(0).get_type_name() == "f32":
                    return op, k
    raise RefitError(
        f"{source}: no scene constant (a float {tuple(want)} Multiply operand) in the OpenVINO model"
    )


def _weight_input(model: Any, meta: ModelMeta, source: str) -> tuple[Any, int]:
    """The op that reads w* (a ``scene`` model: its scene) and the input index it reads it at."""
    if meta.operating_point == "scene":
        return find_scene(model, meta, source)
    return find_head(model, meta, source), 1


def find_head(model: Any, meta: ModelMeta, source: str) -> Any:
    """The last Convolution whose weight is a float (n_heads, channels, 1, 1) Constant: w*."""
    want = [meta.n_heads, meta.channels, 1, 1]
    for op in reversed(model.get_ordered_ops()):
        if op.get_type_name() != "Convolution":
            continue
        w = op.input_value(1).get_node()
        if w.get_type_name() == "Constant" and list(w.get_output_shape(0)) == want:
            if w.get_output_element_type(0).get_type_name() == "f32":
                return op
    raise RefitError(f"{source}: no w* convolution (a float {tuple(want)} weight) in the OpenVINO model")


def fit_model(model: Any, meta: ModelMeta, source: str) -> Any:
    """A new ov.Model on a clone of ``model``: its parameters, f, and the per-image sums."""
    ov, ops = ov_modules()
    check_refittable(meta, source)
    model = model.clone()
    op, k = _weight_input(model, meta, source)
    f = op.input_value(1 - k)
    norm = ops.reduce_l2(f, ops.constant(np.asarray([1], np.int64)), True)
    unit = ops.divide(f, ops.maximum(norm, ops.constant(np.asarray(EPS, np.float32))))
    spatial = ops.constant(np.asarray([2, 3], np.int64))
    outs = [
        ops.reduce_mean(f, spatial, False),
        ops.reduce_mean(unit, spatial, False),
        ops.reduce_sum(norm, ops.constant(np.asarray([1, 2, 3], np.int64)), False),
    ]
    names = list(SUMS)
    if meta.operating_point == "scene":  # the scene's per-cell sums (onnx_graph.CELLS)
        outs.append(unit)
        names.append(CELLS)
    results = []
    for name, node in zip(names, outs, strict=True):
        node.output(0).get_tensor().set_names({name})
        results.append(ops.result(node))
    return ov.Model(results, model.get_parameters(), "rpol_edge_fit")


def head_weight(model: Any, meta: ModelMeta, source: str) -> np.ndarray:
    op, k = _weight_input(model, meta, source)
    return weight_array(op.input_value(k).get_node().get_data(), meta)


def replace_head(model: Any, meta: ModelMeta, w: np.ndarray, source: str) -> None:
    """The w* convolution reads a new Constant holding ``w``, in place; nothing else changes.
    For a ``scene`` model ``w`` is its scene (C, h, w), read by the scene's Multiply."""
    _, ops = ov_modules()
    op, k = _weight_input(model, meta, source)
    shape = scene_shape(meta) if meta.operating_point == "scene" else [meta.n_heads, meta.channels, 1, 1]
    w32 = np.ascontiguousarray(np.asarray(w, np.float32).reshape(shape))
    op.input(k).replace_source_output(ops.constant(w32).output(0))
