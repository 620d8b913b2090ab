"""One parametrized parity test: every runtime available here against the PyTorch FP32 reference.

Frames come from the raccoon test split when ../shared is present, else the bundled sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rpol_edge.compare import agreement, compare, dataset_frames
from rpol_edge.runtimes import RUNTIMES, Output, missing_modules, open_runtime
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
