"""Instance rules on hand-made response grids: counts, order, boxes against the sign mask's box."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.research.instance_rules import instance_boxes, label_instances
from rpol_edge.results.boxes import iou_inclusive, largest_box
from rpol_edge.results.instances import TOP_IOU, InstanceRule, all_boxes, map_instances, object_boxes
from rpol_edge.results.score_grid import grid_cells, grid_from_score, upsample_matrix

K = 448


def two_blobs(second: float = 0.5) -> np.ndarray:
    """14 x 14, negative floor, a strong blob top-left and a weaker one bottom-right."""
    a = np.full((14, 14), -0.2)
    a[2:5, 2:6] = 1.0
    a[9:12, 8:12] = second
    return a


def sign_box(raw: np.ndarray) -> np.ndarray:
    up = F.interpolate(torch.from_numpy(raw)[None, None], size=(K, K), mode="bilinear", align_corners=True)
    return largest_box((up[0, 0] > 0).numpy().astype(np.uint8))


def test_upsample_matrix_is_torchs_align_corners_bilinear() -> None:
    g = np.random.default_rng(0).normal(size=(14, 14))
    u = upsample_matrix(14, K)
    ours = u @ g @ u.T
    ref = F.interpolate(torch.from_numpy(g)[None, None], size=(K, K), mode="bilinear", align_corners=True)
    assert np.abs(ours - ref[0, 0].numpy()).max() < 1e-9


def test_one_region_gives_the_sign_masks_largest_contour_box() -> None:
    a = np.full((14, 14), -0.3)
    a[3:9, 4:11] = np.linspace(0.1, 0.9, 7)[None, :]
    boxes, scores = instance_boxes(a, K, InstanceRule("regions"))
    assert len(boxes) == 1
    assert boxes[0].tolist() == sign_box(a).tolist()
    assert scores[0] == pytest.approx(a[3:9, 4:11].mean())


@pytest.mark.parametrize("rule", ["regions", "peaks"])
def test_two_separate_animals_give_two_boxes_strongest_first(rule: str) -> None:
    a = two_blobs(0.5)
    boxes, scores = instance_boxes(a, K, InstanceRule(rule, keep=0.0))
    assert len(boxes) == 2 and scores[0] > scores[1]
    assert boxes[0][0] < boxes[1][0] and boxes[0][1] < boxes[1][1]  # top-left one first
    # Each box is the sign-mask box of that blob alone.
    alone = a.copy()
    alone[9:12, 8:12] = -0.2
    assert boxes[0].tolist() == sign_box(alone).tolist()


def test_keep_drops_instances_weaker_than_a_share_of_the_top_one() -> None:
    a = two_blobs(0.4)
    assert len(instance_boxes(a, K, InstanceRule("regions", keep=0.3))[0]) == 2
    assert len(instance_boxes(a, K, InstanceRule("regions", keep=0.5))[0]) == 1


def test_peaks_split_touching_animals_only_when_the_dip_between_them_is_deep() -> None:
    a = np.full((14, 14), -0.2)
    a[5:8, 1:13] = 0.3  # one connected ridge ...
    a[5:8, 2:5] = 1.0  # ... with two bumps
    a[5:8, 9:12] = 0.9
    assert len(instance_boxes(a, K, InstanceRule("regions", keep=0.0))[0]) == 1
    labels = label_instances(a, InstanceRule("peaks", prominence=0.3))
    assert labels.max() == 1 and labels[6, 3] != labels[6, 10]
    # Required rise 0.7 * max: the second bump (0.9 - 0.3 = 0.6 above the saddle) is merged.
    assert label_instances(a, InstanceRule("peaks", prominence=0.7)).max() == 0


def test_ncut_separates_two_touching_animals_with_different_features() -> None:
    a = np.full((14, 14), -0.2)
    a[4:9, 1:13] = 0.8
    feats = np.zeros((8, 14, 14))
    feats[0, :, :7] = 1.0
    feats[1, :, 7:] = 1.0
    feats[2] = 0.05
    labels = label_instances(a, InstanceRule("ncut", sigma=3.0, ncut_max=0.4, min_cells=2), feats)
    assert labels.max() == 1 and labels[6, 3] != labels[6, 10]
    assert len(set(labels[4:9, 1:7].ravel())) == 1


def test_seeds_grow_over_similar_cells_only() -> None:
    a = np.full((14, 14), -0.2)
    a[4:9, 1:13] = 0.8
    a[6, 3] = 1.0
    feats = np.zeros((4, 14, 14))
    feats[0, :, :7] = 1.0
    feats[1, :, 7:] = 1.0
    labels = label_instances(a, InstanceRule("seeds", seed_cos=0.5), feats)
    assert labels[6, 3] == 0 and labels.max() == 1 and labels[6, 10] == 1


def test_no_positive_response_means_no_box() -> None:
    boxes, scores = instance_boxes(np.full((14, 14), -0.1), K, InstanceRule("peaks"))
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_feature_rules_refuse_to_run_without_features() -> None:
    with pytest.raises(ValueError, match="needs the feature grid"):
        instance_boxes(two_blobs(), K, InstanceRule("ncut"))
    with pytest.raises(ValueError, match="unknown instance rule 'cuts'"):
        InstanceRule("cuts")


# ---- from the exported graph's outputs (score map and mask) -------------------------------------


def graph_outputs(raw: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The graph's own score and sign mask (rpol_edge/modeling/operating_point.py), in float32 torch."""
    from rpol_edge.modeling.operating_point import minmax, sign_mask, upsample

    a = torch.from_numpy(raw.astype(np.float32))[None, None]
    score = upsample(minmax(a.clamp_min(0.0)), k).clamp(0.0, 1.0)
    return score[0, 0].numpy(), sign_mask(a, k)[0, 0].numpy()


