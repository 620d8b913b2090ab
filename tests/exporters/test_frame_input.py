"""Raw camera frames in (``export --frame-size``): the graph's resize/crop/BGR against the host path.

Real ONNX Runtime, real photos, a real OpenCV-written MP4; the in-graph pre-processing is checked
pixel for pixel against cv2.resize(INTER_LINEAR), and the maps and boxes against the host path.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
ort = pytest.importorskip("onnxruntime", reason="the ort runtime needs the ort extra")

from rpol_edge.core.export_formats import parse_frame_size  # noqa: E402
from rpol_edge.core.metadata import ModelMeta  # noqa: E402
from rpol_edge.core.onnx_meta import read_onnx_meta  # noqa: E402
from rpol_edge.core.prepare import FrameSizeError, prepare  # noqa: E402
from rpol_edge.evaluate.compare import agreement  # noqa: E402
from rpol_edge.exporters.frame_input import FrameInput  # noqa: E402
from rpol_edge.exporters.int8 import quantize_int8  # noqa: E402
from rpol_edge.exporters.onnx_export import export_onnx  # noqa: E402
from rpol_edge.results.boxes import iou_inclusive  # noqa: E402
from rpol_edge.results.detection import detect  # noqa: E402
from rpol_edge.runtimes import InferenceError, Output, infer_all, open_runtime  # noqa: E402
from tests.conftest import SAMPLE, SHARED_RACCOON  # noqa: E402
from tests.live.live_support import FRAME_H, FRAME_W, cli, frames_bgr, read_jsonl, write_video  # noqa: E402


@pytest.fixture(scope="module")
def raw_onnx(sample_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session model taking raw 320x240 BGR frames (resize 240, crop 224 in the graph)."""
    path = tmp_path_factory.mktemp("raw") / "model.onnx"
    export_onnx(sample_model, path, batch=(1, 1, 1), frame=(FRAME_W, FRAME_H, "bgr"))
    return path


class Echo(nn.Module):
    """Stands in for the Localizer to expose what FrameInput hands it (the network input frame)."""

    input_size = 224

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize(("w", "h", "resize"), [(1280, 720, 480), (320, 240, 240), (200, 150, 240)])
def test_in_graph_resize_is_cv2_inter_linear(w: int, h: int, resize: int, tmp_path: Path) -> None:
    """Exported and run in ONNX Runtime, the in-graph resize + crop + BGR->RGB equals the host's
    cv2.resize(INTER_LINEAR) + crop + cvtColor up to OpenCV's fixed-point rounding (one grey level)."""
    photo = cv2.imread(str(sorted((SAMPLE / "JPEGImages").glob("*.jpg"))[0]))
    frame = np.ascontiguousarray(cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA))
    module = FrameInput(Echo(), w, h, resize, "bgr").eval()
    path = tmp_path / "echo.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            module, (torch.zeros((1, h, w, 3), dtype=torch.uint8),), str(path), opset_version=17,
            dynamo=False, input_names=["frames"], output_names=["x"],
        )  # fmt: skip
    resize_node = next(n for n in onnx.load(str(path)).graph.node if n.op_type == "Resize")
    attrs = {a.name: a.s.decode() for a in resize_node.attribute if a.s}
    assert attrs["mode"] == "linear" and attrs["coordinate_transformation_mode"] == "half_pixel"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"frames": frame[None]})[0][0]
    o = module.geometry.offset
    host = cv2.resize(frame, (resize, resize), interpolation=cv2.INTER_LINEAR)[o : o + 224, o : o + 224]
    host = cv2.cvtColor(np.ascontiguousarray(host), cv2.COLOR_BGR2RGB)
    diff = np.abs(got - host.astype(np.float32))
    assert diff.max() <= 1.0 and (diff > 0).mean() < 0.25, (diff.max(), (diff > 0).mean())


def test_raw_frame_graph_contract(raw_onnx: Path, sample_model: Path) -> None:
    meta = read_onnx_meta(raw_onnx)
    assert (meta.frame_width, meta.frame_height, meta.frame_format) == (FRAME_W, FRAME_H, "bgr")
    assert meta.input_shape() == (FRAME_H, FRAME_W, 3) and meta.raw_frames
    model = onnx.load(str(raw_onnx))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, FRAME_H, FRAME_W, 3]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    # TensorRT takes UINT8 only at the network's I/O, through a Cast.
    consumers = [n for n in model.graph.node if "frames" in n.input]
    assert [n.op_type for n in consumers] == ["Cast"]
    # An old record without the new fields still loads, as a K x K model.
    old = json.loads(meta.to_json())
    for key in ("frame_width", "frame_height", "frame_format"):
        del old[key]
    assert not ModelMeta.from_dict(old).raw_frames


