"""Per-object metrics against hand-computed cases (inclusive-pixel IoU, one-to-one greedy matching)."""

from __future__ import annotations

import numpy as np
import pytest

from rpol_edge.evaluate.detection_metrics import DetectionCounts, average_precision, match_image

A = [0, 0, 9, 9]  # 10 x 10 pixels


def test_iou_of_exactly_one_half_is_a_hit_and_just_below_is_not() -> None:
    # [0,0,9,19] holds A: 100 / 200 = 0.5; [0,0,9,20]: 100 / 210.
    assert match_image([[0, 0, 9, 19]], [1.0], [A]).tolist() == [True]
    assert match_image([[0, 0, 9, 20]], [1.0], [A]).tolist() == [False]


def test_a_duplicate_box_is_a_false_positive_whatever_the_input_order() -> None:
    assert match_image([A, A], [0.8, 0.9], [A]).tolist() == [False, True]
    r = DetectionCounts()
    r.add([A, A], [0.9, 0.8], [A])
    res = r.result()
    assert (res["recall50"], res["precision50"], res["ap50"]) == (100.0, 50.0, 100.0)


def test_a_taken_ground_truth_box_passes_the_detection_on_to_the_next_best_free_one() -> None:
    b = [3, 0, 12, 9]
    # p1 = [2,0,11,9]: IoU with A 80/120, with B 90/110 -> takes B.
    # p2 = B: IoU with B 1 (taken), with A 70/130 = 0.538 -> takes A.
    assert match_image([[2, 0, 11, 9], b], [0.9, 0.8], [A, b]).tolist() == [True, True]
    # With A's overlap under 0.5 the second one is a false positive.
    assert match_image([[2, 0, 11, 9], [4, 0, 13, 9]], [0.9, 0.8], [A, b]).tolist() == [True, False]


def test_all_point_ap_by_hand() -> None:
    # Pooled: 0.9 TP, 0.8 FP, 0.7 TP, 0.6 FP over 3 GT boxes. Precision 1, 1/2, 2/3, 1/2; recall
    # 1/3, 1/3, 2/3, 2/3; envelope 1, 2/3, 2/3, 1/2; AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
    assert average_precision([0.6, 0.9, 0.7, 0.8], [False, True, True, False], 3) == pytest.approx(5 / 9)


def test_counts_over_images_match_the_hand_computed_ap() -> None:
    far = [50, 50, 59, 59]
    gt1, gt2 = [A, [20, 0, 29, 9]], [far]
    r = DetectionCounts()
    r.add([A, [100, 100, 110, 110]], [0.9, 0.8], gt1)  # TP 0.9, FP 0.8; second animal missed
    r.add([far, far], [0.7, 0.6], gt2)  # TP 0.7, duplicate FP 0.6
    res = r.result()
    assert res["ap50"] == pytest.approx(100 * 5 / 9)
    assert res["recall50"] == pytest.approx(200 / 3)
    assert res["precision50"] == 50.0
    assert (res["n_gt"], res["n_detections"], res["true_positives"], res["n_images"]) == (3, 4, 2, 2)


def test_no_detections_and_no_ground_truth() -> None:
    r = DetectionCounts()
    r.add(np.zeros((0, 4)), np.zeros(0), [A])
    assert r.result()["ap50"] == 0.0 and r.result()["recall50"] == 0.0 and r.result()["precision50"] == 0.0
    r.add([A], [0.5], np.zeros((0, 4)))  # an image without animals: its box is a false positive
    assert r.result()["n_detections"] == 1 and r.result()["true_positives"] == 0


def test_merge_equals_adding_everything_to_one() -> None:
    one, a, b = DetectionCounts(), DetectionCounts(), DetectionCounts()
    images = [([A], [0.3], [A]), ([[0, 0, 4, 4], A], [0.9, 0.2], [A, [30, 30, 40, 40]])]
    for (bx, sc, gt), part in zip(images, (a, b), strict=True):
        one.add(bx, sc, gt)
        part.add(bx, sc, gt)
    a.merge(b)
    assert a.result() == one.result()
    # 0.9 FP, 0.3 TP, 0.2 TP over 3 GT boxes: envelope 2/3 at recall 1/3 and 2/3, AP = 4/9.
    assert one.result()["ap50"] == pytest.approx(100 * 4 / 9)


def test_mismatched_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        match_image([A, A], [0.5], [A])


def test_top_box_loc_counts_the_first_box_only() -> None:
    """The top box of each image against its ground truth: a hit, a miss whose second box would
    hit, and an image with no box."""
    counts = DetectionCounts()
    gt = np.array([[0, 0, 9, 9]])
    counts.add(np.array([[0, 0, 9, 9]]), np.array([0.9]), gt)
    counts.add(np.array([[20, 20, 29, 29], [0, 0, 9, 9]]), np.array([0.8, 0.7]), gt)
    counts.add(np.zeros((0, 4)), np.zeros(0), gt)
    assert counts.result()["top_box_loc"] == pytest.approx(100 / 3)
    other = DetectionCounts()
    other.add(np.array([[0, 0, 9, 9]]), np.array([0.5]), gt)
    counts.merge(other)
    assert counts.result()["top_box_loc"] == 50.0