@pytest.mark.parametrize("k", [224, 448])
def test_grid_recovered_from_the_score_map_equals_the_graphs_grid(k: int) -> None:
    from rpol_edge.modeling.operating_point import minmax

    cells = grid_cells(k, 32)
    assert cells == k // 32
    rng = np.random.default_rng(k)
    for _ in range(20):
        raw = rng.normal(size=(cells, cells)).astype(np.float32)
        want = minmax(torch.from_numpy(raw)[None, None].clamp_min(0.0))[0, 0].numpy()
        got = grid_from_score(graph_outputs(raw, k)[0], cells)
        assert np.abs(got - want).max() < 1e-5
        positive = raw > 0
        assert np.abs(got[positive] - raw[positive] / raw.max()).max() < 1e-5  # the scale-free grid


def test_a_wrong_grid_size_is_refused_not_guessed() -> None:
    score, _ = graph_outputs(np.random.default_rng(1).normal(size=(14, 14)), K)
    with pytest.raises(ValueError, match="not a bilinear upsampling of a 13 x 13 grid"):
        grid_from_score(score, 13)
    quantized = np.floor(score * 255) / 255  # what an 8-bit score map would look like
    with pytest.raises(ValueError, match="unquantized score map"):
        grid_from_score(quantized, 14)


@pytest.mark.parametrize("second", [0.5, 0.9])
def test_score_map_path_finds_the_reference_rules_instances_and_boxes(second: float) -> None:
    """Separate blobs: the same instances, in the same order, with the same boxes as the
    reference rule on the raw response (the graph computes in float32: boxes within a pixel)."""
    a = two_blobs(second)
    rule = InstanceRule("peaks", keep=0.3, prominence=0.5)
    want, _ = instance_boxes(a, K, rule)
    score, mask = graph_outputs(a, K)
    got, scores = map_instances(score, mask, 14, rule, ranking="grid")
    assert len(got) == len(want) == 2
    assert np.abs(got - want).max() <= 1
    assert scores[0] == pytest.approx(1.0) and scores[1] == pytest.approx(second, abs=1e-5)
    # the default ranking: each box's mean score, as `largest` scores its one box
    got_box, by_box = map_instances(score, mask, 14, rule)
    for b, s in zip(got_box, by_box, strict=True):
        assert s == pytest.approx(float(score[b[1] : b[3] + 1, b[0] : b[2] + 1].mean()))