def test_raw_frames_match_host_path(raw_onnx: Path, sample_onnx: Path) -> None:
    """Same photos as a camera would send them: the in-graph path against the live runner's host path
    (here INTER_LINEAR: the 240-row frame is not shrunk), maps and boxes in frame pixels."""
    frames = frames_bgr(12)
    with open_runtime(sample_onnx, "ort") as plain, open_runtime(raw_onnx, "ort") as raw:
        host = [prepare(f, plain.meta, is_rgb=False) for f in frames]
        graph = [prepare(f, raw.meta, is_rgb=False) for f in frames]
        assert all(g[0] is f or np.shares_memory(g[0], f) for g, f in zip(graph, frames, strict=True))
        a = infer_all(plain, np.stack([x for x, _ in host]))
        b_parts = [infer_all(raw, x[None]) for x, _ in graph]
    b = Output(np.concatenate([o.score for o in b_parts]), np.concatenate([o.mask for o in b_parts]))
    agree = agreement(a, b)
    # With the label-free `sign` rule a box follows the zero crossing of the raw response, so the
    # <= 1 grey level of OpenCV's fixed-point resize can move one box of a dozen (seen: 11/12).
    assert agree.boxes_iou_090 >= len(frames) - 1 and agree.mean_abs_map < 0.01, agree
    close = 0
    for i, ((_, t_host), (_, t_raw)) in enumerate(zip(host, graph, strict=True)):
        assert t_host == t_raw
        box_a = detect(a.score[i, 0], a.mask[i, 0], t_host).box
        box_b = detect(b.score[i, 0], b.mask[i, 0], t_raw).box
        assert box_a is not None and box_b is not None
        close += int(iou_inclusive(np.array(box_a), np.array(box_b))[0, 0] >= 0.9)
    assert close >= len(frames) - 1  # in frame pixels, the same allowance as above


def test_runtime_and_prepare_refuse_other_frames(raw_onnx: Path) -> None:
    with open_runtime(raw_onnx, "ort") as rt:
        with pytest.raises(InferenceError, match="--frame-size"):
            rt.infer(np.zeros((1, 224, 224, 3), np.uint8))
        with pytest.raises(FrameSizeError, match="--frame-size 640x480"):
            prepare(np.zeros((480, 640, 3), np.uint8), rt.meta, is_rgb=False)
        rgb = np.random.default_rng(0).integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
        x, _ = prepare(rgb, rt.meta, is_rgb=True)  # an RGB source for a BGR graph: reversed once
        np.testing.assert_array_equal(x, rgb[..., ::-1])


def test_live_run_uses_the_graph_path(raw_onnx: Path, sample_onnx: Path, tmp_path: Path) -> None:
    video = tmp_path / "in.mp4"
    write_video(video, frames_bgr(8))
    records = {}
    for name, model in (("host", sample_onnx), ("graph", raw_onnx)):
        jsonl = tmp_path / f"{name}.jsonl"
        res = cli("run", model, "--source", video, "--jsonl", jsonl, "--summary", tmp_path / f"{name}.json")
        assert res.exit_code == 0, res.output
        records[name] = read_jsonl(jsonl)
        summary = json.loads((tmp_path / f"{name}.json").read_text())
        assert ("pre-processing in graph" in summary["runtime"]) == (name == "graph"), summary["runtime"]
    assert "pre-processing: in graph (320x240 bgr frames" in res.stderr
    assert len(records["host"]) == len(records["graph"]) == 8
    for h, g in zip(records["host"], records["graph"], strict=True):
        assert (g["width"], g["height"]) == (FRAME_W, FRAME_H)
        assert iou_inclusive(np.array(h["box"]), np.array(g["box"]))[0, 0] >= 0.9, (h, g)


def test_live_run_refuses_other_frame_sizes(raw_onnx: Path) -> None:
    res = cli("run", raw_onnx, "--source", SAMPLE / "JPEGImages")  # photos of about 500x375
    assert res.exit_code == 2, res.output
    assert "--frame-size" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frame-size", "1280"], "WIDTHxHEIGHT"),
        (["--frame-size", "1280x720", "--frame-format", "yuv"], "bgr"),
    ],
)
def test_export_frame_options_are_checked(
    sample_model: Path, args: list[str], message: str, tmp_path: Path
) -> None:
    res = cli("export", sample_model, "-o", tmp_path / "e", *args)
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "e" / "model.onnx").exists()
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_frame_size("0x720")


def test_int8_of_a_raw_frame_graph(raw_onnx: Path, tmp_path: Path) -> None:
    """INT8 calibrates on photos stretched to the frame size, in the graph's channel order."""
    root = SHARED_RACCOON if SHARED_RACCOON.is_dir() else SAMPLE
    q = tmp_path / "model.int8.onnx"
    meta = quantize_int8(raw_onnx, q, "voc", root, "train", count=4)
    assert meta.raw_frames and json.loads(meta.extra["int8_recipe"])["count"] == 4
    frame = frames_bgr(1)[0]
    with open_runtime(raw_onnx, "ort") as a, open_runtime(q, "ort") as b:
        sa, sb = a.infer(frame[None]).score, b.infer(frame[None]).score
    assert sb.shape == sa.shape and float(np.abs(sa - sb).mean()) < 0.1
