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
    from rpol_edge.fitting.fitter import FitConfig, fit

    path = tmp_path_factory.mktemp("model") / "sample.rpol"
    fit(FitConfig("voc", SAMPLE, "train", input_size=TEST_INPUT, workers=0)).artifact.save(path)
    return path


@pytest.fixture(scope="session")
def sample_onnx(sample_model: Path) -> Path:
    pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
    from rpol_edge.exporters.onnx_export import export_onnx

    path = sample_model.parent / "model.onnx"
    export_onnx(sample_model, path, batch=(1, 2, 8))
    return path


@pytest.fixture(scope="session")
def variants(
    sample_model: Path, sample_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Every ONNX flavour rpol-edge writes for TensorRT, through export (which checks it)."""
    pytest.importorskip("onnxslim", reason="export simplifies with onnxslim (onnx extra)")
    from rpol_edge.exporters.int8 import quantize_int8
    from rpol_edge.exporters.onnx_export import export_onnx

    d = tmp_path_factory.mktemp("variants")
    out = {
        "fp32-static": d / "fp32.onnx",
        "fp32-dynamic": sample_onnx,  # the session fixture: export_onnx(batch=(1, 2, 8)), checked on write
        "fp16": d / "fp16.onnx",
        "dynamo-dynamic": d / "dynamo.onnx",
        "int8-trt": d / "int8.trt.onnx",
    }
    export_onnx(sample_model, out["fp32-static"], batch=(1, 1, 1))
    export_onnx(sample_model, out["fp16"], batch=(1, 1, 1), precision="fp16")
    export_onnx(sample_model, out["dynamo-dynamic"], exporter="dynamo", batch=(1, 2, 4))
    root = SHARED_RACCOON if SHARED_RACCOON.is_dir() else SAMPLE
    quantize_int8(sample_onnx, out["int8-trt"], "voc", root, "train", count=8, symmetric=True)
    return out
