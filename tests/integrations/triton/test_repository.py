"""The Triton model repository of ``export --triton``: every config.pbtxt parses into tritonclient's
ModelConfig and its tensors are the graph's (read with the onnx package, independently)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tritonclient.grpc", reason="Triton configs need the serve extra (tritonclient)")
onnx = pytest.importorskip("onnx", reason="reading the graph needs the onnx extra")

from rpol_edge.core.engine_meta import read_engine_meta  # noqa: E402
from rpol_edge.core.export_formats import ExportError  # noqa: E402
from rpol_edge.core.onnx_meta import read_onnx_meta  # noqa: E402
from rpol_edge.exporters.orchestrator import ExportRequest  # noqa: E402
from rpol_edge.integrations.triton.repository import (  # noqa: E402
    RepositoryRequest,
    TensorSpec,
    base_config,
    check_config,
    config_meta,
    engine_io,
    export_repository,
    read_config,
    write_config,
)

FIX = Path(__file__).parents[2] / "fixtures" / "pre_layout" / "exp"
TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8"}


def _graph_tensors(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    g = onnx.load(str(path)).graph
    out = {}
    for v in list(g.input) + list(g.output):
        t = v.type.tensor_type
        out[v.name] = (TYPES[t.elem_type], tuple(d.dim_value or -1 for d in t.shape.dim))
    return out


def test_every_config_parses_and_matches_the_graph(sample_onnx: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    configs = export_repository(RepositoryRequest(repo, "raccoon", max_batch=8, instances=2), sample_onnx)
    names = {p.parent.name for p in configs}
    assert names == {"raccoon", "raccoon_onnx", "raccoon_pre", "raccoon_post"}
    graph = read_config(repo / "raccoon_onnx" / "config.pbtxt")
    assert graph.backend == "onnxruntime" and graph.max_batch_size == 8
    assert graph.dynamic_batching.max_queue_delay_microseconds > 0
    assert graph.instance_group[0].count == 2
    want = _graph_tensors(sample_onnx)
    from tritonclient.grpc import model_config_pb2 as pb

    got = {
        t.name: (pb.DataType.Name(t.data_type), (-1, *t.dims)) for t in list(graph.input) + list(graph.output)
    }
    assert got == want  # the graph's own batch dimension is Triton's max_batch_size dimension
    assert (repo / "raccoon_onnx" / "1" / "model.onnx").read_bytes() == sample_onnx.read_bytes()
    # the metadata record travels as a parameter, and every model of the repository carries it
    for path in configs:
        assert config_meta(read_config(path)) == read_onnx_meta(sample_onnx).shipped()
    ensemble = read_config(repo / "raccoon" / "config.pbtxt")
    assert ensemble.platform == "ensemble"
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [
        "raccoon_pre",
        "raccoon_onnx",
        "raccoon_post",
    ]
    assert [t.name for t in ensemble.output] == ["box", "box_score", "score_map", "boxes", "boxes_score"]
    # the graph's peak goes to the post step, which runs the model's box mode with it
    graph_step = ensemble.ensemble_scheduling.step[1]
    assert dict(graph_step.output_map) == {"score": "_score", "mask": "_mask", "peak": "_peak"}
    post = read_config(repo / "raccoon_post" / "config.pbtxt")
    assert [t.name for t in post.input] == ["score", "mask", "size", "peak"]
    assert list(ensemble.input[0].dims) == [-1, -1, 3]  # frames of any size
    assert (repo / "raccoon_pre" / "1" / "model.py").is_file()


def test_a_config_that_disagrees_with_the_graph_is_refused(sample_onnx: Path, tmp_path: Path) -> None:
    export_repository(RepositoryRequest(tmp_path, "m"), sample_onnx)
    path = tmp_path / "m_onnx" / "config.pbtxt"
    from rpol_edge.integrations.triton.repository import graph_io

    inputs, outputs, _ = graph_io(sample_onnx)
    check_config(path, inputs, outputs)
    path.write_text(path.read_text().replace("dims: 224", "dims: 225", 1))
    with pytest.raises(ExportError, match="do not match"):
        check_config(path, inputs, outputs)
    path.write_text("name: 'm_onnx' input { nme: 'x' }")
    with pytest.raises(ExportError, match="not a Triton model config"):
        read_config(path)


def test_engine_config_from_the_sidecar(tmp_path: Path) -> None:
    meta = read_engine_meta(FIX / "model.engine")
    inputs, outputs = engine_io(meta.model)
    cfg = base_config(
        "m_plan",
        inputs,
        outputs,
        meta.max_batch,
        meta.model,
        platform="tensorrt_plan",
        instances=1,
        kind="KIND_GPU",
    )
    parsed = check_config(write_config(tmp_path / "m_plan", cfg), inputs, outputs)
    k = meta.model.input_size
    assert [tuple(t.dims) for t in parsed.input] == [(k, k, 3)]
    assert [tuple(t.dims) for t in parsed.output] == [(1, k, k), (1, k, k)]
    assert parsed.max_batch_size == 4 and parsed.platform == "tensorrt_plan"
    assert TensorSpec("frames", "TYPE_UINT8", (k, k, 3)) == inputs[0]


def test_fixed_batch_graphs_are_refused(sample_model: Path, tmp_path: Path) -> None:
    from rpol_edge.exporters.onnx_export import export_onnx

    fixed = tmp_path / "fixed.onnx"
    export_onnx(sample_model, fixed, batch=(1, 1, 1))
    with pytest.raises(ExportError, match="fixed batch of 1"):  # Triton could not batch into it
        export_repository(RepositoryRequest(tmp_path / "repo", "m"), fixed)
    req = ExportRequest(model=Path("x.rpol"), out_dir=tmp_path, triton=tmp_path / "repo")
    with pytest.raises(ExportError, match="batch range"):
        req.validate()
    with pytest.raises(ExportError, match="letters, digits"):
        ExportRequest(
            model=FIX / "model.onnx", out_dir=tmp_path, triton=tmp_path, triton_name="a b"
        ).validate()
