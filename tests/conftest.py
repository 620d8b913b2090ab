"""Shared fixtures: the bundled sample, a model fitted on it once per session, its ONNX export."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "rpol_edge" / "sample"
SHARED_RACCOON = Path(__file__).resolve().parents[2] / "shared" / "data" / "raccoon"
TEST_INPUT = 224


@pytest.fixture(scope="session")
def sample_root() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lite0 (real ImageNet weights) fitted on the bundled train split at input 224."""
    from rpol_edge.fit import FitConfig, fit

    path = tmp_path_factory.mktemp("model") / "sample.rpol"
    fit(FitConfig("voc", SAMPLE, "train", input_size=TEST_INPUT, workers=0)).artifact.save(path)
    return path


@pytest.fixture(scope="session")
def sample_onnx(sample_model: Path) -> Path:
    pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
    from rpol_edge.export.onnx_export import export_onnx

    path = sample_model.parent / "model.onnx"
    export_onnx(sample_model, path, batch=(1, 2, 8))
    return path
