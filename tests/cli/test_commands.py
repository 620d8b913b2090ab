"""The CLI end to end on the bundled sample, and its one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rpol_edge.cli.app import app
from rpol_edge.core.artifact import ModelArtifact
from tests.conftest import SAMPLE

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def one_line_error(code: int, output: str) -> str:
    assert code == 2, output
    assert "Traceback" not in output
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error:"), output
    return lines[-1]


def test_info_predict_eval_calibrate(sample_model: Path, tmp_path: Path) -> None:
    code, out = run("info", sample_model)
    assert code == 0 and "lite0" in out and "tau" in out
    assert "operating_point" in out and "sign of w*^T f" in out  # the label-free default, named
    img = sorted((SAMPLE / "JPEGImages").glob("*.jpg"))[0]
    code, out = run("predict", sample_model, img, "-o", tmp_path / "pred")
    assert code == 0, out
    rec = json.loads((tmp_path / "pred" / (img.stem + ".json")).read_text())
    assert (tmp_path / "pred" / (img.stem + ".png")).is_file()
    x0, y0, x1, y1 = rec["box"]
    assert 0 <= x0 < x1 < rec["width"] and 0 <= y0 < y1 < rec["height"]

    model = tmp_path / "cal.rpol"
    model.write_bytes(sample_model.read_bytes())
    code, out = run(
        "eval",
        model,
        "--data",
        "voc",
        "--root",
        SAMPLE,
        "--split",
        "test",
        "--json",
        tmp_path / "r.json",
        "--calibrate",
        "--workers",
        "0",
    )
    assert code == 0, out
    metrics = json.loads((tmp_path / "r.json").read_text())
    for key in (
        "n_images",
        "gt_known_loc",
        "maxboxacc",
        "maxboxacc_v2",
        "maxboxacc_v2_rpol",
        "best_threshold",
    ):
        assert key in metrics
    assert metrics["operating_point"] == "sign"
    calibrated = ModelArtifact.load(model).meta
    assert calibrated.threshold == metrics["best_threshold"] and calibrated.operating_point == "fixed"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["fit", "--root", str(SAMPLE), "--head", "caam", "--operating-point", "sign"], "needs w*"),
        (["fit", "--root", str(SAMPLE), "--operating-point", "median"], "choose fixed, sign"),
        (["fit", "--root", str(SAMPLE), "--operating-point", "fraction"], "--fraction 0.0: the"),
        (["eval", "{model}", "--data", "vocc", "--root", str(SAMPLE)], "did you mean"),
        (["eval", "{model}", "--data", "voc", "--root", str(SAMPLE), "--split", "val"], "train"),
        (["eval", "{model}", "--runtime", "ort", "--data", "voc", "--root", str(SAMPLE)], "export"),
        (
            ["eval", "{model}", "--runtime", "tensorrt", "--data", "voc", "--root", str(SAMPLE)],
            "runtime trt runs",
        ),
        (
            ["eval", "{model}", "--runtime", "trtt", "--data", "voc", "--root", str(SAMPLE)],
            "did you mean trt",
        ),
        (["eval", "{model}", "--data", "voc", "--root", str(SAMPLE), "--json", "{empty}"], "is a folder"),
        (["fit", "--root", str(SAMPLE / "JPEGImages"), "--threshold", "1.5"], "(0, 1)"),
        (["fit", "--root", str(SAMPLE / "JPEGImages"), "--input-size", "0"], "--input-size 0: at least 32"),
        (["fit", "--root", str(SAMPLE / "JPEGImages"), "-o", "{empty}"], "is a folder"),
        (["predict", "{model}", "{junk}"], "none of the 1 image"),
        (["export", "{model}", "--int8"], "--calib-data"),
        (["fit", "--data", "folder", "--root", "{empty}"], "no images"),
        (["info", "{junk}"], "not an rpol-edge model"),
        (["predict", "{junk}", str(SAMPLE / "README.md")], "not an rpol-edge model"),
        (["export", "{model}", "--batch", "4:2:1"], "MIN <= OPT <= MAX"),
    ],
)
def test_bad_input_is_one_line_error(
    args: list[str], needle: str, sample_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    junk = tmp_path / "junk.rpol"
    junk.write_text("nope")
    subs = {"{model}": str(sample_model), "{empty}": str(tmp_path / "empty"), "{junk}": str(junk)}
    code, out = run(*[subs.get(a, a) for a in args])
    assert needle in one_line_error(code, out)


def test_predict_skips_corrupt_image_with_count(sample_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    good = sorted((SAMPLE / "JPEGImages").glob("*.jpg"))[1]
    code, out = run("predict", sample_model, bad, good, "-o", tmp_path / "p")
    assert code == 0, out
    assert "skipped 1" in out and "wrote 1 overlay" in out


def test_missing_extra_names_the_extra(sample_model: Path, tmp_path: Path) -> None:
    """Without TensorRT, --trt says which extra to install (brackets intact), before any work."""
    from rpol_edge.runtimes import RUNTIMES, missing_modules

    if not missing_modules(RUNTIMES["trt"]):
        pytest.skip("TensorRT is installed here")
    code, out = run("export", sample_model, "--trt", "-o", tmp_path / "exp")
    assert "rpol-edge[tensorrt]" in one_line_error(code, out)
    assert not (tmp_path / "exp" / "model.onnx").exists()
