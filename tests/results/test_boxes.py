"""Hand-worked checks of rpol_edge.boxes.

Expected numbers are derived in the comments from the wsolevaluation rules:
uint8 by truncation, threshold strictly above int(t * max), boundingRect box
[x, y, min(x + w, W - 1), min(y + h, H - 1)], IoU with width = x1 - x0 + 1.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rpol_edge.results.boxes import (
    box_from_score_map,
    boxes_from_mask,
    contour_boxes,
    iou_inclusive,
    largest_box,
    threshold_mask,
    to_uint8_map,
)


def _as_set(boxes: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in row) for row in boxes}


# ---------------------------------------------------------------- IoU


def test_iou_identical_is_one() -> None:
    box = np.array([[3, 4, 12, 9]])
    assert iou_inclusive(box, box)[0, 0] == 1.0


def test_iou_single_pixel_boxes() -> None:
    # [0,0,0,0] is one pixel under the inclusive convention: 1/1 with itself,
    # and [1,1,1,1] shares no pixel with it.
    assert iou_inclusive([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 1.0
    assert iou_inclusive([[0, 0, 0, 0]], [[1, 1, 1, 1]])[0, 0] == 0.0


def test_iou_disjoint_and_adjacent_are_zero() -> None:
    a = np.array([[0, 0, 4, 4]])
    # Far apart.
    assert iou_inclusive(a, [[10, 10, 14, 14]])[0, 0] == 0.0
    # Adjacent: columns 0..4 and 5..9 share no pixel: 4 - 5 + 1 = 0 wide.
    assert iou_inclusive(a, [[5, 0, 9, 4]])[0, 0] == 0.0


def test_iou_sharing_one_column() -> None:
    # [0,0,4,4] and [4,0,8,4]: both 5x5 = 25; they share column 4, 1 x 5 = 5.
    # union 25 + 25 - 5 = 45 -> 5/45 = 1/9.
    assert iou_inclusive([[0, 0, 4, 4]], [[4, 0, 8, 4]])[0, 0] == pytest.approx(1 / 9)


def test_iou_overlapping_squares() -> None:
    # [0,0,9,9] and [5,5,14,14]: 10x10 = 100 each, overlap [5..9]^2 = 25.
    # union 175 -> 25/175 = 1/7 (an exclusive convention would give 16/146).
    assert iou_inclusive([[0, 0, 9, 9]], [[5, 5, 14, 14]])[0, 0] == pytest.approx(1 / 7)


def test_iou_contained_box() -> None:
    # [2,2,4,4] (3x3 = 9) inside [0,0,9,9] (100): 9/100.
    assert iou_inclusive([[2, 2, 4, 4]], [[0, 0, 9, 9]])[0, 0] == pytest.approx(0.09)


def test_iou_pairwise_shape_and_values() -> None:
    a = np.array([[0, 0, 9, 9], [20, 20, 29, 29]])
    b = np.array([[0, 0, 9, 9], [5, 5, 14, 14], [20, 20, 29, 29]])
    expected = np.array(
        [
            [1.0, 1 / 7, 0.0],
            # [20..29] vs [5..14]: no shared pixel.
            [0.0, 0.0, 1.0],
        ]
    )
    result = iou_inclusive(a, b)
    assert result.shape == (2, 3)
    np.testing.assert_allclose(result, expected)


def test_iou_accepts_single_box_and_is_symmetric() -> None:
    a = np.array([0, 0, 9, 9])
    b = np.array([5, 5, 14, 14])
    assert iou_inclusive(a, b).shape == (1, 1)
    assert iou_inclusive(a, b)[0, 0] == iou_inclusive(b, a)[0, 0]


def test_iou_malformed_box_gives_zero_not_nan() -> None:
    # x1 = x0 - 1 makes the box zero pixels wide; union of two such is 0.
    result = iou_inclusive([[5, 5, 4, 4]], [[5, 5, 4, 4]])
    assert result[0, 0] == 0.0


# ---------------------------------------------------------------- uint8 map


def test_to_uint8_truncates_and_clips() -> None:
    scores = np.array([[0.0, 0.5, 1.0, 0.999, 1.5, -0.2, np.nan, np.inf]])
    # 0 -> 0; 127.5 -> 127 (truncation); 255; 254.745 -> 254; 1.5 clipped to
    # 1 -> 255; -0.2 clipped to 0; NaN -> 0; +inf -> 1 -> 255.
    expected = np.array([[0, 127, 255, 254, 255, 0, 0, 255]], dtype=np.uint8)
    result = to_uint8_map(scores)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, expected)


def test_to_uint8_keeps_float32_precision() -> None:
    # Whatever the precision, the result is what the reference computes in it.
    scores = np.linspace(0, 1, 1001, dtype=np.float32).reshape(7, 143)
    np.testing.assert_array_equal(to_uint8_map(scores), (scores * 255).astype(np.uint8))


# ---------------------------------------------------------------- threshold


def test_threshold_is_strictly_greater_than_int_of_t_times_max() -> None:
    image = np.array([[0, 99, 100, 101, 200]], dtype=np.uint8)
    # max 200, t 0.5 -> level int(100.0) = 100; only 101 and 200 are > 100.
    np.testing.assert_array_equal(threshold_mask(image, 0.5), [[0, 0, 0, 255, 255]])
    # max 200, t 0.499 -> int(99.8) = 99: now 100 is kept.
    np.testing.assert_array_equal(threshold_mask(image, 0.499), [[0, 0, 255, 255, 255]])


def test_threshold_truncates_level() -> None:
    image = np.array([[127, 128, 255]], dtype=np.uint8)
    # 0.5 * 255 = 127.5 -> level 127: 127 dropped, 128 kept.
    np.testing.assert_array_equal(threshold_mask(image, 0.5), [[0, 255, 255]])


def test_threshold_all_zero_map_is_empty() -> None:
    # max 0 -> level 0; no pixel is > 0.
    assert not threshold_mask(np.zeros((32, 32), np.uint8), 0.5).any()


def test_threshold_constant_map_is_full() -> None:
    # max 77, t 0.5 -> level int(38.5) = 38 < 77: every pixel kept.
    assert threshold_mask(np.full((32, 32), 77, np.uint8), 0.5).all()


# ---------------------------------------------------------------- contours


def test_empty_mask_gives_zero_box_in_both_modes() -> None:
    mask = np.zeros((32, 32), np.uint8)
    np.testing.assert_array_equal(boxes_from_mask(mask, multi_contour=False), [[0, 0, 0, 0]])
    np.testing.assert_array_equal(boxes_from_mask(mask, multi_contour=True), [[0, 0, 0, 0]])
    np.testing.assert_array_equal(largest_box(mask), [0, 0, 0, 0])


def test_rectangle_box_keeps_reference_plus_one() -> None:
    mask = np.zeros((32, 32), np.uint8)
    mask[5:10, 10:20] = 255  # rows 5..9, cols 10..19
    # boundingRect x=10, y=5, w=10, h=5 -> [10, 5, 20, 10]: one past the
    # last pixel, as the reference.
    np.testing.assert_array_equal(largest_box(mask), [10, 5, 20, 10])
    assert largest_box(mask).dtype == np.int64


def test_box_touching_border_is_clipped_to_last_pixel() -> None:
    mask = np.zeros((32, 40), np.uint8)  # H=32, W=40
    mask[28:32, 33:40] = 1  # rows 28..31, cols 33..39
    # x + w = 33 + 7 = 40 -> min(40, 39) = 39; y + h = 28 + 4 = 32 -> 31.
    np.testing.assert_array_equal(largest_box(mask), [33, 28, 39, 31])


def test_full_mask_box_is_whole_image() -> None:
    # (0, 0, 32, 32) clipped to [0, 0, 31, 31].
    np.testing.assert_array_equal(largest_box(np.ones((32, 32), np.uint8)), [0, 0, 31, 31])


def test_any_nonzero_is_foreground() -> None:
    mask01 = np.zeros((32, 32), np.uint8)
    mask01[4:8, 6:9] = 1
    # rows 4..7, cols 6..8: x=6, w=3, y=4, h=4 -> [6, 4, 9, 8].
    for mask in (mask01, mask01 * 255, mask01 * 7, mask01.astype(bool)):
        np.testing.assert_array_equal(largest_box(mask), [6, 4, 9, 8])


def test_largest_and_multi_contour() -> None:
    mask = np.zeros((32, 32), np.uint8)
    mask[2:12, 2:12] = 255  # 10x10 block: contour area 9 * 9 = 81
    mask[20:24, 20:24] = 255  # 4x4 block: contour area 3 * 3 = 9
    np.testing.assert_array_equal(boxes_from_mask(mask, multi_contour=False), [[2, 2, 12, 12]])
    assert _as_set(boxes_from_mask(mask, multi_contour=True)) == {(2, 2, 12, 12), (20, 20, 24, 24)}


def test_largest_is_by_contour_area_not_pixel_count() -> None:
    mask = np.zeros((32, 32), np.uint8)
    mask[0, 0:20] = 1  # 20 pixels, but a one-pixel line has contour area 0
    mask[10:13, 10:13] = 1  # 9 pixels, contour area 2 * 2 = 4
    np.testing.assert_array_equal(largest_box(mask), [10, 10, 13, 13])


def test_multi_contour_includes_hole_contours() -> None:
    mask = np.zeros((32, 32), np.uint8)
    mask[10:20, 10:20] = 1
    mask[13:17, 13:17] = 0  # hole rows/cols 13..16
    # RETR_TREE also returns the hole; OpenCV traces it along the foreground
    # pixels around the hole, rows/cols 12..17: x=12, w=6 -> [12, 12, 18, 18].
    # Outer: x=10, w=10 -> [10, 10, 20, 20].
    assert _as_set(boxes_from_mask(mask, multi_contour=True)) == {(10, 10, 20, 20), (12, 12, 18, 18)}
    np.testing.assert_array_equal(largest_box(mask), [10, 10, 20, 20])


def test_contour_tie_goes_to_first_in_opencv_order() -> None:
    mask = np.zeros((32, 32), np.uint8)
    mask[2:7, 2:7] = 255  # 5x5, contour area 16 -> box [2, 2, 7, 7]
    mask[20:25, 20:25] = 255  # 5x5, contour area 16 -> box [20, 20, 25, 25]
    # The reference takes Python's max(contours, key=cv2.contourArea): the
    # first of equal areas in findContours' order, read here from OpenCV itself.
    contours, _ = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    x, y, w, h = cv2.boundingRect(contours[0])
    first = [x, y, x + w, y + h]
    assert first in ([2, 2, 7, 7], [20, 20, 25, 25])
    np.testing.assert_array_equal(largest_box(mask), first)
    boxes, largest = contour_boxes(mask)
    assert largest == 0
    assert _as_set(boxes) == {(2, 2, 7, 7), (20, 20, 25, 25)}


def test_mask_must_be_2d() -> None:
    with pytest.raises(ValueError):
        largest_box(np.zeros((4, 4, 1), np.uint8))


# ---------------------------------------------------------------- score map


def test_box_from_score_map_nested_levels() -> None:
    score = np.zeros((32, 32), np.float32)
    score[4:20, 4:20] = 0.4  # uint8 int(102.0) = 102
    score[8:12, 8:14] = 1.0  # uint8 255; rows 8..11, cols 8..13
    # t=0.3: level int(76.5) = 76 < 102 -> the 16x16 block (core inside):
    # x=4, w=16 -> [4, 4, 20, 20].
    np.testing.assert_array_equal(box_from_score_map(score, 0.3), [4, 4, 20, 20])
    # t=0.5: level 127 > 102 -> core only: x=8, w=6, y=8, h=4 -> [8, 8, 14, 12].
    np.testing.assert_array_equal(box_from_score_map(score, 0.5), [8, 8, 14, 12])


def test_box_from_all_zero_and_constant_maps() -> None:
    np.testing.assert_array_equal(box_from_score_map(np.zeros((32, 32)), 0.5), [0, 0, 0, 0])
    # Constant 0.3 -> uint8 76, level int(38.0) = 38: full mask -> whole image.
    np.testing.assert_array_equal(box_from_score_map(np.full((32, 32), 0.3), 0.5), [0, 0, 31, 31])


def test_peak_box_is_the_region_holding_the_maximum_not_the_largest() -> None:
    from rpol_edge.results.detection import crop_boxes

    score = np.zeros((20, 20), np.float32)
    mask = np.zeros((20, 20), np.uint8)
    mask[0:10, 0:10] = 1  # the largest region, weak evidence
    score[0:10, 0:10] = 0.6
    mask[14:17, 14:17] = 1  # a small region holding the maximum
    score[14:17, 14:17] = 0.9
    score[15, 15] = 1.0
    largest, _ = crop_boxes(score, mask, boxes="largest")
    before = mask.copy()
    peak, peak_score = crop_boxes(score, mask, boxes="peak")
    assert np.array_equal(mask, before)  # the caller's mask is left as it was
    assert largest.tolist() == [[0, 0, 10, 10]]  # the reference's one-past-the-end corner
    assert peak.tolist() == [[14, 14, 17, 17]]
    assert np.isclose(peak_score[0], score[14:18, 14:18].mean())
    mask[0, 19] = 255  # a 0/255 mask, its maximum on a one-pixel region: that region
    score[0, 19] = 2.0
    assert crop_boxes(score, mask, boxes="peak")[0].tolist() == [[19, 0, 19, 1]]


def test_peak_box_matches_the_labelled_region_on_random_masks() -> None:
    """The flood fill from the peak gives the bounding box of the 8-connected component that
    `cv2.connectedComponentsWithStats` labels there, on random blobby masks."""
    from rpol_edge.results.detection import crop_boxes

    rng = np.random.default_rng(0)
    for _ in range(50):
        score = cv2.GaussianBlur(rng.random((64, 64)).astype(np.float32), (0, 0), 3)
        mask = (score > np.quantile(score, 0.7)).astype(np.uint8)
        _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        bx, by, bw, bh = stats[labels[y, x], :4]
        want = [bx, by, min(bx + bw, 63), min(by + bh, 63)]
        assert crop_boxes(score, mask, boxes="peak")[0].tolist() == [want]
