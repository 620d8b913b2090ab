"""OpenVINO as a CPU runtime peer of ONNX Runtime: the same exported graphs (and IRs written by
``export --openvino``), the same validation and outputs, the metadata record carried and checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="OpenVINO not installed: pip install 'rpol-edge[openvino]'")

from rpol_edge.core.metadata import MetadataError  # noqa: E402
from rpol_edge.core.model_file import read_meta  # noqa: E402
from rpol_edge.evaluate.compare import agreement, dataset_frames  # noqa: E402
from rpol_edge.runtimes import InferenceError, infer_all, open_runtime  # noqa: E402
from rpol_edge.runtimes.openvino_runtime import write_ir  # noqa: E402
from tests.conftest import SAMPLE  # noqa: E402


@pytest.fixture(scope="module")
def ir(sample_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    xml = tmp_path_factory.mktemp("ir") / "model.xml"
    write_ir(sample_onnx, xml)
    return xml


def test_fp32_graph_on_openvino_matches_onnx_runtime(sample_onnx: Path, ir: Path) -> None:
    """f32 (the default for an .onnx and for an IR exported at f32) is FP32: maps within 1e-4 of
    ONNX Runtime's and every box the same on the sample's test photos."""
    with open_runtime(sample_onnx, "ort", device="cpu") as ref:
        frames = dataset_frames(ref.meta, "voc", SAMPLE, "test")
        want = infer_all(ref, frames)
    for path in (sample_onnx, ir):
        with open_runtime(path, "openvino", device="cpu") as rt:
            assert rt.description == "openvino CPU f32"
            got = infer_all(rt, frames)
        a = agreement(want, got)
        assert a.max_abs_map < 1e-4 and a.boxes_identical == a.n == len(frames), (path.name, a)


def test_ir_carries_the_metadata_record(sample_onnx: Path, ir: Path) -> None:
    onnx_meta, ir_meta = read_meta(sample_onnx), read_meta(ir)
    assert ir_meta.replace(extra={}) == onnx_meta.replace(extra={})
    assert ir_meta.extra["openvino_precision"] == "f32"
    with open_runtime(ir) as rt:  # .xml -> openvino by file type
        assert rt.name == "openvino" and rt.meta == ir_meta


def test_bf16_is_a_choice_and_is_recorded(sample_onnx: Path, tmp_path: Path) -> None:
    xml = tmp_path / "bf16.xml"
    write_ir(sample_onnx, xml, "bf16")
    with open_runtime(xml, device="cpu") as rt:
        assert rt.hint == "bf16"  # what the IR records; --precision still overrides it
    with open_runtime(xml, device="cpu", precision="f32") as rt:
        assert rt.hint == "f32"


def test_same_validation_as_every_runtime(sample_onnx: Path, tmp_path: Path) -> None:
    with open_runtime(sample_onnx, "openvino", device="cpu") as rt:
        k = rt.meta.input_size
        with pytest.raises(InferenceError, match="uint8"):
            rt.infer(np.zeros((1, k, k, 3), np.float32))
    with pytest.raises(InferenceError, match="precision 'fp8'"):
        open_runtime(sample_onnx, "openvino", device="cpu", precision="fp8")
    with pytest.raises(InferenceError, match="device 'cuda:0' is not an OpenVINO device"):
        open_runtime(sample_onnx, "openvino", device="cuda:0")
    with pytest.raises(InferenceError, match="does not take cuda_graph=True"):
        open_runtime(sample_onnx, "openvino", device="cpu", cuda_graph=True)
    plain = tmp_path / "plain.xml"
    import openvino as ov

    ov.save_model(ov.convert_model(str(sample_onnx)), str(plain))  # an IR without our record
    with pytest.raises(MetadataError, match="no rpol-edge metadata"):
        read_meta(plain)


def test_export_writes_the_irs(sample_model: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rpol_edge.cli.app import app

    out = tmp_path / "exp"
    res = CliRunner().invoke(
        app, ["export", str(sample_model), "--onnx", "--openvino", "--batch", "1:2:4", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file()
    assert not list(out.glob(".ir.*")), "temporary IR folder left behind"
    res = CliRunner().invoke(app, ["info", str(out / "model.xml"), "--json"])
    record = json.loads(res.output)
    assert record["meta"]["precision"] == "fp32" and "frames (input)" in record["tensors"]


def test_openvino_never_imports_torch(sample_onnx: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; import numpy as np\n"
        "from rpol_edge.runtimes import open_runtime, infer_all\n"
        f"rt = open_runtime(Path({str(sample_onnx)!r}), 'openvino', device='cpu')\n"
        "with rt: infer_all(rt, np.zeros((1, rt.meta.input_size, rt.meta.input_size, 3), np.uint8))\n"
        "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def int8_onnx(sample_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rpol_edge.exporters.int8 import quantize_int8

    path = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    quantize_int8(sample_onnx, path, "voc", SAMPLE, "train", count=8)
    return path


@pytest.fixture()
def amx_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU with AMX, where `--runtime auto` runs INT8 graphs on OpenVINO (runtimes.cpu_auto)."""
    from rpol_edge.runtimes import cpu_auto

    fake = tmp_path / "cpuinfo"
    fake.write_text("model name\t: Intel(R) Xeon(R)\nflags\t\t: avx2 avx512f avx512_vnni amx_int8\n")
    monkeypatch.setattr(cpu_auto, "CPUINFO", fake)


def test_auto_on_a_cpu_follows_the_measured_rule(
    sample_onnx: Path, int8_onnx: Path, caplog: pytest.LogCaptureFixture, amx_cpu: None
) -> None:
    """On a CPU with AMX, INT8 graphs run on OpenVINO (compiled on open, said in one log line), FP32
    graphs on ONNX Runtime; --runtime ort still forces ONNX Runtime."""
    with caplog.at_level("INFO", logger="rpol_edge.runtimes"):
        with open_runtime(int8_onnx, device="cpu") as rt:
            assert rt.name == "openvino" and rt.description == "openvino CPU int8"
            infer_all(rt, np.zeros((2, rt.meta.input_size, rt.meta.input_size, 3), np.uint8))
    assert "auto: OpenVINO for INT8 on Intel(R) Xeon(R) (AMX)" in caplog.text and "--runtime" in caplog.text
    with open_runtime(int8_onnx, "ort", device="cpu") as rt:
        assert rt.name == "ort"
    with open_runtime(sample_onnx, device="cpu") as rt:
        assert rt.name == "ort"  # FP32 stays exact FP32


def test_auto_falls_back_when_openvino_cannot_compile(
    int8_onnx: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, amx_cpu: None
) -> None:
    from rpol_edge.runtimes import openvino_runtime

    def broken(self: object) -> None:
        raise InferenceError("OpenVINO could not compile it for CPU (unsupported)")

    monkeypatch.setattr(openvino_runtime.OpenVinoRuntime, "activate", broken)
    with caplog.at_level("WARNING", logger="rpol_edge.runtimes"):
        with open_runtime(int8_onnx, device="cpu") as rt:
            assert rt.name == "ort"
    assert "OpenVINO cannot run model.int8.onnx here" in caplog.text and "using ONNX Runtime" in caplog.text
