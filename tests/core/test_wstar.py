"""w*, tau and the folded map, checked against an independent float64 NumPy reading of METHOD.md."""

from __future__ import annotations

import numpy as np
import torch

from rpol_edge.core.wstar import FeatureSums, solve
from rpol_edge.modeling.feature_sums import add_features
from rpol_edge.modeling.localizer import Localizer


def numpy_reference(feats: np.ndarray) -> tuple[np.ndarray, float]:
    """feats (N, C, H, W) >= 0 -> (w*, tau) straight from the formulas, in float64."""
    n, c, h, w = feats.shape
    f = feats.transpose(0, 2, 3, 1).reshape(n, h * w, c)
    norms = np.linalg.norm(f, axis=2, keepdims=True)
    fhat = np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)
    v = f.mean(axis=1).mean(axis=0)
    u = fhat.mean(axis=1).mean(axis=0)
    tau = np.linalg.norm(v) / np.linalg.norm(u)
    d = v - tau * u
    return d / np.linalg.norm(d), float(tau)


def random_features(seed: int, n: int = 6, c: int = 32, h: int = 5, w: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = np.maximum(rng.normal(size=(n, c, h, w)), 0.0) * rng.uniform(0.5, 3.0, size=(1, c, 1, 1))
    f[0, :, 0, 0] = 0.0  # a zero feature vector must not poison the sums
    return f


def test_wstar_and_tau_match_numpy_float64() -> None:
    for seed in range(3):
        feats = random_features(seed)
        sums = FeatureSums.zeros(feats.shape[1])
        add_features(sums, torch.from_numpy(feats).float())
        w, taus = solve(sums)
        w_ref, tau_ref = numpy_reference(feats.astype(np.float32).astype(np.float64))
        assert abs(taus[0] - tau_ref) / tau_ref < 1e-6
        assert np.linalg.norm(w[0] - w_ref) / np.linalg.norm(w_ref) < 1e-6
        assert abs(np.linalg.norm(w[0]) - 1.0) < 1e-12


def test_sums_from_two_halves_equal_one_pass() -> None:
    feats = torch.from_numpy(random_features(7, n=10)).float()
    whole = FeatureSums.zeros(32)
    add_features(whole, feats)
    a, b = FeatureSums.zeros(32), FeatureSums.zeros(32)
    add_features(a, feats[:4])
    add_features(b, feats[4:])
    merged = a.merge(b)
    np.testing.assert_allclose(merged.v_sum, whole.v_sum, rtol=1e-12)
    np.testing.assert_allclose(merged.u_sum, whole.u_sum, rtol=1e-12)
    assert merged.count.tolist() == whole.count.tolist() == [10]


def test_classwise_sums_keep_classes_apart() -> None:
    feats = torch.from_numpy(random_features(3, n=6)).float()
    sums = FeatureSums.zeros(32, n_heads=2)
    add_features(sums, feats, torch.tensor([0, 1, 0, 1, 1, 0]))
    w, _ = solve(sums)
    w0, _ = numpy_reference(feats.numpy()[[0, 2, 5]].astype(np.float64))
    np.testing.assert_allclose(w[0], w0, rtol=1e-5, atol=1e-7)
    assert sums.count.tolist() == [3, 3]


def test_zero_features_give_zero_not_nan() -> None:
    sums = FeatureSums.zeros(8)
    add_features(sums, torch.zeros(2, 8, 3, 3))
    w, taus = solve(sums)
    assert np.all(np.isfinite(w)) and np.all(w == 0) and taus[0] == 0.0


class _Identity(torch.nn.Module):
    """Backbone stand-in that passes a prepared feature map through, so the head math is isolated."""

    def __init__(self, feats: torch.Tensor) -> None:
        super().__init__()
        self.feats = feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feats


def unfused_map(feats: np.ndarray, w: np.ndarray, size: int) -> np.ndarray:
    """METHOD.md steps 0-3 written out without the 1x1 conv: a_i = w.f_i/||f_i||, clamp, min-max, upsample."""
    f = feats.astype(np.float64)
    norms = np.linalg.norm(f, axis=1)
    a = np.einsum("c,nchw->nhw", w, f)
    a = np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)
    a = np.maximum(a, 0)
    lo, hi = a.min(axis=(1, 2), keepdims=True), a.max(axis=(1, 2), keepdims=True)
    a = np.divide(a - lo, hi - lo, out=np.zeros_like(a), where=(hi - lo) > 0)
    t = torch.nn.functional.interpolate(
        torch.from_numpy(a)[:, None], size=(size, size), mode="bilinear", align_corners=True
    )
    return t[:, 0].numpy()


