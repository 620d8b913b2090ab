"""Hand-worked checks of rpol_edge.evaluate.metrics on tiny synthetic 32x32 maps.

Conventions used in the derivations below (see tests/test_boxes.py): a block
of rows r0..r1, cols c0..c1 not touching the far border gives the box
[c0, r0, c1 + 1, r1 + 1]; IoU counts inclusive pixels. Scores 1.0 -> uint8
255 and 0.5 -> 127; at t = 0.25 the level is int(63.75) = 63 (both kept), at
t = 0.75 it is int(191.25) = 191 (only 255 kept), at t = 0.5 it is 127 (only
255 kept: 127 is not > 127).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rpol_edge.evaluate.metrics import (
    DEFAULT_THRESHOLDS,
    IOU_DELTAS,
    BoxAccuracy,
    accuracy_percent,
    best_ious_per_threshold,
    correct_matrix,
    oracle_counts,
)

LO, HI = 0.25, 0.75


def _block_map(*blocks: tuple[int, int, int, int, float]) -> np.ndarray:
    """32x32 float32 map; each block (r0, r1, c0, c1, value) inclusive, later ones on top."""
    score = np.zeros((32, 32), np.float32)
    for r0, r1, c0, c1, value in blocks:
        score[r0 : r1 + 1, c0 : c1 + 1] = value
    return score


def _nested_a() -> tuple[np.ndarray, np.ndarray]:
    # Outer 0.5 on rows/cols 4..13 -> box [4,4,14,14] (11x11 = 121 px).
    # Core 1.0 on rows/cols 4..9 -> box [4,4,10,10] (7x7 = 49 px).
    # GT [4,4,14,14]: IoU at LO (outer) = 1; at HI (core, inside GT)
    # = 49/121 = 0.405 -> correct at 0.3 only.
    score = _block_map((4, 13, 4, 13, 0.5), (4, 9, 4, 9, 1.0))
    return score, np.array([[4, 4, 14, 14]])


def _nested_b() -> tuple[np.ndarray, np.ndarray]:
    # Outer 0.5 on rows/cols 0..30 -> box [0,0,31,31] (32x32 = 1024 px).
    # Core 1.0 on rows/cols 10..17 -> box [10,10,18,18] (9x9 = 81 px).
    # GT [10,10,20,20] (11x11 = 121 px): IoU at LO = 121/1024 = 0.118 (never
    # correct); at HI the core is inside GT, 81/121 = 0.669 -> correct at
    # 0.3 and 0.5, not 0.7.
    score = _block_map((0, 30, 0, 30, 0.5), (10, 17, 10, 17, 1.0))
    return score, np.array([[10, 10, 20, 20]])


def test_constants() -> None:
    assert DEFAULT_THRESHOLDS.shape == (99,)
    assert DEFAULT_THRESHOLDS[0] == 0.01 and DEFAULT_THRESHOLDS[49] == 0.5 and DEFAULT_THRESHOLDS[-1] == 0.99
    assert IOU_DELTAS == (0.3, 0.5, 0.7)


def test_pure_helpers() -> None:
    # IoU exactly at delta counts (>=).
    np.testing.assert_array_equal(
        correct_matrix(np.array([0.29, 0.3, 0.5, 0.7, 1.0])),
        [[0, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1]],
    )
    np.testing.assert_array_equal(accuracy_percent(np.array([0, 1, 4]), 4), [0.0, 25.0, 100.0])
    np.testing.assert_array_equal(accuracy_percent(np.array([0, 0]), 0), [0.0, 0.0])


def test_best_ious_per_threshold_nested() -> None:
    score, gt = _nested_a()
    largest, multi = best_ious_per_threshold(score, gt, np.array([LO, HI]))
    np.testing.assert_allclose(largest, [1.0, 49 / 121])
    np.testing.assert_allclose(multi, [1.0, 49 / 121])


def test_zero_images_gives_zeros_not_nan() -> None:
    result = BoxAccuracy().result()
    assert result["n_images"] == 0
    for key in ("gt_known_loc", "maxboxacc", "maxboxacc_v2", "maxboxacc_v2_rpol"):
        assert result[key] == 0.0
    # Everything ties at 0: the smallest threshold.
    assert result["best_threshold"] == 0.01
    for detail in result["per_delta"].values():
        assert all(not math.isnan(v) for v in detail.values())


def test_single_image_exact_match() -> None:
    # Block 1.0 rows/cols 8..15 -> box [8,8,16,16] (9x9 = 81) at every
    # threshold; GT [8,8,15,15] (64) inside it: IoU 64/81 = 0.79 >= 0.7.
    acc = BoxAccuracy()
    acc.add(_block_map((8, 15, 8, 15, 1.0)), np.array([[8, 8, 15, 15]]))
    result = acc.result()
    assert result["n_images"] == 1
    assert result["gt_known_loc"] == 100.0
    assert result["maxboxacc"] == 100.0
    assert result["maxboxacc_v2"] == 100.0
    assert result["maxboxacc_v2_rpol"] == 100.0
    assert result["best_threshold"] == 0.01  # all 99 thresholds tie


def test_prediction_matching_second_gt_counts() -> None:
    # Same prediction [8,8,16,16]; first GT [0,0,3,3] is disjoint (IoU 0),
    # second GT [8,8,15,15] has IoU 64/81 -> correct at every delta.
    acc = BoxAccuracy(thresholds=[LO, HI])
    acc.add(_block_map((8, 15, 8, 15, 1.0)), np.array([[0, 0, 3, 3], [8, 8, 15, 15]]))
    assert acc.result()["maxboxacc_v2_rpol"] == 100.0
    assert acc.result()["gt_known_loc"] == 100.0


def test_gt_box_as_flat_vector_and_no_gt() -> None:
    acc = BoxAccuracy(thresholds=[LO])
    acc.add(_block_map((8, 15, 8, 15, 1.0)), np.array([8, 8, 15, 15]))
    # No GT box: the image counts, but can never be correct.
    acc.add(_block_map((8, 15, 8, 15, 1.0)), np.zeros((0, 4)))
    result = acc.result()
    assert result["n_images"] == 2
    assert result["maxboxacc_v2"] == 50.0
    assert result["gt_known_loc"] == 50.0


def test_multi_contour_beats_largest_contour() -> None:
    # Big block rows/cols 0..11 (contour area 121) -> box [0,0,12,12], far
    # from GT (IoU 0). Small block rows/cols 20..25 (area 25) -> box
    # [20,20,26,26] (7x7 = 49); GT [20,20,25,25] (36) inside it:
    # IoU 36/49 = 0.735 >= 0.7. Both blocks are 1.0, so every threshold
    # keeps both.
    score = _block_map((0, 11, 0, 11, 1.0), (20, 25, 20, 25, 1.0))
    acc = BoxAccuracy(thresholds=[LO, 0.5, HI])
    acc.add(score, np.array([[20, 20, 25, 25]]))
    result = acc.result()
    assert result["maxboxacc_v2"] == 100.0  # official, multi-contour
    assert result["maxboxacc_v2_rpol"] == 0.0  # largest contour only
    assert result["maxboxacc"] == 0.0
    assert result["gt_known_loc"] == 0.0
    largest, multi = acc.curves()
    np.testing.assert_array_equal(largest, np.zeros((3, 3)))
    np.testing.assert_array_equal(multi, np.full((3, 3), 100.0))


def test_all_zero_map_counts_as_miss_without_nan() -> None:
    # No foreground -> box [0,0,0,0]; GT [5,5,20,20]: overlap width
    # 0 - 5 + 1 < 0 -> IoU 0.
    acc = BoxAccuracy()
    acc.add(np.zeros((32, 32)), np.array([[5, 5, 20, 20]]))
    result = acc.result()
    assert result["maxboxacc_v2"] == 0.0 and result["maxboxacc_v2_rpol"] == 0.0
    assert result["gt_known_loc"] == 0.0


def test_constant_map_predicts_whole_image() -> None:
    # Constant 0.6 -> uint8 153; every level int(t * 153) < 153 -> full
    # mask -> box [0,0,31,31]. GT [0,0,31,31] -> IoU 1; GT [0,0,15,31]
    # (16x32 = 512 of 1024) -> IoU 0.5: correct at 0.3, 0.5, not 0.7.
    acc = BoxAccuracy()
    acc.add(np.full((32, 32), 0.6), np.array([[0, 0, 31, 31]]))
    acc.add(np.full((32, 32), 0.6), np.array([[0, 0, 15, 31]]))
    result = acc.result()
    # 0.3: 2/2, 0.5: 2/2, 0.7: 1/2 -> (100 + 100 + 50) / 3.
    assert result["maxboxacc_v2"] == pytest.approx(250 / 3)
    assert result["maxboxacc_v2_rpol"] == pytest.approx(250 / 3)
    assert result["maxboxacc"] == 100.0
    assert result["gt_known_loc"] == 100.0
    assert result["best_threshold"] == 0.01


def test_official_v2_strictly_above_rpol_protocol() -> None:
    # Correct (1) / wrong (0) per delta (0.3, 0.5, 0.7), from the IoUs in
    # _nested_a / _nested_b:
    #            LO         HI
    #   A     1 1 1      1 0 0      (IoU 1.0, 0.405)
    #   B     0 0 0      1 1 0      (IoU 0.118, 0.669)
    # accuracy  50 50 50  100 50 0
    # RPOL: mean per threshold 50 (LO) and 50 (HI) -> 50, tie -> LO.
    # Official: best per delta 100 (HI), 50, 50 (LO) -> 200/3 = 66.67.
    # V1 (delta 0.5, largest): max(50, 50) = 50.
    # GT-known at 0.5: level 127 keeps the cores, as HI -> delta 0.5: 1/2.
    acc = BoxAccuracy(thresholds=[LO, HI])
    for score, gt in (_nested_a(), _nested_b()):
        acc.add(score, gt)
    result = acc.result()
    assert result["maxboxacc_v2"] == pytest.approx(200 / 3)
    assert result["maxboxacc_v2_rpol"] == pytest.approx(50.0)
    assert result["maxboxacc_v2"] > result["maxboxacc_v2_rpol"]
    assert result["best_threshold"] == LO
    assert result["maxboxacc"] == 50.0
    assert result["gt_known_loc"] == 50.0
    per = result["per_delta"]
    assert per["0.3"]["official"] == 100.0 and per["0.3"]["official_threshold"] == HI
    assert per["0.5"]["official"] == 50.0 and per["0.5"]["official_threshold"] == LO
    assert per["0.7"]["official"] == 50.0 and per["0.7"]["official_threshold"] == LO
    assert [per[d]["rpol"] for d in ("0.3", "0.5", "0.7")] == [50.0, 50.0, 50.0]


def test_best_threshold_unique_maximum_and_ties() -> None:
    # _nested_b alone: LO -> 0 0 0, HI -> 1 1 0, so HI wins (200/3 vs 0).
    acc = BoxAccuracy(thresholds=[LO, HI])
    acc.add(*_nested_b())
    assert acc.result()["best_threshold"] == HI
    assert acc.result()["maxboxacc_v2_rpol"] == pytest.approx(200 / 3)
    # _nested_b at HI and 0.9 (level int(229.5) = 229, still the core): tie
    # between 0.75 and 0.9 -> the smaller, also when given out of order.
    acc = BoxAccuracy(thresholds=[0.9, HI, LO])
    acc.add(*_nested_b())
    assert list(acc.thresholds) == [LO, HI, 0.9]
    assert acc.result()["best_threshold"] == HI


def test_operating_threshold_outside_the_list() -> None:
    # _nested_b, thresholds only LO (box = outer, IoU 0.118). Operating 0.5
    # (not in the list) uses the core, IoU 0.669 >= 0.5 -> 100.
    acc = BoxAccuracy(thresholds=[LO], operating_threshold=0.5)
    acc.add(*_nested_b())
    result = acc.result()
    assert result["gt_known_loc"] == 100.0
    assert result["maxboxacc"] == 0.0
    # Operating LO, in the list: outer box, miss.
    acc = BoxAccuracy(thresholds=[LO, HI], operating_threshold=LO)
    acc.add(*_nested_b())
    assert acc.result()["gt_known_loc"] == 0.0


def test_oracles_by_hand() -> None:
    """Three images, three thresholds: image 0 is right at t0 and t1, image 1 only at t2, image 2
    never. The best single threshold gets 1 of 3 (t0, the first of three tied columns); chosen per
    image, some threshold works for 2 of 3."""
    hits = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], bool)
    per_threshold, per_image = oracle_counts(hits)
    assert per_threshold.tolist() == [1, 1, 1] and per_image == 2
    assert oracle_counts(np.zeros((0, 3), bool))[1] == 0
    # The same through the accumulator: _nested_a is right at LO only (IoU 1 / 0.405), _nested_b
    # at HI only (0.118 / 0.669): each threshold gets one of the two, each image some threshold.
    acc = BoxAccuracy(thresholds=[LO, HI])
    acc.add(*_nested_a())
    acc.add(*_nested_b())
    r = acc.result()
    assert (r["oracle_dataset"], r["oracle_dataset_threshold"], r["oracle_per_image"]) == (50.0, LO, 100.0)
    assert r["oracle_dataset"] == r["maxboxacc"]
    acc.add(np.zeros((32, 32)), np.array([[5, 5, 20, 20]]))  # nothing found at any threshold
    assert acc.result()["oracle_per_image"] == pytest.approx(200 / 3)


def test_merge_of_two_halves_equals_one_pass() -> None:
    images = [
        _nested_a(),
        _nested_b(),
        (_block_map((8, 15, 8, 15, 1.0)), np.array([[8, 8, 15, 15]])),
        (_block_map((0, 11, 0, 11, 1.0), (20, 25, 20, 25, 1.0)), np.array([[20, 20, 25, 25]])),
        (np.zeros((32, 32)), np.array([[5, 5, 20, 20]])),
    ]
    whole = BoxAccuracy()
    first, second = BoxAccuracy(), BoxAccuracy()
    for i, (score, gt) in enumerate(images):
        whole.add(score, gt)
        (first if i < 2 else second).add(score, gt)
    first.merge(second)
    assert first.result() == whole.result()
    assert first.result()["n_images"] == 5
    np.testing.assert_array_equal(first.largest_correct, whole.largest_correct)
    np.testing.assert_array_equal(first.multi_correct, whole.multi_correct)


def test_merge_refuses_different_thresholds() -> None:
    with pytest.raises(ValueError):
        BoxAccuracy(thresholds=[LO]).merge(BoxAccuracy(thresholds=[HI]))
    with pytest.raises(ValueError):
        BoxAccuracy(operating_threshold=0.5).merge(BoxAccuracy(operating_threshold=0.4))


def test_invalid_thresholds() -> None:
    with pytest.raises(ValueError):
        BoxAccuracy(thresholds=[])
    with pytest.raises(ValueError):
        BoxAccuracy(thresholds=[0.5, 1.5])
    with pytest.raises(ValueError):
        BoxAccuracy(operating_threshold=-0.1)


def test_result_is_json_ready() -> None:
    import json

    acc = BoxAccuracy(thresholds=[LO, HI])
    acc.add(*_nested_a())
    decoded = json.loads(json.dumps(acc.result()))
    assert decoded["per_delta"]["0.5"]["official_threshold"] == LO


def _wsol_reference(
    maps: list[np.ndarray], gts: list[np.ndarray], thresholds: list[float], multi: bool
) -> np.ndarray:
    """Transcription of wsolevaluation's BoxEvaluator: correct counts (3, T)."""
    import cv2

    counts = np.zeros((3, len(thresholds)), dtype=np.int64)
    for scoremap, gt in zip(maps, gts, strict=True):
        height, width = scoremap.shape
        image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
        boxes, numbers = [], []
        for t in thresholds:
            _, thr = cv2.threshold(image, int(t * np.max(image)), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(thr, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            if len(contours) == 0:
                boxes.extend([[0, 0, 0, 0]])
                numbers.append(1)
                continue
            if not multi:
                contours = [max(contours, key=cv2.contourArea)]
            for contour in contours:
                x, y, w, h = cv2.boundingRect(contour)
                boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
            numbers.append(len(contours))
        a, b = np.array(boxes), np.array(gt)
        ix = np.minimum(a[:, 2][:, None], b[:, 2][None]) - np.maximum(a[:, 0][:, None], b[:, 0][None]) + 1
        iy = np.minimum(a[:, 3][:, None], b[:, 3][None]) - np.maximum(a[:, 1][:, None], b[:, 1][None]) + 1
        inter = np.maximum(0, ix) * np.maximum(0, iy)
        area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
        area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
        iou = (inter / (area_a[:, None] + area_b[None] - inter)).max(1)
        start, sliced = 0, []
        for n in numbers:
            sliced.append(max(iou[start : start + n]))
            start += n
        for i, delta in enumerate((30, 50, 70)):
            counts[i][np.where(np.asarray(sliced) >= delta / 100)[0]] += 1
    return counts


def test_counts_agree_with_wsolevaluation_transcription() -> None:
    import cv2

    rng = np.random.default_rng(0)
    maps, gts = [], []
    for _ in range(12):
        noise = cv2.GaussianBlur(rng.random((48, 40)).astype(np.float32), (0, 0), 3.0)
        noise = (noise - noise.min()) / (noise.max() - noise.min())
        maps.append(noise)
        x0, y0 = rng.integers(0, 20, size=2)
        gts.append(np.array([[x0, y0, x0 + rng.integers(5, 20), y0 + rng.integers(5, 28)], [0, 0, 10, 10]]))
    thresholds = [0.1, 0.3, 0.5, 0.7, 0.9]
    acc = BoxAccuracy(thresholds=thresholds)
    for score, gt in zip(maps, gts, strict=True):
        acc.add(score, gt)
    np.testing.assert_array_equal(acc.largest_correct, _wsol_reference(maps, gts, thresholds, multi=False))
    np.testing.assert_array_equal(acc.multi_correct, _wsol_reference(maps, gts, thresholds, multi=True))
