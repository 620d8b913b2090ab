"""Bad input and failed commands: every input checked before any work, one named error line
(exit 2), nothing half-written or empty left behind. Each test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rpol_edge.cli.app import app
from tests.conftest import SAMPLE

PHOTOS = sorted((SAMPLE / "JPEGImages").glob("*.jpg"))
runner = CliRunner()


def invoke(*args: object) -> tuple[int, list[str]]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, [ln for ln in res.output.splitlines() if ln.strip()]


def error_line(code: int, lines: list[str]) -> str:
    """The command failed with exit 2 and its last line is the error (no traceback)."""
    assert code == 2 and lines and lines[-1].startswith("error: "), lines
    assert not any("Traceback" in ln for ln in lines), lines
    return lines[-1]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_checks_calibration_first_and_leaves_no_half_export(
    sample_model: Path, tmp_path: Path
) -> None:
    """INT8 calibration data that does not exist or holds no image is refused before the FP32
    graph is traced; images that turn out unreadable (found only while calibrating, after the
    trace) fail the export without touching an earlier export in the same folder."""
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "nonexistent", tmp_path / "empty"):
        out = tmp_path / f"out-{root.name}"
        args = ("export", sample_model, "--int8", "--calib-data", "voc", "--calib-root", root, "-o", out)
        line = error_line(*invoke(*args))
        assert "INT8 calibration images" in line and str(root) in line, line
        assert not out.exists(), sorted(out.iterdir())

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    for i in range(3):
        (garbage / f"g{i}.jpg").write_bytes(b"not an image" * 10)
    out = tmp_path / "exp"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"the earlier export's graph")
    (out / "notes.txt").write_text("kept")
    before = tree(tmp_path)
    args = ("export", sample_model, "--int8", "--calib-data", "folder", "--calib-root", garbage, "-o", out)
    line = error_line(*invoke(*args, "--openvino"))
    assert "no readable calibration image" in line, line
    assert tree(tmp_path) == before  # the earlier files as they were, no temporary folder left


def test_unreadable_input_fails_without_empty_outputs(sample_model: Path, tmp_path: Path) -> None:
    """A source that gives no frame at all is an error naming it, for predict and run alike, and
    neither leaves an empty folder or an empty JSONL file."""
    text = tmp_path / "text.jpg"
    text.write_text("this is text, not a JPEG")

    out = tmp_path / "predictions"
    line = error_line(*invoke("predict", sample_model, text, "-o", out))
    assert "text.jpg" in line
    assert not out.exists()

    jsonl, frames = tmp_path / "new" / "o.jsonl", tmp_path / "frames"
    args = ("run", sample_model, "--source", text, "--jsonl", jsonl, "--save-frames", frames)
    line = error_line(*invoke(*args))
    assert "text.jpg: no frame could be read" in line and "cannot decode image" in line, line
    assert not jsonl.exists() and not jsonl.parent.exists() and not frames.exists()

    # One good stream beside it: its records are written, and the bad one still fails the command.
    good = tmp_path / "good"
    good.mkdir()
    (good / PHOTOS[0].name).write_bytes(PHOTOS[0].read_bytes())
    code, lines = invoke("run", sample_model, "--source", text, "--source", good, "--jsonl", jsonl)
    assert "text.jpg: no frame could be read" in error_line(code, lines)
    assert [json.loads(r)["stream"] for r in jsonl.read_text().splitlines()] == [1]


def test_video_output_must_be_mp4_and_leaves_no_folder(sample_model: Path, tmp_path: Path) -> None:
    """The plan's message names the Python parameter (``save=``); the command shows its flag."""
    video = tmp_path / "new" / "out.avi"
    line = error_line(*invoke("run", sample_model, "--source", PHOTOS[0], "--save", video))
    assert line == f"error: --save {video}: give an .mp4 file name (mp4v codec)", line
    assert not (tmp_path / "new").exists()


def test_bad_line_of_a_sources_file_names_file_and_line(sample_model: Path, tmp_path: Path) -> None:
    sources = tmp_path / "sources.txt"
    sources.write_text(f"{SAMPLE / 'JPEGImages'}\n# a comment\nrtsp//bad uri\n")
    line = error_line(*invoke("run", sample_model, "--sources", sources))
    assert line.startswith(f"error: {sources}:3: rtsp//bad uri: no such file or folder"), line


def test_openvino_ir_from_an_exported_onnx(sample_model: Path, tmp_path: Path) -> None:
    """The IR made from an exported .onnx carries the record of the IR exported from the .rpol,
    so info and every command read it, and its boxes are the ONNX graph's."""
    pytest.importorskip("openvino", reason="the openvino extra")
    from rpol_edge.core.ir_meta import read_ir_meta

    from_rpol, from_onnx = tmp_path / "from-rpol", tmp_path / "from-onnx"
    code, lines = invoke("export", sample_model, "--openvino", "--batch", "1:2:8", "-o", from_rpol)
    assert code == 0, lines
    graph = from_rpol / "model.onnx"
    line = error_line(*invoke("export", graph, "-o", from_onnx))
    assert "--openvino" in line and "exported from the fitted .rpol" in line, line

    code, lines = invoke("export", graph, "--openvino", "-o", from_onnx)
    assert code == 0, lines
    assert sorted(p.name for p in from_onnx.iterdir()) == ["model.bin", "model.xml"]
    assert read_ir_meta(from_onnx / "model.xml") == read_ir_meta(from_rpol / "model.xml")

    code, lines = invoke("info", from_onnx / "model.xml")
    assert code == 0 and any("openvino_precision" in ln for ln in lines), lines
    boxes = {}
    for model in (graph, from_onnx / "model.xml"):
        code, lines = invoke("predict", model, *PHOTOS[:3], "-o", tmp_path / model.suffix, "--json")
        assert code == 0, lines
        boxes[model.suffix] = [json.loads(ln)["box"] for ln in lines if ln.startswith("{")]
    assert len(boxes[".xml"]) == 3 and boxes[".xml"] == boxes[".onnx"]

    line = error_line(*invoke("export", graph, "--openvino", "--fp16", "-o", tmp_path / "fp16"))
    assert "--fp16" in line and "--trt" in line, line


def test_truncated_model_file_is_called_damaged(sample_model: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.rpol"
    cut.write_bytes(sample_model.read_bytes()[:10000])
    for args in (("info", cut), ("predict", cut, PHOTOS[0], "-o", tmp_path / "p")):
        line = error_line(*invoke(*args))
        assert "damaged or incomplete" in line and "truncated" in line, line
        assert "not an rpol-edge model file" not in line
    junk = tmp_path / "junk.rpol"
    junk.write_text("not a model")
    assert "not an rpol-edge model file" in error_line(*invoke("info", junk))
