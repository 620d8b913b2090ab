"""Resize-then-center-crop geometry: GT boxes into the network frame, predictions back out."""

from __future__ import annotations

import numpy as np
import pytest

from rpol_edge.core.geometry import CropTransform, resize_crop


def test_gt_boxes_follow_resize_and_crop_hand_worked() -> None:
    # 640x480 image, resize 480x480 then crop 448: scale x 0.75, y 1.0, offset round(32/2) = 16.
    t = CropTransform(src_w=640, src_h=480, resize=480, crop=448)
    assert (t.scale_x, t.scale_y, t.offset) == (0.75, 1.0, 16)
    box = np.array([[100.0, 50.0, 600.0, 470.0]])
    # x0 = 100*0.75-16 = 59, y0 = 50-16 = 34, x1 = 450-16 = 434, y1 = 470-16 = 454 -> clipped to 447
    assert t.boxes_to_input(box).tolist() == [[59, 34, 434, 447]]
    # Boxes entirely in the cut border collapse onto the edge, as the reference clips.
    assert t.boxes_to_input(np.array([[0.0, 0.0, 10.0, 10.0]])).tolist() == [[0, 0, 0, 0]]


def test_boxes_round_trip_to_original_pixels() -> None:
    t = CropTransform(src_w=500, src_h=375, resize=480, crop=448)
    inner = np.array([[40, 60, 300, 400]])
    back = t.boxes_to_original(inner)
    # x0 = (40+16)/0.96 = 58.33 -> 58; y0 = (60+16)/1.28 = 59.375 -> 59; x1 = 316/0.96 = 329.17 -> 329;
    # y1 = 416/1.28 = 325
    assert back.tolist() == [[58, 59, 329, 325]]
    again = t.boxes_to_input(back)
    assert np.abs(again - inner).max() <= 1


def test_predictions_are_clipped_to_the_image() -> None:
    # No crop: x1 = 223/2.24 = 99.55 and y1 = 223/2.8 = 79.6 would round past the last pixel.
    t = CropTransform(src_w=100, src_h=80, resize=224, crop=224)
    assert t.boxes_to_original(np.array([[0, 0, 223, 223]])).tolist() == [[0, 0, 99, 79]]
    # With a crop the frame's edge maps inside the image: x0 = 8/2.4 = 3.3, y1 = 231/3 = 77.
    t = CropTransform(src_w=100, src_h=80, resize=240, crop=224)
    assert t.boxes_to_original(np.array([[0, 0, 223, 223]])).tolist() == [[3, 3, 96, 77]]


def test_resize_crop_shapes_and_inverse_map() -> None:
    img = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    frame, t = resize_crop(img, 256, 224)
    assert frame.shape == (224, 224, 3) and frame.dtype == np.uint8 and frame.flags.c_contiguous
    full = t.map_to_original(np.ones((224, 224), np.float32))
    assert full.shape == (300, 400)
    assert full[150, 200] == 1.0 and full[0, 0] == 0.0  # the crop's border is outside the map


@pytest.mark.parametrize("resize, crop", [(100, 224), (224, 0)])
def test_impossible_geometry_is_refused(resize: int, crop: int) -> None:
    with pytest.raises(ValueError, match="resize"):
        CropTransform(src_w=10, src_h=10, resize=resize, crop=crop)
