"""``rpol_edge.load(..., boxes="all")`` and ``Model.predict(..., boxes=...)``: every box, in the
input image's pixels, the same as ``predict --boxes all`` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rpol_edge
from rpol_edge.results.detection import detect_images
from rpol_edge.runtimes import open_runtime
from tests.multi_canvas import tiled


def test_load_with_boxes_all_returns_every_box(sample_onnx: Path) -> None:
    frames = [tiled(first) for first in (2, 8, 10)]
    with rpol_edge.load(sample_onnx, boxes="all") as model:
        assert model.boxes == "all"
        preds = model.predict_frames(frames)
        single = model.predict_frames(frames, boxes="largest")
    assert max(len(p.boxes) for p in preds) >= 2
    for p, one in zip(preds, single, strict=True):
        assert p.boxes[0] == (p.box, p.score)
        assert one.boxes == [(one.box, one.score)]
        h, w = p.transform.src_h, p.transform.src_w
        assert all(0 <= b[0] <= b[2] < w and 0 <= b[1] <= b[3] < h for b, _ in p.boxes)
        assert p.overlay(frames[0]).shape == frames[0].shape
    with open_runtime(sample_onnx) as rt:  # what predict and the Triton worker run
        rgb = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
        same = [d.boxes for d, _, _ in detect_images(rt, rgb, boxes="all")]
    assert same == [p.boxes for p in preds]


def test_model_default_is_the_files_recorded_mode_and_bad_modes_fail(sample_onnx: Path) -> None:
    with rpol_edge.load(sample_onnx) as model:
        assert model.boxes == "largest" == model.meta.boxes
        assert len(model.predict(tiled(2)[..., ::-1].copy(), boxes="all").boxes) >= 2
        with pytest.raises(ValueError, match="choose largest, peak, all or objects"):
            model.predict(tiled(2), boxes="some")
    with pytest.raises(ValueError, match="choose largest, peak, all or objects"):
        rpol_edge.load(sample_onnx, boxes="some")
