"""The DeepStream hand-off (``export --deepstream``): the nvinfer config read by GLib's own key-file
parser and checked against the graph's real inputs and outputs, the float-input graph against the
uint8 graph in real ONNX Runtime on real photos, the decode against rpol-edge's boxes, refusals.

DeepStream, pyds and TensorRT are not here: what nvinfer does to a frame is emulated with its
documented arithmetic (`emulate_network_input`), and its tensor meta is read from real host memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
ort = pytest.importorskip("onnxruntime", reason="the graphs run in ONNX Runtime (ort extra)")

from rpol_edge.core.geometry import CropTransform  # noqa: E402
from rpol_edge.core.metadata import MetadataError, ModelMeta  # noqa: E402
from rpol_edge.core.onnx_meta import read_onnx_meta  # noqa: E402
from rpol_edge.core.prepare import prepare  # noqa: E402
from rpol_edge.data import read_dataset  # noqa: E402
from rpol_edge.data.images import load_rgb  # noqa: E402
from rpol_edge.exporters.deepstream import export_deepstream, split_normalization  # noqa: E402
from rpol_edge.exporters.trt.compat import DEFAULT_TARGETS, check_onnx_file  # noqa: E402
from rpol_edge.integrations.deepstream.decode import (  # noqa: E402
    CONFIG_NAME,
    DECISIVE,
    ONNX_NAME,
    SIDECAR_NAME,
    emulate_network_input,
    engine_file_name,
    load_handoff,
    nvinfer_transform,
)
from rpol_edge.integrations.deepstream.probe import layer_array, rect, score_and_mask  # noqa: E402
from rpol_edge.results.detection import detect  # noqa: E402
from tests.cli.test_commands import one_line_error, run  # noqa: E402
from tests.conftest import SAMPLE, SHARED_RACCOON  # noqa: E402

NVINFER_KEYS = {
    "gpu-id", "gie-unique-id", "process-mode", "interval", "onnx-file", "model-engine-file", "batch-size",
    "network-mode", "workspace-size", "net-scale-factor", "offsets", "model-color-format",
    "maintain-aspect-ratio", "symmetric-padding", "scaling-filter", "scaling-compute-hw", "network-type",
    "output-tensor-meta", "output-blob-names",
}  # fmt: skip
"""Every key the hand-off writes, each one a CONFIG_GROUP_INFER_* key of DeepStream 6.2's
gstnvinfer_property_parser.h (an unknown key is only warned about there, then ignored)."""


@pytest.fixture(scope="module")
def handoff_dir(sample_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds")
    export_deepstream(sample_model, out, batch=(1, 1, 1))
    return out


@pytest.fixture(scope="module")
def graphs(handoff_dir: Path, sample_onnx: Path) -> tuple[Any, Any]:
    """(the uint8 graph, the nvinfer graph) in ONNX Runtime on the CPU."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    cpu = ["CPUExecutionProvider"]
    return (
        ort.InferenceSession(str(sample_onnx), opts, providers=cpu),
        ort.InferenceSession(str(handoff_dir / ONNX_NAME), opts, providers=cpu),
    )


def photos() -> list[np.ndarray]:
    """The raccoon test photos where the shared data is (40), else the bundled sample's."""
    if SHARED_RACCOON.is_dir():
        return [load_rgb(s.path) for s in read_dataset("voc", SHARED_RACCOON, "test")]
    return [load_rgb(p) for p in sorted((SAMPLE / "JPEGImages").glob("*.jpg"))]


