"""Write the refitted model: the same graph with the new w* in its 1x1 convolution and the new
record; nothing else in the graph changes. Every file is written to a temporary name and renamed,
so a failed refit leaves no half-written model.

* ONNX: the convolution's initializer replaced; the record and the last checks (static TensorRT
  check for the TensorRT versions the export was checked for, onnx.checker) by the export's own
  `finish_graph`.
* OpenVINO IR: the convolution's weight Constant replaced, the record in the rt_info, saved as
  ``export --openvino`` saves it (the .bin first, the .xml last).
* TensorRT engine: rebuilt. An engine is a compiled plan; TensorRT can change weights in place
  only in an engine built refittable (``BuilderFlag.REFIT``), which rpol-edge's engines are not
  (a refittable engine gives up some optimizations). So the ONNX it was built from is refitted
  beside the output and the engine built from it with the same precision and batch profile, on
  this device, by the export's own `build_engine`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rpol_edge.core.files import atomic_write
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.refitting.onnx_graph import RefitError, replace_head

if TYPE_CHECKING:
    from rpol_edge.refitting.models import Opened


def write_model(model: Opened, output: Path, meta: ModelMeta, w: np.ndarray) -> list[Path]:
    """``output`` of the same kind as ``model``; the paths written (an engine: also its ONNX)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if model.kind == "openvino":
        write_ir(model, output, meta, w)
        return [output, output.with_suffix(".bin")]
    if model.kind == "onnx":
        write_onnx(model, output, meta, w)
        return [output]
    onnx_out = output.with_suffix(".onnx")
    write_onnx(model, onnx_out, meta, w)
    rebuild_engine(model.engine, onnx_out, output)
    return [output, onnx_out]


def _onnx_graph(model: Opened):  # type: ignore[no-untyped-def]
    """The ONNX graph to edit: the one opened, or (opened by OpenVINO) the file read anew."""
    from rpol_edge.refitting.onnx_graph import onnx_module

    if hasattr(model.graph, "graph"):
        return model.graph
    return onnx_module().load(str(model.path))


def write_onnx(model: Opened, output: Path, meta: ModelMeta, w: np.ndarray) -> None:
    from rpol_edge.exporters.onnx_finish import finish_graph, set_metadata
    from rpol_edge.exporters.trt.compat import recorded_targets
    from rpol_edge.refitting.onnx_graph import onnx_module

    onnx = onnx_module()
    graph = _onnx_graph(model)
    replace_head(graph, meta, w, str(model.path))
    if "trt_targets" in model.meta.extra:
        finish_graph(graph, meta, recorded_targets(model.meta), output.name)
    else:
        # A graph its export never checked for TensorRT (the CPU INT8 graph, or one exported before
        # the check was recorded): its record is written as it was, with no claim added.
        set_metadata(graph, meta.shipped())
        try:
            onnx.checker.check_model(graph, full_check=True)
        except Exception as exc:  # noqa: BLE001 - onnx raises its own ValidationError kinds
            raise RefitError(f"{output.name} fails onnx.checker: {str(exc).splitlines()[0]}") from None

    def write(tmp: Path) -> None:
        onnx.save(graph, str(tmp))

    atomic_write(output, write)


def write_ir(model: Opened, output: Path, meta: ModelMeta, w: np.ndarray) -> None:
    from rpol_edge.core.ir_meta import RT_INFO_KEY
    from rpol_edge.refitting.ov_graph import ov_modules
    from rpol_edge.refitting.ov_graph import replace_head as ov_replace_head
    from rpol_edge.runtimes.openvino_runtime import save_ir

    ov, _ = ov_modules()
    graph = model.graph.clone()
    ov_replace_head(graph, meta, w, str(model.path))
    graph.set_rt_info(meta.to_json(), RT_INFO_KEY)
    save_ir(ov, graph, output)


def rebuild_engine(engine: Path, onnx_path: Path, output: Path) -> None:
    """The engine of ``onnx_path`` with ``engine``'s precision and batch profile (on this GPU)."""
    from rpol_edge.core.engine_meta import read_engine_meta
    from rpol_edge.exporters.trt.build import build_engine

    em = read_engine_meta(engine)
    build_engine(onnx_path, output, em.precision, (em.min_batch, em.opt_batch, em.max_batch))
