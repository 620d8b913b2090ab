"""Triton Inference Server model repositories: ``config.pbtxt`` from the artifact, and its check.

Every ``config.pbtxt`` is built as tritonclient's ``ModelConfig`` protobuf message (so it is a
message Triton parses), with the names, data types and dims read from the graph or the engine's
sidecar, and written as protobuf text. `check_config` parses a written file back into that message
and compares its inputs and outputs with the artifact's: what a Triton server would refuse at load
time (a wrong dtype, a dim off by one, the batch dimension counted twice) is caught when the
repository is written.

`export_repository` writes the repository for a user's own Triton (NVIDIA's server images, which
have the ``onnxruntime`` and ``tensorrt`` backends):

* ``<name>_onnx`` (``onnxruntime``): the fused ONNX graph, uint8 frames in, score and mask out;
* ``<name>_plan`` (``tensorrt_plan``): the engine, where one was built;
* ``<name>_pre`` / ``<name>_post`` (``python``): raw RGB frames of any size -> the K x K input
  (`rpol_edge.core.prepare`), and mask -> box in original pixels (`rpol_edge.results.detection`
  ``detect``, the same box code every runtime uses);
* ``<name>`` (and ``<name>_tensorrt`` with an engine): ensembles, frames in, boxes out.

This module lives with the exporters (export ``--triton`` writes it); ``rpol_edge.integrations.triton`` reuses
the config helpers for the repository of ``rpol-edge serve``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpol_edge.core.export_formats import ExportError
from rpol_edge.core.files import write_text_atomic
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.onnx_meta import recorded_outputs

META_PARAMETER = "rpol_edge"
"""The metadata record's key in every config's ``parameters`` (the JSON of `ModelMeta`)."""

FRAMES = "frames"
BOX = "box"
BOX_SCORE = "box_score"
SCORE_MAP = "score_map"
BOXES = "boxes"
BOXES_SCORE = "boxes_score"
"""The names clients use: raw RGB uint8 frames (N, H, W, 3) in; box int32 (N, 4) in original
pixels (-1 where there is no object), its score float32 (N, 1); every box (``--boxes all``: one
per object, best first) int32 (N, MAX_BOXES, 4) with its score float32 (N, MAX_BOXES), rows past
the last box -1 and 0; and, when asked for, the K x K score map float32 (N, K, K) out."""

MAX_BOXES = 16
"""Boxes a served detection carries at most (the best ones; ``all`` rarely finds more)."""


def padded_boxes(boxes: Sequence[tuple[Sequence[int], float]]) -> tuple[list[list[int]], list[float]]:
    """A detection's (box, score) list as MAX_BOXES rows of boxes and scores, padded with -1 / 0."""
    kept = list(boxes)[:MAX_BOXES]
    rows = [[int(v) for v in b] for b, _ in kept] + [[-1, -1, -1, -1]] * (MAX_BOXES - len(kept))
    return rows, [float(s) for _, s in kept] + [0.0] * (MAX_BOXES - len(kept))


ONNX_TYPES = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
}
"""ONNX TensorProto element types -> Triton data types (those an rpol-edge graph can have)."""

STEP_SOURCE = Path(__file__).with_name("step.py")
"""The Python-backend model of the ``_pre`` and ``_post`` steps (one file, the role from config)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str
    """Triton's name, e.g. ``TYPE_UINT8``."""
    dims: tuple[int, ...]
    """Without the batch dimension; -1 for a variable one."""


def model_config_pb2() -> Any:
    """tritonclient's ``model_config_pb2`` module (the ``serve`` extra), or a one-line error."""
    try:
        from tritonclient.grpc import model_config_pb2 as pb
    except ImportError:
        raise ExportError("Triton model configs need tritonclient: pip install 'rpol-edge[serve]'") from None
    return pb


def graph_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec], tuple[int, int | None]]:
    """Inputs, outputs (batch dimension dropped) and the batch range (min, max; None: symbolic) of
    an ONNX graph, read from the graph itself (the ``onnx`` package, weights not loaded)."""
    try:
        import onnx
    except ImportError:
        raise ExportError(
            "reading the graph's inputs and outputs needs onnx: pip install 'rpol-edge[onnx]'"
        ) from None
    graph = onnx.load(str(path), load_external_data=False).graph
    init = {t.name for t in graph.initializer}
    batch: tuple[int, int | None] = (1, None)

    def spec(value: Any) -> TensorSpec:
        nonlocal batch
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if t.elem_type not in ONNX_TYPES:
            raise ExportError(
                f"{path.name}: tensor {value.name!r} has ONNX type {t.elem_type}, not one Triton takes"
            )
        if dims and dims[0] > 0:
            batch = (dims[0], dims[0])
        return TensorSpec(value.name, ONNX_TYPES[t.elem_type], tuple(dims[1:]))

    inputs = [spec(v) for v in graph.input if v.name not in init]
    outputs = [spec(v) for v in graph.output]
    return inputs, outputs, batch