class GKeyFile:
    """GLib's key-file parser through ctypes: the calls nvinfer's config parser makes."""

    class _Error(ctypes.Structure):
        _fields_ = [("domain", ctypes.c_uint32), ("code", ctypes.c_int), ("message", ctypes.c_char_p)]

    def __init__(self, path: Path) -> None:
        name = ctypes.util.find_library("glib-2.0")
        if not name:
            pytest.skip("libglib-2.0 is not installed")
        self.g = ctypes.CDLL(name)
        g = self.g
        g.g_key_file_new.restype = ctypes.c_void_p
        for fn, res in (
            ("g_key_file_get_integer", ctypes.c_int),
            ("g_key_file_get_double", ctypes.c_double),
            ("g_key_file_get_boolean", ctypes.c_int),
            ("g_key_file_get_string", ctypes.c_void_p),
            ("g_key_file_get_double_list", ctypes.POINTER(ctypes.c_double)),
            ("g_key_file_get_string_list", ctypes.POINTER(ctypes.c_char_p)),
            ("g_key_file_get_keys", ctypes.POINTER(ctypes.c_char_p)),
        ):
            getattr(g, fn).restype = res
        self.kf = ctypes.c_void_p(g.g_key_file_new())
        err = ctypes.POINTER(self._Error)()
        ok = g.g_key_file_load_from_file(self.kf, str(path).encode(), 0, ctypes.byref(err))
        assert ok, err.contents.message if err else "load failed"

    def _call(self, fn: str, key: str, *extra: Any) -> Any:
        err = ctypes.POINTER(self._Error)()
        value = getattr(self.g, fn)(self.kf, b"property", key.encode(), *extra, ctypes.byref(err))
        assert not err, f"{key}: {err.contents.message!r}"
        return value

    def keys(self) -> list[str]:
        n = ctypes.c_size_t()
        err = ctypes.POINTER(self._Error)()
        arr = self.g.g_key_file_get_keys(self.kf, b"property", ctypes.byref(n), ctypes.byref(err))
        return [arr[i].decode() for i in range(n.value)]

    def integer(self, key: str) -> int:
        return int(self._call("g_key_file_get_integer", key))

    def double(self, key: str) -> float:
        return float(self._call("g_key_file_get_double", key))

    def boolean(self, key: str) -> bool:
        return bool(self._call("g_key_file_get_boolean", key))

    def string(self, key: str) -> str:
        return ctypes.string_at(self._call("g_key_file_get_string", key)).decode()

    def doubles(self, key: str) -> list[float]:
        n = ctypes.c_size_t()
        arr = self._call("g_key_file_get_double_list", key, ctypes.byref(n))
        return [arr[i] for i in range(n.value)]

    def strings(self, key: str) -> list[str]:
        n = ctypes.c_size_t()
        arr = self._call("g_key_file_get_string_list", key, ctypes.byref(n))
        return [arr[i].decode() for i in range(n.value)]


def io_of(path: Path) -> dict[str, tuple[int, list[int | str]]]:
    """Graph input and output name -> (element type, dims) read from the ONNX file."""
    g = onnx.load(str(path)).graph
    return {
        v.name: (
            v.type.tensor_type.elem_type,
            [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim],
        )
        for v in [*g.input, *g.output]
    }


def check_config_against_graph(directory: Path, precision: str, batch: tuple[int, int]) -> None:
    kf = GKeyFile(directory / CONFIG_NAME)
    assert set(kf.keys()) == NVINFER_KEYS
    meta = ModelMeta.from_dict(json.loads((directory / SIDECAR_NAME).read_text())["model"])
    k, s = meta.input_size, meta.resize_size
    onnx_file = directory / kf.string("onnx-file")
    io = io_of(onnx_file)
    fixed = batch[0] == batch[1]
    assert list(io) == ["frames", *kf.strings("output-blob-names")] == ["frames", "score", "mask"]
    # nvinfer's input: float planar (C, H, W) after the batch, RGB, the network size S x S.
    assert io["frames"] == (onnx.TensorProto.FLOAT, [batch[0] if fixed else "batch", 3, s, s])
    for name in ("score", "mask"):  # no UINT8: NvDsInferDataType has none
        assert io[name] == (onnx.TensorProto.FLOAT, [batch[0] if fixed else "batch", 1, k, k])
    assert kf.integer("batch-size") == batch[1]
    mode = {"fp32": 0, "fp16": 2}[precision]
    assert kf.integer("network-mode") == mode
    assert kf.string("model-engine-file") == f"{kf.string('onnx-file')}_b{batch[1]}_gpu0_{precision}.engine"
    assert kf.string("model-engine-file") == engine_file_name(
        ONNX_NAME, batch[1], precision, kf.integer("gpu-id")
    )
    assert kf.integer("network-type") == 100 and kf.boolean("output-tensor-meta")
    assert kf.integer("process-mode") == 1 and kf.integer("gie-unique-id") >= 1
    assert kf.integer("model-color-format") == 0 and not kf.boolean("maintain-aspect-ratio")
    assert kf.integer("scaling-filter") == 1  # bilinear, not nvinfer's nearest default
    assert kf.double("net-scale-factor") == 1.0 and kf.doubles("offsets") == [0.0, 0.0, 0.0]
    # rpol-edge's own reader agrees with GLib on every value.
    handoff = load_handoff(directory)
    assert handoff.config["offsets"] == tuple(kf.doubles("offsets"))
    assert handoff.config["output-blob-names"] == tuple(kf.strings("output-blob-names"))
    assert handoff.config["batch-size"] == kf.integer("batch-size")
    assert handoff.gie_unique_id == kf.integer("gie-unique-id")


