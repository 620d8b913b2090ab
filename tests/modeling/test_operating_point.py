"""Label-free operating points: each rule against an independent implementation (OpenCV's Otsu, a
sorted quantile, a numpy sign), the metadata defaults that keep old model files as they were, and
the mask reaching GT-known Loc."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from rpol_edge.core.metadata import MetadataError, ModelMeta
from rpol_edge.evaluate.metrics import BoxAccuracy
from rpol_edge.modeling.localizer import Localizer
from rpol_edge.modeling.operating_point import (
    OperatingPoint,
    fraction_levels,
    fraction_mask,
    minmax,
    otsu_levels,
    sign_mask,
    to_u8_levels,
    upsample,
)


def _grids(seed: int, n: int = 6, side: int = 14) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, 1, side, side, generator=g) + torch.linspace(-1, 1, side)[None, None, None, :]
    return minmax(raw.clamp_min(0.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_otsu_level_is_opencvs(seed: int) -> None:
    grid = _grids(seed)
    levels = otsu_levels(grid).flatten().numpy()
    for i in range(len(grid)):
        u8 = to_u8_levels(grid[i, 0]).numpy().astype(np.uint8)
        level, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        assert levels[i] == level


@pytest.mark.parametrize("q", [0.05, 0.3, 0.5, 0.9])
def test_fraction_level_is_the_quantile(q: float) -> None:
    grid = _grids(3)
    v = fraction_levels(grid, q).flatten().numpy()
    for i in range(len(grid)):
        x = grid[i, 0].flatten().numpy()
        # the smallest value whose cells at or above it are at most q of the map (the peak at least)
        ok = [c for c in np.unique(x) if (x >= c).mean() <= q or c == x.max()]
        assert v[i] == min(ok)


def test_fraction_mask_of_a_constant_map_is_empty() -> None:
    zero = torch.zeros(1, 1, 14, 14)
    assert fraction_mask(upsample(zero, 64), zero, 0.4).sum() == 0


def test_sign_mask_is_the_positive_side_of_the_upsampled_response() -> None:
    g = torch.Generator().manual_seed(5)
    raw = torch.randn(2, 1, 7, 7, generator=g)
    up = torch.nn.functional.interpolate(raw, size=(56, 56), mode="bilinear", align_corners=True)
    assert torch.equal(sign_mask(raw, 56), (up > 0).to(torch.uint8))


def test_localizer_default_rule_is_the_papers_fixed_threshold() -> None:
    g = torch.Generator().manual_seed(7)
    f = torch.rand(2, 16, 7, 7, generator=g)
    w = torch.randn(1, 16, generator=g)
    args = (nn.Identity(), w, (0.5,) * 3, (0.25,) * 3, 56, 0.37)
    plain = Localizer(*args)
    fixed = Localizer(*args, operating_point=OperatingPoint("fixed", 0.37))
    s1, m1, _ = plain.localize(f)
    s2, m2, _ = fixed.localize(f)
    assert torch.equal(m1, m2) and torch.equal(s1, s2)
    assert torch.equal(m1, plain.binarize(s1))
    sign = Localizer(*args, operating_point=OperatingPoint("sign"))
    _, ms, _ = sign.localize(f)
    assert torch.equal(ms, sign_mask(sign.response(f), 56))


def test_bad_operating_points_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown operating point"):
        OperatingPoint("median")
    with pytest.raises(ValueError, match="fraction"):
        OperatingPoint("fraction", fraction=0.0)


def _meta_dict() -> dict[str, object]:
    return {
        "backbone": "lite0", "weights_sha256": "x", "input_size": 224, "resize_size": 240,
        "mean": [0.5] * 3, "std": [0.5] * 3, "feature_stride": 32, "channels": 8, "output_stride": 32,
        "head": "rpol", "n_heads": 1, "tau": 1.0, "threshold": 0.5, "w_sha256": "y", "n_images": 3,
        "n_skipped": 0, "fit_size": 224, "fit_resize": 240,
    }  # fmt: skip


def test_old_metadata_loads_as_the_fixed_rule_and_unknown_rules_are_refused() -> None:
    old = ModelMeta.from_dict(_meta_dict())
    assert old.operating_point == "fixed" and old.threshold == 0.5 and old.fraction == 0.0
    with pytest.raises(MetadataError, match="unknown operating point"):
        ModelMeta.from_dict({**_meta_dict(), "operating_point": "median"})
    with pytest.raises(MetadataError, match="fraction"):
        ModelMeta.from_dict({**_meta_dict(), "operating_point": "fraction", "fraction": 0.0})


def test_gt_known_scores_the_given_mask() -> None:
    k = 32
    score = np.zeros((k, k), np.float32)
    score[4:12, 4:12] = 1.0  # at any threshold the box is [4, 4, 12, 12]
    gt = np.array([[16, 16, 30, 30]])
    mask = np.zeros((k, k), np.uint8)
    mask[16:30, 16:30] = 1
    by_threshold, by_mask = BoxAccuracy(), BoxAccuracy()
    by_threshold.add(score, gt)
    by_mask.add(score, gt, mask)
    assert by_threshold.result()["gt_known_loc"] == 0.0
    assert by_mask.result()["gt_known_loc"] == 100.0
    assert by_mask.result()["maxboxacc"] == by_threshold.result()["maxboxacc"] == 0.0
