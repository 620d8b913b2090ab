"""The ``zscore`` operating point (a fixed camera whose w* map finds the objects but whose scene
responds too): the w* response in its cell's standard deviations over the fit frames.

The camera is the one of test_scene.py: a fixed view with a raccoon at a new place in each frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rpol_edge.cli import app
from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.scene import ResponseSums, response_stats, zscores
from rpol_edge.data import read_dataset
from rpol_edge.evaluate.compare import agreement, dataset_frames
from rpol_edge.fitting.config import FitConfig
from rpol_edge.fitting.fitter import fit
from rpol_edge.results.detection import crop_boxes
from rpol_edge.runtimes import RUNTIMES, infer_all, missing_modules, open_runtime
from tests.fitting.test_scene import H, K, W, _iou, make_camera


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_camera(tmp_path_factory.mktemp("camera"))


@pytest.fixture(scope="module")
def zscore_model(camera: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zscore") / "camera.rpol"
    cfg = FitConfig("voc", camera, "train", operating_point="zscore", input_size=K, resize_size=K, workers=0)
    fit(cfg).artifact.save(path)
    return path


def test_response_stats_by_hand() -> None:
    sums = ResponseSums.zeros((1, 2))
    sums.add(np.array([[[1.0, 5.0]], [[3.0, 5.0]]]))  # cell 0: 1 and 3; cell 1: never changes
    mean, std = response_stats(sums)
    assert np.allclose(mean, [[2.0, 5.0]]) and np.allclose(std, [[1.0, 1e-3]])
    assert np.allclose(zscores(np.array([[[4.0, 5.0]]]), mean, std), [[[2.0, 0.0]]])
    with pytest.raises(ValueError, match="do not fit"):
        sums.add(np.zeros((1, 2, 2)))


def test_zscore_model_keeps_the_response_statistics_of_its_frames(zscore_model: Path, camera: Path) -> None:
    """The stored statistics are the per-cell mean and spread of w*^T f / ||f|| over the fit
    frames, and the graph's response is `zscores` of it (the NumPy reference)."""
    import torch

    from rpol_edge.modeling.factory import build_localizer

    art = ModelArtifact.load(zscore_model)
    assert art.meta.operating.label() == "zscore 1" and art.zstats is not None
    loc = build_localizer(art)
    frames = dataset_frames(art.meta, "voc", camera, "train", workers=0)
    with torch.inference_mode():
        f = loc.features(torch.from_numpy(frames)).double().numpy()
        raw = loc.response(torch.from_numpy(f).float()).numpy()[:, 0]
    a = np.einsum("c,nchw->nhw", art.w[0], f) / np.linalg.norm(f, axis=1)
    assert np.allclose(art.zstats[0], a.mean(0), atol=1e-5)
    assert np.allclose(art.zstats[1], np.maximum(a.std(0), 1e-3), atol=1e-5)
    assert np.abs(raw - zscores(a, art.zstats[0], art.zstats[1])).max() < 1e-3


def test_zscore_boxes_follow_what_crosses_the_view(zscore_model: Path, camera: Path, tmp_path: Path) -> None:
    """On frames it was not fitted on, the box lands on the raccoon far more often than `sign`'s
    (whose largest region spans the scene's responding parts too)."""
    sign = tmp_path / "sign.rpol"
    fit(FitConfig("voc", camera, "train", input_size=K, resize_size=K, workers=0)).artifact.save(sign)
    truth = [np.asarray(s.boxes[0], float) for s in read_dataset("voc", camera, "test")]
    scale = np.array([W / K, H / K, W / K, H / K])
    hits = {}
    for name, model in (("zscore", zscore_model), ("sign", sign)):
        with open_runtime(model, "torch") as rt:
            out = infer_all(rt, dataset_frames(rt.meta, "voc", camera, "test", workers=0))
        got = [crop_boxes(s[0], m[0])[0] for s, m in zip(out.score, out.mask, strict=True)]
        hits[name] = sum(len(g) > 0 and _iou(g[0] * scale, t) >= 0.5 for g, t in zip(got, truth, strict=True))
    assert hits["zscore"] >= hits["sign"] + 3, hits  # 5 against 0 of 10 when written


def test_zscore_graph_exports_and_matches_on_ort(zscore_model: Path, camera: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
    if missing_modules(RUNTIMES["ort"]):
        pytest.skip("ort runtime not installed")
    from rpol_edge.core.onnx_meta import read_onnx_meta
    from rpol_edge.exporters.onnx_export import export_onnx

    path = tmp_path / "camera.onnx"
    export_onnx(zscore_model, path, batch=(1, 4, 8))
    assert read_onnx_meta(path).operating.label() == "zscore 1"
    with open_runtime(zscore_model, "torch") as ref, open_runtime(path, "ort", device="cpu") as rt:
        frames = dataset_frames(ref.meta, "voc", camera, "test", workers=0)
        a, b = infer_all(ref, frames), infer_all(rt, frames)
    assert np.abs(a.score - b.score).max() <= 1e-4
    assert agreement(a, b).boxes_identical == len(frames)


def test_zscore_refusals_are_one_line(zscore_model: Path, camera: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = [
        "fit",
        "--data",
        "voc",
        "--root",
        str(camera),
        "--operating-point",
        "zscore",
        "-o",
        str(tmp_path / "m.rpol"),
    ]
    for extra, words in (
        (["--zscore-level", "0"], "--zscore-level"),
        (["--head", "caam"], "needs w*"),
        (["--fit-size", "160"], "inference grid"),
    ):
        res = runner.invoke(app, [*base, *extra])
        assert res.exit_code == 2, res.output
        assert words in res.output and "Traceback" not in res.output
    args = [
        "eval",
        str(zscore_model),
        "--data",
        "voc",
        "--root",
        str(camera),
        "--workers",
        "0",
        "--calibrate",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "standard deviations" in res.output and "Traceback" not in res.output


def test_refit_refuses_a_zscore_model(zscore_model: Path, camera: Path, tmp_path: Path) -> None:
    """Its statistics need a second pass once w* is refitted, which refit does not run: one line."""
    pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
    from rpol_edge.exporters.onnx_export import export_onnx

    path = tmp_path / "camera.onnx"
    export_onnx(zscore_model, path)
    res = CliRunner().invoke(
        app, ["refit", str(path), "--data", "voc", "--root", str(camera), "-o", str(tmp_path / "r.onnx")]
    )
    assert res.exit_code == 2 and "second pass" in res.output and "Traceback" not in res.output
