"""The last step of every exported ONNX graph, torch-free: its real opset recorded, the static
TensorRT check, the metadata record and onnx.checker. The export (`onnx_export`, torch), the
DeepStream and INT8 graphs and the refit writers (no torch) all end here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rpol_edge.core.export_formats import ExportError
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.onnx_meta import META_KEY
from rpol_edge.exporters.trt.compat import require_compatible, targets_for_opset


def require_onnx() -> Any:
    """The onnx module, or the one-line error naming the extra that brings it."""
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs onnx: pip install 'rpol-edge[onnx]'") from None
    return onnx


def finish_graph(
    model: Any,
    meta: ModelMeta,
    trt_targets: Sequence[str] | None,
    name: str,
    key: str = META_KEY,
    **extra: str,
) -> ModelMeta:
    """The last steps every exported graph takes: its real opset recorded, the static TensorRT
    check, the metadata record (under ``key``; ``extra`` added to it) and onnx.checker. Returns the
    record written."""
    onnx = require_onnx()
    # The dynamo exporter may keep a newer opset when it cannot down-convert (e.g. Pad to 17):
    # record the opset the file really has.
    actual = int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))
    targets = tuple(trt_targets) if trt_targets is not None else targets_for_opset(actual)
    require_compatible(model, targets, f"{name} (opset {actual})")
    # The outputs recorded, so a tool reading an engine's sidecar knows them without the graph.
    outputs = ",".join(o.name for o in model.graph.output)
    written = meta.replace(
        opset=actual, extra={**meta.extra, "trt_targets": ",".join(targets), "outputs": outputs, **extra}
    )
    written = written.shipped()
    set_metadata(model, written, key)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"{name} fails onnx.checker: {exc}") from None
    return written


def set_metadata(model: Any, meta: ModelMeta, key: str = META_KEY) -> None:
    """The record as one JSON entry under ``key``; rpol-edge's own record (``META_KEY``) also
    spells out each field, for tools that list ONNX metadata."""
    del model.metadata_props[:]
    entries = {key: meta.to_json()}
    if key == META_KEY:
        entries |= {k: str(v) for k, v in meta.to_dict().items()}
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    model.producer_name = "rpol-edge"
    model.producer_version = meta.package_version
