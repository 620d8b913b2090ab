"""What a new user tripped over on a first day with rpol-edge, one test per finding (numbered as
in the CHANGELOG's list): each failed before its fix."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tomllib
from rich.console import Console
from typer.testing import CliRunner

from rpol_edge.cli.app import app
from tests.conftest import SAMPLE

REPO = Path(__file__).resolve().parents[2]
PHOTOS = sorted((SAMPLE / "JPEGImages").glob("*.jpg"))
runner = CliRunner()


def invoke(*args: object) -> tuple[int, list[str]]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, [ln for ln in res.output.splitlines() if ln.strip()]


def only_error(args: tuple[object, ...]) -> str:
    """The command fails with exit 2 and prints exactly one line (no bar, no traceback)."""
    code, lines = invoke(*args)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# 1 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rpol", "onnx"])
def test_01_device_typo_is_one_line_on_every_runtime(
    kind: str, sample_model: Path, sample_onnx: Path
) -> None:
    model = sample_model if kind == "rpol" else sample_onnx
    line = only_error(("predict", model, PHOTOS[0], "--device", "gpu"))
    assert "device 'gpu' (did you mean cuda?): choose auto, cpu, cuda or cuda:N" in line
    line = only_error(("fit", "--root", SAMPLE, "--device", "gpu"))
    assert "choose auto, cpu, cuda or cuda:N" in line


# 2 --------------------------------------------------------------------------------------------
def test_02_wrong_runtime_for_a_file_names_the_right_one(sample_model: Path, sample_onnx: Path) -> None:
    line = only_error(("predict", sample_onnx, PHOTOS[0], "--runtime", "torch"))
    assert "use --runtime ort (or auto)" in line and "export it first" not in line
    line = only_error(("predict", sample_model, PHOTOS[0], "--runtime", "ort"))
    assert "export it first" in line


# 3 --------------------------------------------------------------------------------------------
def test_03_overlay_text_has_no_ghost_copy_and_fps_matches_the_summary() -> None:
    from rpol_edge.live.summary import RunStats
    from rpol_edge.results.overlay import outlined_text

    canvas = np.full((40, 400, 3), 128, np.uint8)
    outlined_text(canvas, "fp32 2.7 ms", (8, 26), 0.6)
    dark = np.argwhere((canvas < 60).all(axis=2))[:, 1].max()
    white = np.argwhere((canvas > 200).all(axis=2))[:, 1].max()
    assert dark <= white + 2, "the outline runs past the text: a ghost copy"
    stats = RunStats()
    assert stats.mean_fps() is None  # no "0.0 FPS" before two frames are out
    stats.first_read, stats.last_output, stats.frames = 10.0, 12.0, 40
    assert stats.mean_fps() == 20.0  # the summary's mean_fps, so far


# 4 --------------------------------------------------------------------------------------------
def test_04_bench_table_is_readable_at_80_columns() -> None:
    from rpol_edge.bench.stats import Row
    from rpol_edge.cli.bench import bench_tables

    ms = {s: {"p50": 61.234, "p90": 70.5, "p99": 80.25} for s in ("pre", "infer", "post", "total")}
    rows = [
        Row("reference pipeline", "reference", "torch", "fp32", 1, ms=ms, throughput=16.3, artifact_mb=13.2)
    ]
    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    for table in bench_tables(rows):
        console.print(table)
    text = console.export_text()
    assert "…" not in text and "61.23" in text and "reference" in text and "pipeline" in text


# 5 --------------------------------------------------------------------------------------------
def test_05_piped_output_is_not_wrapped_and_json_is_there(sample_onnx: Path, tmp_path: Path) -> None:
    long = tmp_path / ("a-long-folder-name-" * 4) / "photo.jpg"
    long.parent.mkdir()
    long.write_bytes(PHOTOS[0].read_bytes())
    cmd = [
        sys.executable,
        "-m",
        "rpol_edge",
        "predict",
        str(sample_onnx),
        str(long),
        "-o",
        str(tmp_path / "o"),
    ]
    got = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # stdout is a pipe
    assert got.returncode == 0, got.stderr
    line = next(ln for ln in got.stdout.splitlines() if ln.startswith(str(long)))
    assert "box=[" in line and "score=" in line  # one line, greppable
    got = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=120)
    records = [json.loads(ln) for ln in got.stdout.splitlines()]
    assert [r["image"] for r in records] == [str(long)] and "box" in records[0]


# 6 --------------------------------------------------------------------------------------------
def test_06_unknown_backbone_names_the_closest() -> None:
    line = only_error(("fit", "--root", SAMPLE, "--backbone", "resnet9999", "--workers", "0"))
    assert "unknown backbone 'resnet9999'" in line and "resnet50" in line and "hub" not in line


# 7 --------------------------------------------------------------------------------------------
def test_07_folders_and_patterns_one_rule(sample_onnx: Path, tmp_path: Path) -> None:
    from rpol_edge.live.source_registry import parse_source

    tree = tmp_path / "photos"
    (tree / "sub").mkdir(parents=True)
    for p in PHOTOS[:2]:
        (tree / p.name).write_bytes(p.read_bytes())
    (tree / "sub" / PHOTOS[2].name).write_bytes(PHOTOS[2].read_bytes())
    code, _ = invoke("predict", sample_onnx, tree, "-o", tmp_path / "a")
    assert code == 0
    lines = (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3  # the subfolder too
    code, _ = invoke("predict", sample_onnx, str(tree / "**" / "*.jpg"), "-o", tmp_path / "b")
    assert code == 0 and len((tmp_path / "b" / "predictions.jsonl").read_text().splitlines()) == 3
    assert parse_source(str(tree)).length == 3  # `run --source DIR` reads it the same way


# 8 --------------------------------------------------------------------------------------------
def test_08_explain_on_an_export_says_it_needs_the_rpol(sample_onnx: Path, tmp_path: Path) -> None:
    line = only_error(("explain", sample_onnx, PHOTOS[0], "-o", tmp_path))
    assert "explain needs the fitted .rpol model" in line and "Unpickling" not in line


# 9 --------------------------------------------------------------------------------------------
def test_09_artifacts_get_the_mode_open_would_give(tmp_path: Path) -> None:
    from rpol_edge.core.files import UMASK, write_bytes_atomic

    path = tmp_path / "m.onnx"
    write_bytes_atomic(path, b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~UMASK
    with open(tmp_path / "plain", "w"):  # what open() gives, for comparison
        pass
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


# 10 -------------------------------------------------------------------------------------------
def test_10_a_typed_path_that_does_not_exist_is_an_error_before_work(
    sample_onnx: Path, tmp_path: Path
) -> None:
    line = only_error(("predict", sample_onnx, PHOTOS[0], tmp_path / "nosuch.jpg", "-o", tmp_path / "o"))
    assert line == f"error: {tmp_path / 'nosuch.jpg'}: no such file or folder"
    assert not (tmp_path / "o").exists()  # nothing was written


# 11 -------------------------------------------------------------------------------------------
def test_11_input_size_must_be_a_grid_of_the_stride() -> None:
    line = only_error(("fit", "--root", SAMPLE, "--input-size", "33", "--workers", "0"))
    assert "--input-size 33: the backbone's stride is 32, so use a multiple of 32 of at least 64" in line


# 12 -------------------------------------------------------------------------------------------
def test_12_predict_output_that_is_a_file(sample_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    line = only_error(("predict", sample_onnx, PHOTOS[0], "-o", tmp_path / "taken"))
    assert "exists and is not a folder" in line and "Errno" not in line


# 13 -------------------------------------------------------------------------------------------
def test_13_show_without_gui_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from rpol_edge.live import outputs

    def no_gui(*_: object) -> None:
        raise cv2.error("The function is not implemented")

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(outputs.cv2, "imshow", no_gui)
    sink = outputs.WindowSink()
    with caplog.at_level("WARNING", logger="rpol_edge.live"):
        sink.write(None, np.zeros((4, 4, 3), np.uint8))  # type: ignore[arg-type]
    assert not sink.enabled and "pip install opencv-python" in caplog.text


# 14 -------------------------------------------------------------------------------------------
def test_14_info_shows_what_applies_and_no_noise(sample_model: Path, tmp_path: Path) -> None:
    code, lines = invoke("info", sample_model)
    keys = {ln.split()[0] for ln in lines}
    assert code == 0 and "operating_point" in keys
    assert not keys & {"threshold", "opset", "frame_width", "frame_height", "frame_format", "fraction"}
    (tmp_path / "empty").mkdir()
    line = only_error(("fit", "--root", tmp_path / "empty", "--workers", "0"))
    assert "split" not in line and "no images found" in line
    license_ = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
    assert isinstance(license_, str)  # setuptools warns twice per install for the old table form


# 15 -------------------------------------------------------------------------------------------
def test_15_version() -> None:
    from rpol_edge import __version__

    assert invoke("--version") == (0, [f"rpol-edge {__version__}"])


# 16 -------------------------------------------------------------------------------------------
def test_16_info_on_an_onnx_shows_its_tensors(sample_onnx: Path) -> None:
    code, lines = invoke("info", sample_onnx)
    text = "\n".join(lines)
    assert (
        "frames (input)" in text and "uint8 (N, 224, 224, 3), NHWC, RGB, 0..255" in text and "N >= 1" in text
    )
    assert "score (output)" in text and "mask (output)" in text
    res = runner.invoke(app, ["info", str(sample_onnx), "--json"])
    tensors = {"frames (input)", "score (output)", "mask (output)", "peak (output)"}
    assert set(json.loads(res.output)["tensors"]) == tensors
    old = Path(__file__).parents[1] / "fixtures" / "pre_layout" / "exp" / "model.onnx"  # exported before peak
    res = runner.invoke(app, ["info", str(old), "--json"])
    assert set(json.loads(res.output)["tensors"]) == tensors - {"peak (output)"}


# 17 -------------------------------------------------------------------------------------------
def test_17_video_records_carry_the_position_in_the_video(sample_onnx: Path, tmp_path: Path) -> None:
    video = tmp_path / "in.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (320, 240))
    for p in PHOTOS[:5]:
        writer.write(cv2.resize(cv2.imread(str(p)), (320, 240)))
    writer.release()
    code, _ = invoke("run", sample_onnx, "--source", video, "--jsonl", tmp_path / "b.jsonl")
    assert code == 0
    recs = [json.loads(ln) for ln in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["position_s"] for r in recs] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=1e-3)
    assert all(r["timestamp"] > 1.6e9 for r in recs)  # the wall clock stays, as its own field


# 18 -------------------------------------------------------------------------------------------
def test_18_no_object_outcome_and_every_field_documented(sample_onnx: Path, tmp_path: Path) -> None:
    code, _ = invoke("predict", sample_onnx, PHOTOS[0], "-o", tmp_path, "--min-area", "0.99")
    rec = json.loads((tmp_path / f"{PHOTOS[0].stem}.json").read_text())
    assert code == 0 and rec["object"] is False and rec["box"] is None and rec["score"] == 0.0
    page = (REPO / "docs" / "outputs.md").read_text()
    from rpol_edge.live.summary import RunSummary

    fields = [*rec, "frame", "position_s", "timestamp", "ms", "latency_ms", *RunSummary.__dataclass_fields__]
    assert [f for f in fields if f"`{f}`" not in page] == []


# 19 -------------------------------------------------------------------------------------------
def test_19_shipped_files_do_not_carry_the_makers_paths(
    sample_model: Path, sample_onnx: Path, tmp_path: Path
) -> None:
    import shutil

    from rpol_edge.core.artifact import ModelArtifact
    from rpol_edge.core.model_file import read_meta

    exported = read_meta(sample_onnx)
    assert exported.fit_root == "" and not {"weights", "weights_rel", "fit_root_rel"} & set(exported.extra)
    assert Path(ModelArtifact.load(sample_model).meta.fit_root) == SAMPLE.resolve()  # on this machine
    # a folder moved with its data: the .rpol finds the data through its relative copy
    art = ModelArtifact.load(sample_model)
    (tmp_path / "a" / "data").mkdir(parents=True)
    art.meta = art.meta.replace(fit_root=str(tmp_path / "a" / "data"))
    art.save(tmp_path / "a" / "models" / "m.rpol")
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = ModelArtifact.load(tmp_path / "b" / "models" / "m.rpol").meta
    assert Path(moved.fit_root) == tmp_path / "b" / "data"


# 20 -------------------------------------------------------------------------------------------
def test_20_readme_and_docs_do_not_point_outside_the_project() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    assert [p.name for p in pages if "../shared" in p.read_text()] == []


# 21 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "needle"), [("99999x99999", "at most 8192"), ("10x10", "smaller than the model's")]
)
def test_21_frame_size_refused_up_front(size: str, needle: str, sample_model: Path, tmp_path: Path) -> None:
    line = only_error(("export", sample_model, "--onnx", "--frame-size", size, "-o", tmp_path / "e"))
    assert needle in line and not (tmp_path / "e").exists()


# 22 -------------------------------------------------------------------------------------------
def test_22_no_progress_bar_before_an_early_error(sample_model: Path, tmp_path: Path) -> None:
    only_error(("explain", sample_model, tmp_path / "nosuch.jpg", "-o", tmp_path / "x"))
    only_error(("fit", "--root", SAMPLE, "--backbone", "nosuchnet", "--workers", "0"))


def test_07b_output_folder_inside_the_input_is_not_read_back(sample_onnx: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in PHOTOS[:2]:
        (photos / p.name).write_bytes(p.read_bytes())
    for _ in range(2):  # the second run must not predict on the first one's overlays
        code, _ = invoke("predict", sample_onnx, photos, "-o", photos / "pred")
        assert code == 0
        assert len((photos / "pred" / "predictions.jsonl").read_text().splitlines()) == 2


def test_18b_min_area_is_the_largest_region_not_the_sum_of_specks() -> None:
    from rpol_edge.core.geometry import CropTransform
    from rpol_edge.results.detection import detect

    mask = np.zeros((64, 64), np.uint8)
    mask[::8, ::8] = 1  # 64 specks: 1.6 % of the crop in all, each one pixel
    score = mask.astype(np.float32)
    t = CropTransform(64, 64, 64, 64)
    assert detect(score, mask, t, min_area=0.01).box is None
    mask[10:30, 10:30] = 1  # one 400-pixel region: 10 % of the crop
    assert detect(score, mask, t, min_area=0.01).box is not None