def test_config_parses_and_names_the_graphs_real_inputs_and_outputs(handoff_dir: Path) -> None:
    check_config_against_graph(handoff_dir, "fp32", (1, 1))
    assert read_onnx_meta_refused(handoff_dir / ONNX_NAME)


def read_onnx_meta_refused(path: Path) -> bool:
    """rpol-edge's runtimes (uint8 NHWC) find no record of theirs in the float NCHW graph and refuse
    it, naming what it is and what to run instead."""
    with pytest.raises(MetadataError, match="DeepStream hand-off graph .* runs the model.onnx"):
        read_onnx_meta(path)
    return True


def test_float_graph_passes_the_static_tensorrt_check(handoff_dir: Path) -> None:
    assert check_onnx_file(handoff_dir / ONNX_NAME, DEFAULT_TARGETS) == []
    types = {v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(
        onnx.load(str(handoff_dir / ONNX_NAME))).graph.value_info}  # fmt: skip
    assert onnx.TensorProto.UINT8 not in types


def test_float_graph_equals_the_uint8_graph_on_real_photos(
    handoff_dir: Path, graphs: tuple[Any, Any]
) -> None:
    """nvinfer's input (the config's net-scale-factor/offsets, emulated in float32) through the float
    graph gives the uint8 graph's score and mask, bit for bit, and the same boxes in frame pixels."""
    handoff = load_handoff(handoff_dir)
    u8, ds = graphs
    s, k = handoff.meta.resize_size, handoff.meta.input_size
    o = CropTransform(s, s, s, k).offset
    nsf, offsets = handoff.config["net-scale-factor"], handoff.config["offsets"]
    images = photos()
    worst = 0.0
    for rgb in images:
        h, w = rgb.shape[:2]
        stretched = cv2.resize(
            np.ascontiguousarray(rgb[: h & ~1, : w & ~1]), (s, s), interpolation=cv2.INTER_LINEAR
        )
        crop = np.ascontiguousarray(stretched[o : o + k, o : o + k])[None]
        score8, mask8, _ = u8.run(None, {"frames": crop})
        score, mask = ds.run(None, {"frames": emulate_network_input(rgb, s, nsf, offsets)[None]})
        worst = max(worst, float(np.abs(score - score8).max()))
        assert np.array_equal(mask.astype(np.uint8), mask8)
        ours = handoff.decode(score[0], mask[0], (w, h))
        theirs = detect(score8[0, 0], mask8[0, 0], CropTransform(w & ~1, h & ~1, s, k))
        assert ours == theirs
    assert worst == 0.0 and len(images) >= 20


