"""Static TensorRT-compatibility check: every exported variant passes, broken graphs fail by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
pytest.importorskip("onnxslim", reason="export simplifies with onnxslim (onnx extra)")

from onnx import TensorProto, helper  # noqa: E402

from rpol_edge.core.onnx_meta import read_onnx_meta  # noqa: E402
from rpol_edge.exporters.onnx_export import export_onnx  # noqa: E402
from rpol_edge.exporters.trt.compat import (  # noqa: E402
    DEFAULT_TARGETS,
    TrtCompatError,
    check_model,
    check_onnx_file,
    parse_targets,
    require_compatible,
)
from rpol_edge.exporters.trt.trtexec import trtexec_args, trtexec_lines  # noqa: E402


def _graph(nodes, inputs, outputs, inits=(), opset: int = 17):  # type: ignore[no-untyped-def]
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name: str, dtype: int, shape: list[int]):  # type: ignore[no-untyped-def]
    return helper.make_tensor_value_info(name, dtype, shape)


def test_uint8_transpose_fails_naming_the_node() -> None:
    """A Transpose on the UINT8 input before the Cast (TensorRT 8.6 rejects it)."""
    model = _graph(
        [
            helper.make_node("Transpose", ["frames"], ["t"], name="nhwc_to_nchw", perm=[0, 3, 1, 2]),
            helper.make_node("Cast", ["t"], ["score"], name="to_float", to=TensorProto.FLOAT),
        ],
        [_vi("frames", TensorProto.UINT8, [1, 8, 8, 3])],
        [_vi("score", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    found = check_model(model)
    assert {v.target for v in found} == set(DEFAULT_TARGETS)
    first = [v for v in found if v.node == "nhwc_to_nchw"]
    assert first and first[0].op == "Transpose" and first[0].dtype == "UINT8"
    assert "network input or output" in first[0].rule
    with pytest.raises(TrtCompatError) as exc:
        require_compatible(model, what="g.onnx")
    msg = str(exc.value)
    assert "\n" not in msg and "'nhwc_to_nchw' (Transpose) on UINT8" in msg and "g.onnx" in msg
    # Cast first, then transpose: accepted by every target.
    fixed = _graph(
        [
            helper.make_node("Cast", ["frames"], ["f"], name="to_float", to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["f"], ["score"], name="nhwc_to_nchw", perm=[0, 3, 1, 2]),
        ],
        [_vi("frames", TensorProto.UINT8, [1, 8, 8, 3])],
        [_vi("score", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    assert check_model(fixed) == []


def test_op_tensorrt_lacks_fails_naming_it() -> None:
    model = _graph(
        [helper.make_node("Unique", ["x"], ["y"], name="dedupe")],
        [_vi("x", TensorProto.FLOAT, [4])],
        [_vi("y", TensorProto.FLOAT, [None])],  # type: ignore[list-item]
    )
    with pytest.raises(TrtCompatError, match=r"'dedupe' \(Unique\).*not supported"):
        require_compatible(model)
    # An op the table does not know is refused too, not waved through.
    odd = _graph(
        [helper.make_node("Det", ["x"], ["y"], name="det")],
        [_vi("x", TensorProto.FLOAT, [2, 2])],
        [_vi("y", TensorProto.FLOAT, [])],
    )
    assert any(v.node == "det" and "not in rpol-edge's table" in v.rule for v in check_model(odd))


def test_int8_outside_qdq_and_nonzero_zero_point_fail() -> None:
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zp = helper.make_tensor("zp", TensorProto.INT8, [], [3])
    model = _graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q"),
            helper.make_node("Relu", ["q"], ["y"], name="int8_relu"),
        ],
        [_vi("x", TensorProto.FLOAT, [4])],
        [_vi("y", TensorProto.INT8, [4])],
        [scale, zp],
    )
    rules = {(v.node, v.rule.split(" ")[0]) for v in check_model(model, ["10.3"])}
    assert ("int8_relu", "INT8/INT4/FP8") in rules
    assert ("q", "Q/DQ") in rules


def test_opset_range_and_targets() -> None:
    model = _graph(
        [helper.make_node("Relu", ["x"], ["y"], name="r")],
        [_vi("x", TensorProto.FLOAT, [4])],
        [_vi("y", TensorProto.FLOAT, [4])],
        opset=18,
    )
    found = check_model(model)
    assert [v.target for v in found] == ["8.6"] and "opset 18" in found[0].rule
    assert check_model(model, ["10.3", "10.15"]) == []
    assert parse_targets("10.3, 8.6") == ("10.3", "8.6")
    with pytest.raises(ValueError, match="choose from 8.6"):
        parse_targets("7.1")


def test_every_exported_variant_passes(variants: dict[str, Path]) -> None:
    for name, path in variants.items():
        meta = read_onnx_meta(path)
        targets = meta.extra["trt_targets"].split(",")
        # Legacy graphs are opset 17, parsed by every claimed TensorRT; dynamo's 18 is beyond 8.6.
        assert targets == (["10.3", "10.15"] if name.startswith("dynamo") else list(DEFAULT_TARGETS)), name
        assert check_onnx_file(path, targets) == [], name
        first = onnx.load(str(path)).graph.node[0]
        assert first.op_type == "Cast", (name, first.op_type)


def test_export_refuses_a_violation_and_writes_nothing(
    sample_model: Path, variants: dict[str, Path], tmp_path: Path
) -> None:
    # Without onnxslim the legacy exporter leaves TF-"same" padding as INT64 shape arithmetic
    # (ConstantOfShape), which TensorRT 8.x's matrix lists for FP32 only: a real violation.
    out = tmp_path / "m.onnx"
    with pytest.raises(TrtCompatError, match=r"TensorRT 8\.6: node '[^']+' \(ConstantOfShape\) on INT64"):
        export_onnx(sample_model, out, batch=(1, 1, 1), simplify=False, trt_targets=["8.6"])
    assert not list(tmp_path.iterdir())  # nothing written, no temporary file left behind
    dynamo = check_onnx_file(variants["dynamo-dynamic"], ["8.6"])
    assert dynamo and "opset 18 outside 7..17" in str(dynamo[0])


@pytest.mark.parametrize("preset", ["moco_r50", "dino_vits16"])
def test_backbone_presets_pass(preset: str, tmp_path: Path) -> None:
    """ResNet-50 (moco/dino/sup share it) and ViT-S/16 Localizer graphs, random weights, small input."""
    import timm
    import torch

    from rpol_edge.backbones.timm_backbone import BackboneSpec, build_backbone
    from rpol_edge.exporters.onnx_export import _simplify, _trace
    from rpol_edge.modeling.localizer import Localizer

    def moco(sd: dict) -> dict:  # type: ignore[type-arg]
        return {"state_dict": {f"module.encoder_q.{k}": v for k, v in sd.items()}}

    arch, key, size = {
        "moco_r50": ("resnet50", moco, 64),
        "dino_vits16": ("vit_small_patch16_224", dict, 224),
    }[preset]
    sd = timm.create_model(arch, pretrained=False, num_classes=0).state_dict()
    ckpt = tmp_path / "w.pth"
    torch.save(key(sd), ckpt)
    bb = build_backbone(BackboneSpec(preset, str(ckpt)), size)
    w = torch.nn.functional.normalize(torch.rand(1, bb.channels), dim=1)
    module = Localizer(bb.module, w, (0.5,) * 3, (0.25,) * 3, size, 0.5).eval()  # type: ignore[arg-type]
    path = tmp_path / "g.onnx"
    _trace(module, torch.zeros((1, size, size, 3), dtype=torch.uint8), path, 17, False, "legacy")
    found = check_model(_simplify(onnx.load(str(path))))
    assert found == [], [str(v) for v in found[:3]]


def test_trtexec_command_mirrors_the_builder() -> None:
    p = Path("exp/model.onnx")
    fixed = trtexec_args(p, 448, "fp16", "10.3", (4, 4, 4))
    assert fixed[:2] == ["trtexec", "--onnx=exp/model.onnx"]
    assert "--shapes=frames:4x448x448x3" in fixed and "--fp16" in fixed and "--stronglyTyped" not in fixed
    assert (
        "--timingCacheFile=exp/timing-10.3.cache" in fixed
        and "--saveEngine=exp/model.trtexec.engine" in fixed
    )
    assert "--memPoolSize=workspace:1024" in fixed
    assert "--noDataTransfers" not in fixed and "--useCudaGraph" not in fixed
    typed = trtexec_args(Path("exp/model.fp16.onnx"), 448, "fp16", "10.13", (1, 4, 8), cuda_graph=True)
    assert "--stronglyTyped" in typed and "--fp16" not in typed and "--useCudaGraph" in typed
    assert {"--minShapes=frames:1x448x448x3", "--optShapes=frames:4x448x448x3"} <= set(typed)
    assert "--maxShapes=frames:8x448x448x3" in typed and not any(a.startswith("--shapes") for a in typed)
    assert "--int8" in trtexec_args(p, 224, "int8", "8.6") and "--stronglyTyped" in trtexec_args(
        p, 224, "int8", "10.15"
    )
    # TensorRT 11's trtexec: no --fp16/--int8, --stronglyTyped a no-op, CUDA graphs on by default.
    eleven = trtexec_args(Path("exp/model.fp16.onnx"), 448, "fp16", "11.1")
    assert not {"--fp16", "--stronglyTyped", "--useCudaGraph"} & set(eleven) and "--noCudaGraph" in eleven
    assert "--noCudaGraph" not in trtexec_args(p, 448, "fp16", "11.1", cuda_graph=True)
    assert "--noCudaGraph" not in typed
    fp32 = set(trtexec_args(p, 224, "fp32", "8.6"))
    assert not {"--fp16", "--int8", "--stronglyTyped"} & fp32
    # FP32 engines are built with TF32 off (TensorRT's default is on); only fp32 says so.
    assert "--noTF32" in fp32 and "--noTF32" not in fixed and "--noTF32" not in typed


def test_trtexec_lines_from_exported_files(variants: dict[str, Path]) -> None:
    lines = dict(trtexec_lines(variants["fp32-static"]))
    # FP32 graph: an fp32 engine everywhere, and the fp16 one where FP16 is the builder flag (< 10.12).
    expected = {"8.6 fp32", "8.6 fp16", "10.3 fp32", "10.3 fp16", "10.15 fp32"}
    assert set(lines) == {f"TensorRT {e}" for e in expected}
    assert (
        "--fp16" in lines["TensorRT 10.3 fp16"]
        and "--shapes=frames:1x224x224x3" in lines["TensorRT 8.6 fp32"]
    )
    fp16 = dict(trtexec_lines(variants["fp16"]))
    assert list(fp16) == ["TensorRT 10.15 fp16"] and "--stronglyTyped" in fp16["TensorRT 10.15 fp16"]
    dyn = dict(trtexec_lines(variants["fp32-dynamic"]))
    assert "--optShapes=frames:1x224x224x3" in dyn["TensorRT 10.3 fp32"]
    assert "--maxShapes=frames:8x224x224x3" in dyn["TensorRT 10.3 fp32"]
    int8 = dict(trtexec_lines(variants["int8-trt"]))
    assert "--int8" in int8["TensorRT 8.6 int8"] and "--stronglyTyped" in int8["TensorRT 10.15 int8"]
    assert np.all([str(variants["int8-trt"]) in c for c in int8.values()])