def test_folded_conv_equals_unfused_formula() -> None:
    feats = random_features(11, n=3, c=16, h=6, w=6)
    w = np.random.default_rng(0).normal(size=16)
    w /= np.linalg.norm(w)
    loc = Localizer(
        _Identity(torch.from_numpy(feats).float()), torch.from_numpy(w), (0.5,) * 3, (0.5,) * 3, 40, 0.5
    )
    with torch.no_grad():
        score, mask, peak = loc(torch.zeros(3, 40, 40, 3, dtype=torch.uint8))
    ref = unfused_map(feats.astype(np.float32), w, 40)
    assert np.abs(score[:, 0].numpy() - ref).max() < 1e-5
    assert score.dtype == torch.float32 and mask.dtype == torch.uint8
    # peak: the largest raw response w*^T f / ||f|| of each map, before the clamp
    f = feats.astype(np.float64)
    raw = np.einsum("nchw,c->nhw", f, w) / np.maximum(np.linalg.norm(f, axis=1), 1e-12)
    assert peak.shape == (3, 1) and peak.dtype == torch.float32
    assert np.abs(peak[:, 0].numpy() - raw.max(axis=(1, 2))).max() < 1e-5


def test_constant_and_zero_maps_are_zero_not_nan() -> None:
    w = torch.ones(4) / 2
    for feats in (torch.zeros(1, 4, 3, 3), torch.ones(1, 4, 3, 3)):
        loc = Localizer(_Identity(feats), w, (0.5,) * 3, (0.5,) * 3, 12, 0.5)
        with torch.no_grad():
            score, mask, _ = loc(torch.zeros(1, 12, 12, 3, dtype=torch.uint8))
        assert torch.isfinite(score).all() and float(score.abs().max()) == 0.0
        assert int(mask.sum()) == 0


def test_mask_matches_reference_threshold_rule() -> None:
    """The in-graph mask equals the reference host rule: u8 = int(s*255) > int(t * max u8)."""
    from rpol_edge.results.boxes import threshold_mask, to_uint8_map

    feats = torch.from_numpy(random_features(5, n=2, c=8, h=4, w=4)).float()
    w = torch.ones(8) / np.sqrt(8)
    for t in (0.1, 0.35, 0.5, 0.77):
        loc = Localizer(_Identity(feats), w, (0.5,) * 3, (0.5,) * 3, 33, t)
        with torch.no_grad():
            score, mask, _ = loc(torch.zeros(2, 33, 33, 3, dtype=torch.uint8))
        for i in range(2):
            host = threshold_mask(to_uint8_map(score[i, 0].numpy()), t) > 0
            assert np.array_equal(host, mask[i, 0].numpy() > 0)


def test_in_graph_threshold_equals_host_rule_for_every_peak() -> None:
    """Every threshold of the evaluation grid x every uint8 peak: graph mask == reference host mask."""
    from rpol_edge.evaluate.metrics import DEFAULT_THRESHOLDS
    from rpol_edge.results.boxes import threshold_mask, to_uint8_map

    ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)
    maps = np.stack([ramp * (peak / 255.0) + 1e-7 for peak in range(1, 256)]).reshape(255, 1, 16, 16)
    score = torch.from_numpy(maps)
    for t in DEFAULT_THRESHOLDS:
        loc = Localizer(_Identity(torch.zeros(1)), torch.ones(1), (0.5,) * 3, (0.5,) * 3, 16, float(t))
        graph = loc.binarize(score).numpy()[:, 0] > 0
        for i in range(len(maps)):
            host = threshold_mask(to_uint8_map(maps[i, 0]), float(t)) > 0
            assert np.array_equal(host, graph[i]), (t, i)


def test_tau_mean_is_the_plain_mean_norm_and_merges() -> None:
    feats = random_features(11, n=5)
    norms = np.linalg.norm(feats.astype(np.float32).astype(np.float64), axis=1)  # (N, H, W)
    t = torch.from_numpy(feats).float()
    a, b = FeatureSums.zeros(32), FeatureSums.zeros(32)
    add_features(a, t[:2])
    add_features(b, t[2:])
    sums = a.merge(b)
    assert sums.positions.tolist() == [norms.size]
    w, taus = solve(sums, "mean")
    assert abs(taus[0] - norms.mean()) < 1e-9 * norms.mean()
    v, u = sums.v_sum[0], sums.u_sum[0]
    d = v - taus[0] * u
    np.testing.assert_allclose(w[0], d / np.linalg.norm(d), rtol=1e-12)
    # Hand case: one 1x2 image with norms 3 and 5 -> mean tau 4 (the joint tau differs).
    hand = FeatureSums.zeros(2)
    add_features(hand, torch.tensor([[[[3.0, 0.0]], [[0.0, 5.0]]]]))
    assert solve(hand, "mean")[1][0] == 4.0
    assert abs(solve(hand, "joint")[1][0] - 4.0) > 0.1