@pytest.mark.parametrize(("w", "h"), [(1280, 720), (641, 479), (480, 640)])
def test_decode_maps_boxes_with_nvinfers_geometry(handoff_dir: Path, w: int, h: int) -> None:
    """nvinfer scales the even-rounded frame (GST_ROUND_DOWN_2) by S / W', S / H'; the graph's crop
    adds the offset: a network box maps back by (x + offset) * W' / S. For even frames that is the
    transform rpol-edge's own pre-processing returns."""
    handoff = load_handoff(handoff_dir)
    s, k = handoff.meta.resize_size, handoff.meta.input_size
    t = nvinfer_transform(w, h, s, k)
    we, he = w - w % 2, h - h % 2
    assert (t.src_w, t.src_h, t.resize, t.crop, t.offset) == (we, he, s, k, int(round((s - k) / 2.0)))
    if w % 2 == 0 and h % 2 == 0:
        frame = np.zeros((h, w, 3), np.uint8)
        assert prepare(frame, handoff.meta, is_rgb=True)[1] == t
    mask = np.zeros((k, k), np.float32)
    mask[40:120, 30:200] = 1.0  # rows 40..119, columns 30..199
    score = np.where(mask > 0, 0.8, 0.1).astype(np.float32)
    d = handoff.decode(score[None], mask[None], (w, h))
    x0, y0, x1, y1 = 30, 40, 200, 120  # boundingRect's x + w, as wsolevaluation
    expect = [
        round((x0 + t.offset) * we / s), round((y0 + t.offset) * he / s),
        round((x1 + t.offset) * we / s), round((y1 + t.offset) * he / s),
    ]  # fmt: skip
    assert d.box is not None and list(d.box) == expect and d.input_box == (x0, y0, x1, y1)
    assert d == detect(score, mask.astype(np.uint8), CropTransform(we, he, s, k))
    assert max(d.box[0::2]) <= w - 1 and max(d.box[1::2]) <= h - 1
    empty = handoff.decode(np.zeros((1, k, k), np.float32), np.zeros((1, k, k), np.float32), (w, h))
    assert empty.box is None


