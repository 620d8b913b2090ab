"""CUDA graphs in the torch runtime: the batch buckets, the option's plumbing and fallback (here),
and graph-vs-eager agreement on a GPU (``gpu`` marker; skipped without CUDA)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from rpol_edge.modeling.cuda_graph import MAX_GRAPH_BATCH, bucket, chunks
from rpol_edge.runtimes import InferenceError, open_runtime
from tests.conftest import SAMPLE


@pytest.mark.parametrize(
    ("n", "expected"), [(1, 1), (2, 2), (3, 4), (5, 8), (8, 8), (9, 16), (31, 32), (32, 32), (40, 32)]
)
def test_bucket_is_next_power_of_two_capped(n: int, expected: int) -> None:
    assert bucket(n, 32) == expected


def test_bucket_refuses_empty_batch() -> None:
    with pytest.raises(ValueError):
        bucket(0)


@pytest.mark.parametrize("n", [1, 31, 32, 33, 64, 70])
def test_chunks_cover_every_frame_once(n: int) -> None:
    parts = chunks(n, MAX_GRAPH_BATCH)
    covered = [i for start, stop in parts for i in range(start, stop)]
    assert covered == list(range(n))
    assert all(0 < stop - start <= MAX_GRAPH_BATCH for start, stop in parts)


def _frames(n: int, k: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, k, k, 3), dtype=np.uint8)


def test_cpu_default_is_eager(sample_model: Path) -> None:
    rt = open_runtime(sample_model, "torch", device="cpu")
    assert rt.description == "torch cpu fp32"


def test_cuda_graph_on_cpu_says_why_and_runs_eagerly(
    sample_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rpol_edge.runtimes")
    with open_runtime(sample_model, "torch", device="cpu", cuda_graph=True) as rt:
        frames = _frames(2, rt.meta.input_size)
        out = rt.infer(frames)
        assert rt.description == "torch cpu fp32"
    lines = [r.getMessage() for r in caplog.records if r.name == "rpol_edge.runtimes"]
    assert len(lines) == 1 and "without CUDA graphs" in lines[0] and "CUDA device" in lines[0]
    with open_runtime(sample_model, "torch", device="cpu", cuda_graph=False) as eager:
        ref = eager.infer(frames)
    assert np.array_equal(out.score, ref.score) and np.array_equal(out.mask, ref.mask)


def test_cuda_graph_option_is_refused_by_ort(sample_onnx: Path) -> None:
    with pytest.raises(InferenceError, match="does not take cuda_graph=True"):
        open_runtime(sample_onnx, "ort", device="cpu", cuda_graph=True)


def _cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def _sample_frames(model: Path) -> np.ndarray:
    from rpol_edge.core.model_file import read_meta
    from rpol_edge.evaluate.compare import dataset_frames

    return dataset_frames(read_meta(model), "voc", SAMPLE, "test", workers=0)


# Graph vs eager on the same GPU. Not bit-exact in general: a padded batch may get other cuDNN
# algorithms than the eager batch of its real size; FP32 (TF32 off) then moves by ~1e-6, FP16 more.
# Leaked stale rows or a wrong capture would change whole maps (each image is min-max normalized).
GRAPH_TOL = {"fp32": (1e-4, True), "fp16": (2e-2, False)}
"""precision -> (max |d score|, boxes identical (else IoU >= 0.9))."""


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_graph_matches_eager_on_every_batch_shape(sample_model: Path, precision: str) -> None:
    """Batch 1, full buckets, padded partial batches, the same bucket again with stale rows left in
    its static buffer by the call before, and a second use of batch 1."""
    _cuda()
    from rpol_edge.evaluate.compare import agreement

    frames = _sample_frames(sample_model)
    tol, identical = GRAPH_TOL[precision]
    opts = {"device": "cuda", "precision": precision}
    slices = [(0, 1), (0, 8), (5, 8), (0, len(frames)), (2, 11), (3, 4)]
    with open_runtime(sample_model, "torch", cuda_graph=False, **opts) as eager:
        refs = [eager.infer(frames[a:b]) for a, b in slices]
    with open_runtime(sample_model, "torch", cuda_graph=True, **opts) as rt:
        assert rt.description.endswith(" graph")
        for (a, b), ref in zip(slices, refs, strict=True):
            res = agreement(rt.infer(frames[a:b]), ref)
            assert res.max_abs_map <= tol, ((a, b), res)
            assert (res.boxes_identical if identical else res.boxes_iou_090) == b - a, ((a, b), res)
        assert rt.description.endswith(" graph"), "fell back to eager"


@pytest.mark.gpu
def test_graphed_forward_chunks_large_batches(sample_model: Path) -> None:
    _cuda()
    import torch

    from rpol_edge.core.artifact import ModelArtifact
    from rpol_edge.modeling.cuda_graph import GraphedForward
    from rpol_edge.modeling.factory import build_localizer

    frames = _sample_frames(sample_model)
    module = build_localizer(ModelArtifact.load(sample_model)).to("cuda")
    graphed = GraphedForward(module, torch.device("cuda"), max_batch=4)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # as the runtime does: real FP32, batch-size independent
    try:
        score, mask, peak = graphed(frames)
        assert sorted(graphed.graphs) == sorted(
            {bucket(stop - start, 4) for start, stop in chunks(len(frames), 4)}
        )
        assert all(d <= 1e-5 for d in graphed.self_check.values()), graphed.self_check
        with torch.inference_mode():
            ref_score, _, ref_peak = module(torch.from_numpy(frames).cuda())
    finally:
        graphed.close()
        torch.backends.cudnn.allow_tf32 = tf32
    np.testing.assert_allclose(score, ref_score.cpu().numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(peak, ref_peak.cpu().numpy(), atol=1e-4, rtol=0)
