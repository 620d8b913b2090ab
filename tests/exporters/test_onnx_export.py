"""ONNX export (both torch exporters), metadata round trip, batch contracts, INT8 accuracy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
pytest.importorskip("onnxruntime", reason="the ort runtime needs the ort extra")

from rpol_edge.core.artifact import ModelArtifact  # noqa: E402
from rpol_edge.core.metadata import same_model  # noqa: E402
from rpol_edge.core.onnx_meta import onnx_batch_range, read_onnx_meta  # noqa: E402
from rpol_edge.data import read_dataset  # noqa: E402
from rpol_edge.evaluate.evaluation import evaluate  # noqa: E402
from rpol_edge.exporters.int8 import CPU_RECIPE, TRT_RECIPE, quantize_int8  # noqa: E402
from rpol_edge.exporters.onnx_export import export_onnx  # noqa: E402
from rpol_edge.runtimes import InferenceError, open_runtime  # noqa: E402
from tests.conftest import SAMPLE, SHARED_RACCOON  # noqa: E402


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_export_passes_full_checker_and_carries_metadata(
    exporter: str, sample_model: Path, tmp_path: Path
) -> None:
    path = tmp_path / f"{exporter}.onnx"
    meta = export_onnx(sample_model, path, exporter=exporter, batch=(1, 2, 4))
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    for field in ModelArtifact.load(sample_model).meta.to_dict():
        assert field in props
    back = read_onnx_meta(path)
    assert back == meta and same_model(back, ModelArtifact.load(sample_model).meta)
    assert back.opset == next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert [i.name for i in model.graph.input] == ["frames"]
    assert [o.name for o in model.graph.output] == ["score", "mask", "peak"]
    assert back.extra["outputs"] == "score,mask,peak"
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert onnx_batch_range(path) == (1, None)
    assert back.opset == {"legacy": 17, "dynamo": 18}[exporter]


def test_fixed_batch_is_enforced(sample_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "b2.onnx"
    export_onnx(sample_model, path, batch=(2, 2, 2))
    assert onnx_batch_range(path) == (2, 2)
    with open_runtime(path, "ort") as rt:
        k = rt.meta.input_size
        assert rt.infer(np.zeros((2, k, k, 3), np.uint8)).score.shape == (2, 1, k, k)
        with pytest.raises(InferenceError, match="batch 3"):
            rt.infer(np.zeros((3, k, k, 3), np.uint8))
        with pytest.raises(InferenceError, match="uint8"):
            rt.infer(np.zeros((2, k, k, 3), np.float32))


@pytest.mark.parametrize("symmetric", [False, True], ids=["ort-uint8", "trt-symmetric"])
def test_int8_loses_at_most_two_points(symmetric: bool, sample_onnx: Path, tmp_path: Path) -> None:
    """Both QDQ flavours (ORT CPU's uint8 activations; TensorRT's symmetric int8) keep accuracy."""
    root = SHARED_RACCOON if SHARED_RACCOON.is_dir() else SAMPLE
    q = tmp_path / "model.int8.onnx"
    meta = quantize_int8(sample_onnx, q, "voc", root, "train", count=32, symmetric=symmetric)
    assert meta.precision == "int8" and read_onnx_meta(q) == meta
    assert meta.extra["int8_scheme"] == ("symmetric" if symmetric else "asymmetric")
    recipe = replace(TRT_RECIPE if symmetric else CPU_RECIPE, count=32)
    assert meta.extra["int8_recipe"] == recipe.to_json()  # the choice travels with the file
    if symmetric:  # TensorRT explicit quantization: every zero point is 0
        zps = [t for t in onnx.load(str(q)).graph.initializer if t.name.endswith("zero_point")]
        assert zps and all(not onnx.numpy_helper.to_array(t).any() for t in zps)
        assert all(onnx.numpy_helper.to_array(t).dtype == np.int8 for t in zps)
    scores = {}
    for path in (sample_onnx, q):
        with open_runtime(path, "ort") as rt:
            scores[path] = evaluate(rt, "voc", root, "test", workers=0).metrics["maxboxacc_v2"]
    # At most one image of the test split (the granularity of a small set): INT8 kernels differ by
    # CPU (AVX-512 VNNI, AMX), and one photo near a box threshold may flip between them.
    one_image = 100.0 / len(read_dataset("voc", root, "test"))
    assert scores[q] >= scores[sample_onnx] - max(2.0, one_image) - 1e-9, scores


def test_normalization_constants_are_scalars_when_the_channels_agree(sample_onnx: Path) -> None:
    """ORT's NHWC INT8 path broadcasts a (1, 3, 1, 1) constant over an innermost axis of 3 (slow):
    Lite0's 0.5/0.5 must reach the graph as scalars; per-channel statistics stay per channel."""
    from onnx import numpy_helper

    from rpol_edge.modeling.localizer import channel_constant

    assert channel_constant((0.5, 0.5, 0.5)).shape == ()
    assert channel_constant((0.485, 0.456, 0.406)).shape == (1, 3, 1, 1)
    g = onnx.load(str(sample_onnx)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for op in ("Sub", "Div"):  # mean, then std: both 0.5 * 255
        first = next(n for n in g.node if n.op_type == op)
        consts = [inits[i] for i in first.input if i in inits]
        assert len(consts) == 1 and consts[0].shape == () and float(consts[0]) == 127.5, op