def engine_io(meta: ModelMeta) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """A TensorRT engine's tensors (the ONNX contract it was built from: same names and types)."""
    k, m = meta.input_size, meta.n_heads
    outputs = [TensorSpec("score", "TYPE_FP32", (m, k, k)), TensorSpec("mask", "TYPE_UINT8", (m, k, k))]
    if "peak" in recorded_outputs(meta):
        outputs.append(TensorSpec("peak", "TYPE_FP32", (m,)))
    return [TensorSpec("frames", "TYPE_UINT8", meta.input_shape())], outputs


def frame_io(meta: ModelMeta) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """What a client sends and reads (the ensemble's and ``rpol-edge serve``'s model)."""
    k = meta.input_size
    return (
        [TensorSpec(FRAMES, "TYPE_UINT8", (-1, -1, 3))],
        [
            TensorSpec(BOX, "TYPE_INT32", (4,)),
            TensorSpec(BOX_SCORE, "TYPE_FP32", (1,)),
            TensorSpec(SCORE_MAP, "TYPE_FP32", (k, k)),
            TensorSpec(BOXES, "TYPE_INT32", (MAX_BOXES, 4)),
            TensorSpec(BOXES_SCORE, "TYPE_FP32", (MAX_BOXES,)),
        ],
    )


def base_config(
    name: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch: int,
    meta: ModelMeta,
    *,
    backend: str = "",
    platform: str = "",
    instances: int = 0,
    kind: str = "KIND_CPU",
    batch_delay_us: int | None = None,
    parameters: dict[str, str] | None = None,
) -> Any:
    """A ``ModelConfig`` message: tensors, ``max_batch_size``, dynamic batching (``batch_delay_us``
    None: none), ``instance_group`` (0: none, Triton's default) and the metadata as a parameter."""
    pb = model_config_pb2()
    cfg = pb.ModelConfig(name=name, max_batch_size=max_batch, backend=backend, platform=platform)
    for spec, field in [(s, cfg.input) for s in inputs] + [(s, cfg.output) for s in outputs]:
        field.add(name=spec.name, data_type=pb.DataType.Value(spec.data_type), dims=list(spec.dims))
    if batch_delay_us is not None and max_batch > 1:
        cfg.dynamic_batching.max_queue_delay_microseconds = batch_delay_us
    if instances:
        cfg.instance_group.add(count=instances, kind=pb.ModelInstanceGroup.Kind.Value(kind))
    cfg.parameters[META_PARAMETER].string_value = meta.shipped().to_json()
    for key, value in (parameters or {}).items():
        cfg.parameters[key].string_value = value
    return cfg


def write_config(folder: Path, cfg: Any) -> Path:
    from google.protobuf import text_format

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.pbtxt"
    write_text_atomic(path, text_format.MessageToString(cfg))
    return path


def read_config(path: Path) -> Any:
    """A ``config.pbtxt`` parsed into ``ModelConfig`` (what Triton does when it loads it)."""
    from google.protobuf import text_format

    pb = model_config_pb2()
    try:
        return text_format.Parse(path.read_text(), pb.ModelConfig())
    except text_format.ParseError as exc:
        raise ExportError(f"{path}: not a Triton model config ({exc})") from None