@pytest.mark.parametrize(
    ("mean", "std"), [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
)
def test_every_normalization_split_computes_the_models_normalization(
    mean: tuple[float, ...], std: tuple[float, ...]
) -> None:
    """nvinfer's y = nsf * (x - offsets) then the graph's (y - m) / s equals (x - 255 mean) / (255 std)
    for every uint8 x: exactly for ``graph`` and ``offsets``, to float32 rounding for ``config``."""
    x = np.arange(256, dtype=np.float32)[:, None].repeat(3, axis=1)
    want = (x - np.float32(255.0) * np.asarray(mean, np.float32)) / (
        np.float32(255.0) * np.asarray(std, np.float32)
    )
    for where, tol in (("graph", 0.0), ("offsets", 0.0), ("config", 2e-6)):
        n = split_normalization(mean, std, where)
        y = np.float32(n.net_scale_factor) * (x - np.asarray(n.offsets, np.float32))
        got = (y - np.asarray(n.graph_mean, np.float32)) / np.asarray(n.graph_std, np.float32)
        assert np.abs(got - want).max() <= tol * np.abs(want).max(), where
    one = split_normalization(mean, std, "config")
    assert (len(set(std)) == 1) == (one.graph_std == (1.0, 1.0, 1.0))  # one std: all of it in the config


def test_handoff_refuses_mismatched_config_graph_and_tensors(handoff_dir: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "h"
    shutil.copytree(handoff_dir, d)
    handoff = load_handoff(d)
    k = handoff.meta.input_size
    with pytest.raises(MetadataError, match="outputs 1x224x224"):
        handoff.decode(np.zeros((1, 112, 112), np.float32), np.zeros((1, 112, 112), np.float32), (640, 480))
    with pytest.raises(MetadataError, match="240x240"):
        handoff.check_network(224, 224, False)
    with pytest.raises(MetadataError, match="aspect ratio"):
        handoff.check_network(240, 240, True)
    handoff.check_network(240, 240, False)
    config = (d / CONFIG_NAME).read_text()
    for key, value in (("offsets", "123.675;116.28;103.53"), ("maintain-aspect-ratio", "1"),
                       ("net-scale-factor", "0.0078431"), ("output-blob-names", "mask;score")):  # fmt: skip
        assert key in DECISIVE
        edited = "\n".join(f"{key}={value}" if ln.startswith(f"{key}=") else ln for ln in config.splitlines())
        (d / CONFIG_NAME).write_text(edited + "\n")
        with pytest.raises(MetadataError, match=f"{key}={value}"):
            load_handoff(d)
    (d / CONFIG_NAME).write_text(config.replace("gie-unique-id=1", "gie-unique-id=3"))
    assert load_handoff(d).gie_unique_id == 3  # not decisive: the probe follows the config
    (d / CONFIG_NAME).write_text(config)
    record = json.loads((d / SIDECAR_NAME).read_text())
    for change, match in (
        ({"input_size": 448, "resize_size": 480}, "another model"),  # another input size
        ({"w_sha256": "0" * 64}, "another model"),
    ):
        (d / SIDECAR_NAME).write_text(json.dumps({**record, "model": {**record["model"], **change}}))
        with pytest.raises(MetadataError, match=match):
            load_handoff(d)
    (d / SIDECAR_NAME).write_text(json.dumps({**record, "onnx_sha256": "f" * 64}))
    with pytest.raises(MetadataError, match="changed since it was exported"):
        load_handoff(d)
    (d / SIDECAR_NAME).write_text(json.dumps({**record, "format_version": 99}))
    with pytest.raises(MetadataError, match="newer"):
        load_handoff(d)
    (d / SIDECAR_NAME).unlink()
    with pytest.raises(MetadataError, match="cannot read the hand-off record"):
        load_handoff(d)
    assert k == 224


def test_probe_reads_tensor_meta_host_buffers(handoff_dir: Path) -> None:
    """layer_array reads real host memory the way the probe reads nvinfer's buffers (the address
    pyds.get_ptr returns), copies it, and refuses what nvinfer never writes."""
    for data_type, dtype in ((0, np.float32), (1, np.float16), (3, np.int32)):
        src = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(1, 6, 4)
        got = layer_array(src.ctypes.data, [1, 6, 4], data_type)
        assert got.dtype == dtype and np.array_equal(got, src)
        src[...] = 0
        assert got.any(), "a view of the pool buffer, not a copy"
    with pytest.raises(MetadataError, match="data type 5"):
        layer_array(np.zeros(4, np.uint8).ctypes.data, [4], 5)
    with pytest.raises(MetadataError, match="no host buffer"):
        layer_array(0, [4], 0)
    with pytest.raises(MetadataError, match="output-blob-names"):
        score_and_mask({"score": np.zeros(1)})
    assert rect((10, 20, 29, 59)) == (10.0, 20.0, 20.0, 40.0)  # inclusive pixels -> width, height


def test_runtime_side_imports_no_torch() -> None:
    code = (
        "import sys; import rpol_edge.integrations.deepstream.decode, "
        "rpol_edge.integrations.deepstream.probe; "
        "bad = [m for m in ('torch', 'timm', 'onnx', 'onnxruntime', 'pyds') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_cli_export_deepstream_fp16_dynamic_batch(sample_model: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    code, out = run(
        "export", sample_model, "-o", tmp_path / "exp", "--fp16", "--batch", "1:2:4", "--deepstream", ds
    )
    assert code == 0, out
    assert "nvinfer-config" in out and str(ds / CONFIG_NAME) in out.replace("\n", "")
    check_config_against_graph(ds, "fp16", (1, 4))
    readme = (ds / "README.txt").read_text()
    assert "make_probe" in readme and engine_file_name(ONNX_NAME, 4, "fp16") in readme


def test_cli_refuses_deepstream_combinations(sample_model: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    int8 = ("--int8", "--calib-data", "voc", "--calib-root", SAMPLE)
    line = one_line_error(*run("export", sample_model, *int8, "-o", tmp_path / "e", "--deepstream", ds))
    assert "calibration table" in line
    line = one_line_error(*run("export", sample_model, "--frame-size", "320x240", "--deepstream", ds))
    assert "--frame-size" in line
    line = one_line_error(*run("export", tmp_path / "model.onnx", "--trt", "--deepstream", ds))
    assert "fitted .rpol" in line
    (tmp_path / "file").write_text("x")
    line = one_line_error(
        *run("export", sample_model, "-o", tmp_path / "e", "--deepstream", tmp_path / "file")
    )
    assert "not a folder" in line
    assert not ds.exists()
