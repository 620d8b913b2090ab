"""One parametrized parity test: every runtime available here against the PyTorch FP32 reference.

Frames come from the raccoon test split when ../shared is present, else the bundled sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rpol_edge.boxes import boxes_from_mask, iou_inclusive
from rpol_edge.data import read_dataset
from rpol_edge.loader import iterate_batches
from rpol_edge.metadata import ModelMeta
from rpol_edge.runtimes import RUNTIMES, infer_all, missing_modules, open_runtime
from tests.conftest import SAMPLE, SHARED_RACCOON

# name -> (runtime, options, max |score - reference|, fraction of frames whose box must be identical)
CASES = {
    "ort-cpu-fp32": ("ort", {"device": "cpu"}, 1e-4, 1.0),
    "torch-cuda-fp32": ("torch", {"device": "cuda"}, 1e-4, 1.0),
    # FP16 moves contour edges by a pixel now and then: boxes must agree to IoU >= 0.9 instead.
    "torch-cuda-fp16": ("torch", {"device": "cuda", "precision": "fp16"}, 2e-2, 0.0),
}


def test_frames(meta: ModelMeta) -> np.ndarray:
    root = SHARED_RACCOON if SHARED_RACCOON.is_dir() else SAMPLE
    samples = read_dataset("voc", root, "test")
    return np.concatenate(
        [b.frames for b in iterate_batches(samples, meta.resize_size, meta.input_size, 20, 0)]
    )


test_frames.__test__ = False  # type: ignore[attr-defined]


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
    with open_runtime(sample_model, "torch") as ref_rt:
        frames = test_frames(ref_rt.meta)
        ref = infer_all(ref_rt, frames)
    model = sample_onnx if name == "ort" else sample_model
    with open_runtime(model, name, **options) as rt:
        got = infer_all(rt, frames)
    assert len(frames) >= 12
    assert np.abs(got.score - ref.score).max() <= tol
    same = 0
    for i in range(len(frames)):
        a = boxes_from_mask(got.mask[i, 0], multi_contour=False)
        b = boxes_from_mask(ref.mask[i, 0], multi_contour=False)
        same += bool(np.array_equal(a, b))
        assert iou_inclusive(a, b)[0, 0] >= 0.9, f"frame {i}: {a} vs {b}"
    assert same >= identical * len(frames), f"{same}/{len(frames)} boxes identical"