def check_config(path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> Any:
    """Parse ``path`` and compare its tensors (name, data type, dims) with the artifact's; returns
    the parsed message. A mismatch is an ExportError naming the tensor and both sides."""
    cfg = read_config(path)
    pb = model_config_pb2()
    for what, want, got in (("input", inputs, cfg.input), ("output", outputs, cfg.output)):
        have = {t.name: (pb.DataType.Name(t.data_type), tuple(t.dims)) for t in got}
        need = {s.name: (s.data_type, s.dims) for s in want}
        if have != need:
            raise ExportError(f"{path}: {what}s {have} do not match the artifact's {need}")
    return cfg


def config_meta(cfg: Any, source: str = "model config") -> ModelMeta:
    """The metadata record a config carries (``parameters``), read back."""
    if META_PARAMETER not in cfg.parameters:
        raise ExportError(f"{source}: no {META_PARAMETER!r} parameter (not written by rpol-edge)")
    return ModelMeta.from_json(cfg.parameters[META_PARAMETER].string_value, source)


@dataclass(frozen=True)
class RepositoryRequest:
    repo: Path
    name: str = "rpol"
    max_batch: int = 8
    instances: int = 1
    batch_delay_us: int = 2000
    """Dynamic batching: how long Triton holds a request for others to batch with."""


def check_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ExportError(f"model name {name!r}: letters, digits, '_' and '-' only")
    return name


def export_repository(req: RepositoryRequest, onnx_path: Path, engine_path: Path | None = None) -> list[Path]:
    """Write (and check) the repository described in the module docstring; returns the configs.

    The graph must take a batch range (symbolic first dimension): Triton batches requests into it.
    """
    from rpol_edge.core.onnx_meta import read_onnx_meta

    check_name(req.name)
    if not 1 <= req.max_batch <= 1024 or req.instances < 1:
        raise ExportError(f"max batch {req.max_batch} / instances {req.instances}: need 1..1024 and >= 1")
    meta = read_onnx_meta(onnx_path)
    if meta.n_heads != 1:
        raise ExportError(
            "Triton serving needs a class-agnostic model (a class-wise fit localizes a known class)"
        )
    inputs, outputs, batch = graph_io(onnx_path)
    if batch[1] is not None:
        raise ExportError(
            f"{onnx_path.name} has a fixed batch of {batch[0]}: Triton batches requests into a batch "
            "range, export with --batch MIN:OPT:MAX (e.g. 1:4:8)"
        )
    req.repo.mkdir(parents=True, exist_ok=True)
    configs: list[Path] = []
    common: dict[str, Any] = {"instances": req.instances, "batch_delay_us": req.batch_delay_us}

    graph = req.repo / f"{req.name}_onnx"
    cfg = base_config(
        graph.name,
        inputs,
        outputs,
        req.max_batch,
        meta,
        backend="onnxruntime",
        platform="onnxruntime_onnx",
        **common,
    )
    (graph / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, graph / "1" / "model.onnx")
    configs.append(write_config(graph, cfg))
    check_config(configs[-1], inputs, outputs)
    graph_models = {req.name: graph.name}

    if engine_path is not None:
        from rpol_edge.core.engine_meta import read_engine_meta

        em = read_engine_meta(engine_path)
        e_in, e_out = engine_io(em.model)
        plan = req.repo / f"{req.name}_plan"
        cfg = base_config(
            plan.name,
            e_in,
            e_out,
            min(req.max_batch, em.max_batch),
            em.model,
            platform="tensorrt_plan",
            kind="KIND_GPU",
            **common,
        )
        (plan / "1").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(engine_path, plan / "1" / "model.plan")
        configs.append(write_config(plan, cfg))
        check_config(configs[-1], e_in, e_out)
        graph_models[f"{req.name}_tensorrt"] = plan.name

    f_in, f_out = frame_io(meta)
    k, m = meta.input_size, meta.n_heads
    crop = [TensorSpec("input", "TYPE_UINT8", meta.input_shape()), TensorSpec("size", "TYPE_INT32", (2,))]
    pre = req.repo / f"{req.name}_pre"
    configs.append(_python_step(pre, "pre", f_in, crop, req, meta))
    maps = [TensorSpec("score", "TYPE_FP32", (m, k, k)), TensorSpec("mask", "TYPE_UINT8", (m, k, k)), crop[1]]
    if "peak" in recorded_outputs(meta):
        maps.append(TensorSpec("peak", "TYPE_FP32", (m,)))
    post = req.repo / f"{req.name}_post"
    configs.append(_python_step(post, "post", maps, f_out, req, meta))
    for ensemble, model in graph_models.items():
        configs.append(_ensemble(req.repo / ensemble, model, pre.name, post.name, f_in, f_out, req, meta))
    return configs


def _python_step(
    folder: Path,
    role: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    req: RepositoryRequest,
    meta: ModelMeta,
) -> Path:
    cfg = base_config(
        folder.name,
        inputs,
        outputs,
        req.max_batch,
        meta,
        backend="python",
        instances=req.instances,
        batch_delay_us=req.batch_delay_us,
        parameters={"rpol_step": role},
    )
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(STEP_SOURCE, folder / "1" / "model.py")
    path = write_config(folder, cfg)
    check_config(path, inputs, outputs)
    return path


def _ensemble(
    folder: Path,
    graph: str,
    pre: str,
    post: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    req: RepositoryRequest,
    meta: ModelMeta,
) -> Path:
    cfg = base_config(folder.name, inputs, outputs, req.max_batch, meta, platform="ensemble")
    maps = {"score": "_score", "mask": "_mask"}
    if "peak" in recorded_outputs(meta):
        maps["peak"] = "_peak"
    steps = [
        (pre, {"frames": FRAMES}, {"input": "_input", "size": "_size"}),
        (graph, {"frames": "_input"}, maps),
        (post, {**maps, "size": "_size"}, {n: n for n in (BOX, BOX_SCORE, SCORE_MAP, BOXES, BOXES_SCORE)}),
    ]
    for model, ins, outs in steps:
        step = cfg.ensemble_scheduling.step.add(model_name=model, model_version=-1)
        for key, value in ins.items():
            step.input_map[key] = value
        for key, value in outs.items():
            step.output_map[key] = value
    path = write_config(folder, cfg)
    check_config(path, inputs, outputs)
    return path


def describe(configs: Sequence[Path]) -> str:
    """One line per model: name, backend/platform, max batch (for the export summary)."""
    lines = []
    for path in configs:
        cfg = read_config(path)
        lines.append(f"{cfg.name}: {cfg.backend or cfg.platform}, max_batch_size {cfg.max_batch_size}")
    return "\n".join(lines)


def config_json(cfg: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json.loads(json_format.MessageToJson(cfg))  # type: ignore[no-any-return]
