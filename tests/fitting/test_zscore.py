"""The ``zscore`` operating point (a fixed camera whose w* map finds the objects but whose scene
responds too): the w* response in its cell's standard deviations over the fit frames.

The camera is the one of test_scene.py: a fixed view with a raccoon at a new place in each frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.scene import ResponseSums, response_stats, zscores
from rpol_edge.evaluate.compare import dataset_frames
from tests.fitting.test_scene import (
    assert_refused,
    camera_fit,
    camera_hits,
    exports_like_torch,
    fit_args,
    make_camera,
    sign_model,
)


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_camera(tmp_path_factory.mktemp("camera"))


@pytest.fixture(scope="module")
def zscore_model(camera: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return camera_fit(camera, "zscore", tmp_path_factory.mktemp("zscore"))


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
    hits = {
        "zscore": camera_hits(zscore_model, camera),
        "sign": camera_hits(sign_model(camera, tmp_path), camera),
    }
    assert hits["zscore"] >= hits["sign"] + 3, hits  # 5 against 0 of 10 when written


def test_zscore_graph_exports_and_matches_on_ort(zscore_model: Path, camera: Path, tmp_path: Path) -> None:
    """The statistics are two constants of the exported graph: ONNX Runtime gives torch's boxes."""
    exports_like_torch(zscore_model, camera, tmp_path, "zscore 1")


def test_zscore_refusals_are_one_line(zscore_model: Path, camera: Path, tmp_path: Path) -> None:
    base = fit_args(camera, "zscore", tmp_path / "m.rpol")
    assert_refused([*base, "--zscore-level", "0"], "--zscore-level")
    assert_refused([*base, "--head", "caam"], "needs w*")
    assert_refused([*base, "--fit-size", "160"], "inference grid")
    root = ["--data", "voc", "--root", str(camera), "--workers", "0"]
    assert_refused(["eval", str(zscore_model), *root, "--calibrate"], "standard deviations")


def test_refit_refuses_a_zscore_model(zscore_model: Path, camera: Path, tmp_path: Path) -> None:
    """Its statistics need a second pass once w* is refitted, which refit does not run: one line."""
    pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
    from rpol_edge.exporters.onnx_export import export_onnx

    path = tmp_path / "camera.onnx"
    export_onnx(zscore_model, path)
    assert_refused(
        ["refit", str(path), "--data", "voc", "--root", str(camera), "-o", str(tmp_path / "r.onnx")],
        "second pass",
    )
