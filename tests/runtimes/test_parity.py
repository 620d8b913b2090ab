"""One parametrized parity test: every runtime available here against the PyTorch FP32 reference.

Frames come from the raccoon test split when ../shared is present, else the bundled sample.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from rpol_edge.evaluate.compare import agreement, compare, dataset_frames
from rpol_edge.runtimes import RUNTIMES, Output, infer_all, missing_modules, open_runtime
from tests.conftest import SAMPLE, SHARED_RACCOON

# name -> (runtime, options, max |score - reference|, fraction of frames whose box must be identical)
CASES = {
    "ort-cpu-fp32": ("ort", {"device": "cpu"}, 1e-4, 1.0),
    # On CUDA the torch runtime runs CUDA graphs by default; the eager cases keep the plain path checked.
    "torch-cuda-fp32": ("torch", {"device": "cuda"}, 1e-4, 1.0),
    "torch-cuda-fp32-eager": ("torch", {"device": "cuda", "cuda_graph": False}, 1e-4, 1.0),
    # FP16 moves contour edges by a pixel now and then: boxes must agree to IoU >= 0.9 instead.
    "torch-cuda-fp16": ("torch", {"device": "cuda", "precision": "fp16"}, 2e-2, 0.0),
    "torch-cuda-fp16-eager": (
        "torch",
        {"device": "cuda", "precision": "fp16", "cuda_graph": False},
        2e-2,
        0.0,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_runtime_matches_torch_reference(case: str, sample_model: Path, sample_onnx: Path) -> None:
    name, options, tol, identical = CASES[case]
    gone = missing_modules(RUNTIMES[name])
    if gone:
        pytest.skip(f"{name} runtime needs {', '.join(gone)}")
    if options.get("device") == "cuda":
        import torch

        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
    root = SHARED_RACCOON if SHARED_RACCOON.is_dir() else SAMPLE
    model = sample_onnx if name == "ort" else sample_model
    with open_runtime(sample_model, "torch") as ref, open_runtime(model, name, **options) as rt:
        frames = dataset_frames(ref.meta, "voc", root, "test", workers=0)
        result = compare(ref, rt, frames)
    assert result.n == len(frames) >= 12
    assert result.max_abs_map <= tol
    assert result.boxes_iou_090 == result.n
    assert result.boxes_identical >= identical * result.n, result


def test_agreement_counts_by_hand() -> None:
    k = 8
    score = np.zeros((2, 1, k, k), np.float32)
    mask = np.zeros((2, 1, k, k), np.uint8)
    mask[0, 0, 2:6, 2:6] = 1  # box [2, 2, 6, 6] after the wsolevaluation +1 overshoot
    mask[1, 0, 0:3, 0:3] = 1
    other_score, other_mask = score.copy(), mask.copy()
    other_score[1, 0, 4, 4] = 0.25
    other_mask[1, 0] = 0
    other_mask[1, 0, 4:8, 4:8] = 1  # disjoint box on the second frame
    res = agreement(Output(score, mask), Output(other_score, other_mask))
    assert (res.n, res.boxes_identical, res.boxes_iou_090) == (2, 1, 1)
    assert res.max_abs_map == 0.25 and res.mean_abs_map == 0.25 / (2 * k * k)


@pytest.mark.parametrize("rule", ["sign", "fixed", "otsu", "fraction"])
def test_every_operating_point_exports_with_identical_masks(
    rule: str, sample_model: Path, tmp_path: Path
) -> None:
    """Each mask rule is in the exported graph: ORT's masks equal the torch reference's (up to float
    ties at the boundary) with identical boxes, and the graph keeps to what TensorRT's parser takes
    (UINT8 only into a Cast, no loops, no NonZero)."""
    onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
    if missing_modules(RUNTIMES["ort"]):
        pytest.skip("ort runtime not installed")
    from rpol_edge.core.artifact import ModelArtifact
    from rpol_edge.core.onnx_meta import read_onnx_meta
    from rpol_edge.exporters.onnx_export import export_onnx

    art = ModelArtifact.load(sample_model)
    assert art.meta.operating_point == "sign"
    art.meta = art.meta.replace(
        operating_point=rule, threshold=0.3, fraction=0.35 if rule == "fraction" else 0.0
    )
    model = tmp_path / f"{rule}.rpol"
    art.save(model)
    path = tmp_path / f"{rule}.onnx"
    export_onnx(model, path, batch=(1, 8, 8))
    assert read_onnx_meta(path).operating_point == rule

    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]}
    ops = {n.op_type for n in graph.node}
    assert not ops & {"NonZero", "Loop", "If", "Scan"}, ops
    uint8_users = {
        n.op_type for n in graph.node if any(types.get(i) == onnx.TensorProto.UINT8 for i in n.input)
    }
    assert uint8_users <= {"Cast"}, uint8_users

    with open_runtime(model, "torch") as ref, open_runtime(path, "ort", device="cpu") as rt:
        frames = dataset_frames(ref.meta, "voc", SAMPLE, "test", workers=0)
        a, b = infer_all(ref, frames), infer_all(rt, frames)
    assert np.abs(a.score - b.score).max() <= 1e-4
    # A pixel whose value sits within float rounding (1e-7) of the rule's boundary can fall either
    # way between two runtimes (seen: 1 pixel of 2.0 M for sign); boxes must not move at all.
    assert int((a.mask != b.mask).sum()) <= 1e-5 * a.mask.size
    assert agreement(a, b).boxes_identical == len(frames)
    assert 0 < a.mask.mean() < 1  # a real mask, neither empty nor everything


@pytest.mark.parametrize("mode", ["peak", "all", "objects"])
def test_every_runtime_gives_the_same_boxes(mode: str, sample_model: Path, sample_onnx: Path) -> None:
    """``--boxes peak``, ``all`` and ``objects`` run on the host after the graph: torch (.rpol), ONNX
    Runtime and OpenVINO (.onnx) give the same boxes, scores within 1e-4, on the sample photos and
    on tiles of four."""
    from rpol_edge.results.detection import detect_images
    from tests.multi_canvas import PHOTOS, tiled

    frames = [cv2.imread(str(p))[..., ::-1].copy() for p in PHOTOS[:12]]
    frames += [tiled(first)[..., ::-1].copy() for first in (2, 8, 10)]
    results = {}
    for name, path in (("torch", sample_model), ("ort", sample_onnx), ("openvino", sample_onnx)):
        if missing_modules(RUNTIMES[name]):
            continue
        with open_runtime(path, name, device="cpu") as rt:
            results[name] = [d.boxes for d, _, _ in detect_images(rt, frames, boxes=mode)]
    assert {"torch", "ort"} <= set(results)
    ref = results.pop("torch")
    # the tiles: something for the rule to separate (``peak`` gives one box, as ``largest`` does)
    assert max(len(b) for b in ref) == 1 if mode == "peak" else max(len(b) for b in ref) >= 2
    # scores rank the boxes, best first; those of ``objects`` never tie (``all`` caps the others just
    # below the top box, so two of its extra boxes may share that cap)
    below = (lambda x, y: x > y) if mode == "objects" else (lambda x, y: x >= y)
    assert all(all(below(a[1], b[1]) for a, b in zip(boxes, boxes[1:], strict=False)) for boxes in ref)
    for name, got in results.items():
        for want, have in zip(ref, got, strict=True):
            assert [b for b, _ in have] == [b for b, _ in want], name
            assert np.allclose([s for _, s in have], [s for _, s in want], atol=1e-4), name


def test_every_runtime_outputs_the_same_peak(sample_model: Path, sample_onnx: Path) -> None:
    """The graph's third output, the largest raw response of each map, from every runtime; a graph
    exported before it existed (score and mask only) runs with peak None."""
    from rpol_edge.core.onnx_meta import read_onnx_meta
    from rpol_edge.core.prepare import prepare
    from tests.multi_canvas import PHOTOS

    photos = [cv2.imread(str(p))[..., ::-1].copy() for p in PHOTOS[:6]]
    meta = read_onnx_meta(sample_onnx)
    frames = np.stack([prepare(rgb, meta, True)[0] for rgb in photos])
    peaks = {}
    for name, path in (("torch", sample_model), ("ort", sample_onnx), ("openvino", sample_onnx)):
        if missing_modules(RUNTIMES[name]):
            continue
        with open_runtime(path, name, device="cpu") as rt:
            out = rt.infer(frames)
        assert out.peak is not None and out.peak.shape == (len(frames), 1) and out.peak.dtype == np.float32
        peaks[name] = out.peak
    assert {"torch", "ort"} <= set(peaks)
    for name, got in peaks.items():
        assert np.allclose(got, peaks["torch"], atol=1e-5), name
    assert (peaks["torch"] > 0).all() and (peaks["torch"] <= 1).all()  # a cosine, positive on photos
    old = Path(__file__).parents[1] / "fixtures" / "pre_layout" / "exp" / "model.onnx"
    with open_runtime(old, "ort", device="cpu") as rt:
        assert rt.infer(prepare(photos[0], rt.meta, True)[0][None]).peak is None
