"""Exports are written into temporary folders and moved into place at the end: what a commit keeps
and replaces, what a failure leaves, and an engine sidecar that still names its source ONNX."""

from __future__ import annotations

from pathlib import Path

import pytest

from rpol_edge.exporters.staging import staged


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_commit_replaces_same_names_and_keeps_the_rest(tmp_path: Path) -> None:
    out, fresh = tmp_path / "exp", tmp_path / "new" / "repo"
    (out / "sub").mkdir(parents=True)
    (out / "model.onnx").write_text("old graph")
    (out / "sub" / "kept.txt").write_text("kept")
    with staged([out, fresh]) as stage:
        (stage[out] / "sub").mkdir(parents=True)
        (stage[out] / "model.onnx").write_text("new graph")
        (stage[out] / "sub" / "model.xml").write_text("ir")
        stage[fresh].mkdir(parents=True)
        (stage[fresh] / "config.pbtxt").write_text("cfg")
        assert tree(out) == {"model.onnx": b"old graph", "sub/kept.txt": b"kept"}  # nothing in place yet
        assert stage.final(stage[out] / "sub" / "model.xml") == out / "sub" / "model.xml"
    assert tree(out) == {"model.onnx": b"new graph", "sub/kept.txt": b"kept", "sub/model.xml": b"ir"}
    assert tree(fresh) == {"config.pbtxt": b"cfg"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "new"]  # no temporary folder left


def test_failure_leaves_every_folder_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    out.mkdir()
    (out / "model.onnx").write_text("old graph")
    before = tree(tmp_path)
    with (
        pytest.raises(RuntimeError, match="build failed"),
        staged([out, tmp_path / "nested" / "ds"]) as stage,
    ):
        stage[out].mkdir(parents=True)
        (stage[out] / "model.onnx").write_text("new graph")
        raise RuntimeError("build failed")
    assert tree(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_engine_beside_its_source_onnx_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`export exp/model.onnx --trt -o exp`: the engine is built in a temporary folder, and its
    sidecar still names model.onnx, which will sit beside it (so a re-export is detected)."""
    pytest.importorskip("onnx", reason="onnx not installed")
    from trt_standins import install, onnx_source

    from rpol_edge.core.engine_meta import read_engine_meta
    from rpol_edge.exporters.orchestrator import ExportRequest, run_export

    install(monkeypatch, "10.3.0.30")
    exp = tmp_path / "exp"
    exp.mkdir()
    graph = onnx_source(exp / "model.onnx")
    res = run_export(ExportRequest(model=graph, out_dir=exp, trt=True, batch=(1, 2, 4)))
    assert res.files["trt"] == exp / "model.engine"
    assert read_engine_meta(res.files["trt"]).onnx_name == "model.onnx"
    assert f"--onnx={graph}" in res.trtexec and f"--timingCacheFile={exp}/timing-" in res.trtexec
    elsewhere = run_export(ExportRequest(model=graph, out_dir=tmp_path / "other", trt=True, batch=(1, 2, 4)))
    assert read_engine_meta(elsewhere.files["trt"]).onnx_name == ""