def test_one_animal_gives_the_masks_own_box() -> None:
    a = np.full((14, 14), -0.3)
    a[3:9, 4:11] = np.linspace(0.1, 0.9, 7)[None, :]
    score, mask = graph_outputs(a, K)
    boxes, _ = map_instances(score, mask, 14, InstanceRule("peaks", rel=0.0, keep=0.5, prominence=0.5))
    assert boxes.tolist() == [largest_box(mask).tolist()]  # rel 0: the sign mask's own region


def test_touching_animals_are_split_on_the_score_map_as_on_the_raw_grid() -> None:
    a = np.full((14, 14), -0.2)
    a[5:8, 1:13] = 0.3
    a[5:8, 2:5] = 1.0
    a[5:8, 9:12] = 0.9
    rule = InstanceRule("peaks", keep=0.3, prominence=0.3)
    want, _ = instance_boxes(a, K, rule)
    got, _ = map_instances(*graph_outputs(a, K), 14, rule)
    assert len(got) == 2 and np.abs(np.sort(got, 0) - np.sort(want, 0)).max() <= 1
    left, right = sorted(got.tolist())
    assert abs(left[2] - right[0]) <= 2  # they part on the saddle, neither box spans the other animal


def test_empty_mask_or_feature_rule_on_the_score_map() -> None:
    score, mask = graph_outputs(np.full((14, 14), -0.1), K)
    assert map_instances(score, mask, 14)[0].shape == (0, 4)
    with pytest.raises(ValueError, match="exported graphs do not output"):
        map_instances(*graph_outputs(two_blobs(), K), 14, InstanceRule("ncut"))


def _sorted_and_top_first(boxes: np.ndarray, scores: np.ndarray, score: np.ndarray, mask: np.ndarray) -> None:
    top = largest_box(mask)
    assert boxes[0].tolist() == top.tolist()
    assert scores[0] == pytest.approx(float(score[top[1] : top[3] + 1, top[0] : top[2] + 1].mean()))
    assert np.all(np.diff(scores) <= 0) and np.all(scores[1:] < scores[0])


def test_all_boxes_one_animal_is_the_largest_box_alone() -> None:
    a = np.full((14, 14), -0.3)
    a[3:9, 4:11] = np.linspace(0.1, 0.9, 7)[None, :]
    a[5, 5] = 0.95  # a second local maximum on the same animal: a part, overlapping the top box
    score, mask = graph_outputs(a, K)
    boxes, scores = all_boxes(score, mask, 14)
    assert boxes.tolist() == [largest_box(mask).tolist()]
    _sorted_and_top_first(boxes, scores, score, mask)


def test_all_boxes_keeps_the_top_box_first_even_when_a_stronger_object_is_smaller() -> None:
    a = np.full((14, 14), -0.2)
    a[1:4, 1:4] = 1.0  # small and strong
    a[6:13, 4:13] = 0.5  # large and weaker: the mask's largest region, so the top box
    score, mask = graph_outputs(a, K)
    boxes, scores = all_boxes(score, mask, 14)
    assert len(boxes) == 2
    _sorted_and_top_first(boxes, scores, score, mask)
    assert boxes[1][0] < 4 * 32 and boxes[1][2] < 5 * 32  # the small one, second


