"""Opening the model refit reads: its record, batch range and graph (the ONNX, an engine's source
ONNX beside it, or the OpenVINO model), the fit graph derived from it on the request's runtime,
and the check that a features_from export shares the model's features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rpol_edge.core.metadata import ModelMeta
from rpol_edge.refitting.fit_runtime import SumsRunner, pick_runtime
from rpol_edge.refitting.onnx_graph import RefitError

if TYPE_CHECKING:
    from rpol_edge.refitting.job import RefitRequest

KINDS = {".onnx": "onnx", ".xml": "openvino", ".engine": "engine", ".plan": "engine"}
"""Model files refit reads, and so writes: the output is of the same kind."""


@dataclass(frozen=True)
class Opened:
    """A model file read for refitting: its record, batch range and graph (onnx or OpenVINO)."""

    path: Path
    meta: ModelMeta
    batch: tuple[int, int | None]
    graph: Any
    kind: str
    engine: Path = Path()
    """The engine file, when the model is one (``path`` is then the ONNX it was built from)."""


def open_model(path: Path, runtime: str) -> Opened:
    """The graph refit edits and runs: the ONNX (an engine's: the one it was built from, beside
    it), or the OpenVINO model when the runtime is OpenVINO."""
    path = Path(path)
    if not path.is_file():
        raise RefitError(f"{path}: no such model file")
    kind = KINDS.get(path.suffix.lower(), "")
    graph_path = path
    if kind == "engine":
        from rpol_edge.core.engine_meta import read_engine_meta

        em = read_engine_meta(path)
        graph_path = path.parent / em.onnx_name if em.onnx_name else Path()
        if not em.onnx_name or not graph_path.is_file():
            raise RefitError(
                f"{path}: the ONNX it was built from ({em.onnx_name or 'not recorded'}) is not beside it; "
                "refit that .onnx and build the engine from the result (rpol-edge export OUT.onnx --trt)"
            )
    info = pick_runtime(graph_path, runtime)
    if info.name == "openvino":
        from rpol_edge.core.ir_meta import ir_batch_range, ir_meta
        from rpol_edge.refitting.ov_graph import ov_modules

        ov, _ = ov_modules()
        try:
            model = ov.Core().read_model(str(graph_path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own kinds
            raise RefitError(
                f"{graph_path}: OpenVINO could not read it ({str(exc).splitlines()[0]})"
            ) from None
        if graph_path.suffix.lower() == ".xml":
            meta, batch = ir_meta(model, graph_path), ir_batch_range(model)
        else:
            from rpol_edge.core.onnx_meta import read_onnx_header

            meta, batch = read_onnx_header(graph_path)
        return Opened(graph_path, meta, batch, model, kind, path)
    from rpol_edge.core.onnx_meta import read_onnx_header
    from rpol_edge.refitting.onnx_graph import onnx_module

    meta, batch = read_onnx_header(graph_path)
    try:
        model = onnx_module().load(str(graph_path))
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise RefitError(f"{graph_path}: not a readable ONNX file ({exc.__class__.__name__})") from None
    return Opened(graph_path, meta, batch, model, kind, path)


def fit_runner(opened: Opened, req: RefitRequest) -> SumsRunner:
    """The fit graph of ``opened`` on the request's runtime and device."""
    info = pick_runtime(opened.path, req.runtime)
    if info.name == "openvino":
        from rpol_edge.refitting.ov_graph import fit_model

        graph = fit_model(opened.graph, opened.meta, str(opened.path))
    else:
        from rpol_edge.refitting.onnx_graph import fit_graph

        graph = fit_graph(opened.graph, opened.meta, str(opened.path))
    return SumsRunner(
        graph, opened.meta, info, req.device, req.threads, opened.batch, opened.path.parent / "ort_trt_cache"
    )


SAME_FEATURES = ("backbone", "weights_sha256", "input_size", "resize_size", "mean", "std", "output_stride",
                 "channels", "frame_width", "frame_height", "frame_format")  # fmt: skip
"""What two exports must share for one's features to refit the other."""


def check_same_features(a: ModelMeta, b: ModelMeta, source: str) -> None:
    for key in SAME_FEATURES:
        if getattr(a, key) != getattr(b, key):
            raise RefitError(
                f"{source}: its {key} ({getattr(b, key)}) differs from the model's ({getattr(a, key)}); "
                "features_from must be another export of the same model"
            )