def test_all_boxes_splits_a_region_that_spans_three_animals() -> None:
    a = np.full((14, 14), -0.2)
    a[5:8, 0:14] = 0.3  # one region of the mask over all three
    a[5:8, 1:4] = 1.0
    a[5:8, 6:8] = 0.9
    a[5:8, 10:13] = 0.8
    score, mask = graph_outputs(a, K)
    boxes, scores = all_boxes(score, mask, 14)
    _sorted_and_top_first(boxes, scores, score, mask)
    assert len(boxes) == 4  # the region's box, then each animal's
    assert (iou_inclusive(boxes[0], boxes[1:])[0] < TOP_IOU).all()
    parts = sorted(boxes[1:].tolist())
    for left, right in zip(parts, parts[1:], strict=False):
        assert left[2] <= right[0] + 32  # side by side, parting near the saddles


def test_all_boxes_empty_mask() -> None:
    score, mask = graph_outputs(np.full((14, 14), -0.1), K)
    boxes, scores = all_boxes(score, mask, 14)
    assert boxes.shape == (0, 4) and scores.shape == (0,)


# ---- --boxes objects ------------------------------------------------------------------------------


def test_objects_gives_two_separated_blobs_two_boxes_the_strongest_first() -> None:
    """A small strong blob and a large weaker one: ``objects`` boxes each at its own sign boundary,
    the strong one first (``largest`` would put the large one first), scored by its mean response."""
    a = np.full((14, 14), -0.2)
    a[1:4, 1:4] = 0.8  # small and strong
    a[6:13, 4:13] = 0.4  # large and weaker: the mask's largest region
    score, mask = graph_outputs(a, K)
    boxes, scores = object_boxes(score, mask, 14, peak=float(a.max()))
    assert len(boxes) == 2
    assert scores.tolist() == pytest.approx([0.8, 0.4], abs=1e-5)  # mean raw response: distinct
    for box, kept in zip(boxes, ((slice(1, 4), slice(1, 4)), (slice(6, 13), slice(4, 13))), strict=True):
        alone = np.full((14, 14), -0.2)
        alone[kept] = a[kept]
        assert np.abs(box - sign_box(alone)).max() <= 1  # the sign box of that blob alone
    assert largest_box(mask).tolist() == sign_box(a).tolist() != boxes[0].tolist()


def test_objects_scores_need_no_peak_and_never_tie_between_different_blobs() -> None:
    score, mask = graph_outputs(two_blobs(0.5), K)
    boxes, scores = object_boxes(score, mask, 14)
    assert len(boxes) == 2 and scores[0] == pytest.approx(1.0) and scores[1] == pytest.approx(0.5, abs=1e-5)
    assert boxes[0][0] < boxes[1][0]
    empty = object_boxes(*graph_outputs(np.full((14, 14), -0.1), K), 14, peak=-0.1)
    assert empty[0].shape == (0, 4) and empty[1].shape == (0,)


def test_objects_through_detect_and_the_recorded_mode() -> None:
    """`detect` (what every runtime and the Triton post step call) with ``objects``, and a model
    file that records ``objects`` as its mode, through its JSON and back."""
    from rpol_edge.core.geometry import CropTransform
    from rpol_edge.core.metadata import MetadataError, ModelMeta
    from rpol_edge.results.detection import box_mode, detect
    from tests.runtimes.test_trt_runtime import model_meta

    a = two_blobs(0.5)
    score, mask = graph_outputs(a, K)
    recorded = model_meta().replace(
        input_size=K, resize_size=K, feature_stride=32, extra={"boxes": "objects"}
    )
    meta = ModelMeta.from_json(recorded.to_json())
    assert meta.boxes == "objects" and box_mode(meta, None) == ("objects", 14)
    assert box_mode(meta, "largest")[0] == "largest"
    d = detect(score, mask, CropTransform(K, K, K, K), 0.0, "objects", 14, peak=1.0)
    assert len(d.boxes) == 2 and d.boxes[0] == (d.box, d.score) and d.score > d.boxes[1][1]
    with pytest.raises(MetadataError, match="unknown box mode 'every'"):
        ModelMeta.from_json(recorded.replace(extra={"boxes": "every"}).to_json())
