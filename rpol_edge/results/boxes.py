"""Box extraction from score maps and masks, and inclusive-pixel IoU.

This module is the single place where a score map or a binary mask becomes
boxes; every runtime and the evaluator go through it so that the numbers they
report are comparable with each other and with the published ones.

Every step reproduces ``wsolevaluation`` (Choe et al., CVPR 2020,
``compute_bboxes_from_scoremaps`` and ``calculate_multiple_iou``), which the
RPOL reference code also follows:

* score -> uint8 by truncation, ``(score * 255).astype(np.uint8)``;
* binary threshold at ``int(t * max)``, keeping pixels strictly greater;
* ``cv2.findContours(mask, RETR_TREE, CHAIN_APPROX_SIMPLE)``;
* no contour -> the single box ``[0, 0, 0, 0]``;
* largest contour by ``cv2.contourArea``, ties to the first one in OpenCV's
  order (Python's ``max``), or every contour (hole contours included) in the
  multi-contour mode;
* box ``[x, y, min(x + w, W - 1), min(y + h, H - 1)]`` from
  ``cv2.boundingRect``;
* IoU with ``width = x1 - x0 + 1``.

Boxes are ``int64`` arrays of ``[x0, y0, x1, y1]`` in pixel coordinates of the
map they come from.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "EMPTY_BOX",
    "box_from_score_map",
    "boxes_from_mask",
    "contour_boxes",
    "iou_inclusive",
    "largest_box",
    "threshold_mask",
    "to_uint8_map",
]

EMPTY_BOX: npt.NDArray[np.int64] = np.zeros(4, dtype=np.int64)
"""The box reported when a mask has no foreground, as wsolevaluation does.

Under the inclusive convention it is the one pixel at the origin, not an
empty set, so it only matches a ground-truth box at the image corner.
"""


def to_uint8_map(score_map: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    """Convert a score map in ``[0, 1]`` to ``uint8`` by truncation.

    ``int(score * 255)``, exactly as the reference: 0.999 gives 254, not 255.
    Floating inputs keep their precision (float32 stays float32) because the
    truncation is sensitive to it at the integer boundaries; other dtypes are
    read as float64. Values are first forced into ``[0, 1]`` (NaN and -inf
    to 0, +inf to 1) so that an out-of-range input saturates instead of
    wrapping around modulo 256.
    """
    scores = np.asarray(score_map)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    scores = np.nan_to_num(scores, nan=0.0, posinf=1.0, neginf=0.0)
    scores = np.clip(scores, 0.0, 1.0)
    result: npt.NDArray[np.uint8] = (scores * 255).astype(np.uint8)
    return result


def threshold_mask(map_u8: npt.NDArray[np.uint8], t: float) -> npt.NDArray[np.uint8]:
    """Binary mask (0/255) of the pixels strictly greater than ``int(t * max)``.

    The threshold is relative to this map's own maximum, as in the reference.
    An all-zero map therefore gives an empty mask (nothing is greater than 0),
    and a constant non-zero map gives a full one.
    """
    image = np.ascontiguousarray(map_u8, dtype=np.uint8)
    _check_2d(image, "map_u8")
    level = int(t * int(image.max()))
    _, mask = cv2.threshold(image, level, 255, cv2.THRESH_BINARY)
    result: npt.NDArray[np.uint8] = np.asarray(mask, dtype=np.uint8)
    return result


def contour_boxes(mask: npt.NDArray[np.generic]) -> tuple[npt.NDArray[np.int64], int]:
    """Boxes of every contour of a binary mask, and the index of the largest.

    Any non-zero pixel is foreground, so a 0/1, 0/255 or boolean mask (the
    exported ONNX graph emits one of these) gives the same boxes.

    Returns ``(boxes, largest)`` with ``boxes`` of shape ``(k, 4)`` in
    ``cv2.findContours`` order (RETR_TREE, so hole contours are included)
    and ``boxes[largest]`` the box of the contour with the largest
    ``cv2.contourArea``; on ties the first such contour in that order, as
    Python's ``max`` picks in the reference. Note that ``contourArea`` is the
    polygon area of the traced boundary, not a pixel count: a one-pixel-wide
    line has area 0. Without any contour the result is ``([[0, 0, 0, 0]], 0)``.

    Computing both at once lets an evaluator score the largest-contour and
    the multi-contour protocols from one ``findContours`` call.
    """
    binary = np.ascontiguousarray(np.asarray(mask) != 0, dtype=np.uint8)
    _check_2d(binary, "mask")
    height, width = binary.shape
    contours, _ = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) == 0:
        return EMPTY_BOX.reshape(1, 4).copy(), 0
    boxes = np.empty((len(contours), 4), dtype=np.int64)
    for i, contour in enumerate(contours):
        boxes[i] = _bounding_box(contour, width, height)
    areas = [float(cv2.contourArea(contour)) for contour in contours]
    largest = max(range(len(areas)), key=areas.__getitem__)
    return boxes, largest


def boxes_from_mask(mask: npt.NDArray[np.generic], multi_contour: bool) -> npt.NDArray[np.int64]:
    """Boxes ``(k, 4)`` of a binary mask: every contour, or only the largest.

    With ``multi_contour=False`` the result has exactly one row. Without any
    foreground it is ``[[0, 0, 0, 0]]`` in both modes. See
    :func:`contour_boxes` for the foreground and tie rules.
    """
    boxes, largest = contour_boxes(mask)
    if multi_contour:
        return boxes
    return boxes[largest : largest + 1].copy()


def largest_box(mask: npt.NDArray[np.generic]) -> npt.NDArray[np.int64]:
    """The ``(4,)`` box of the largest contour of a binary mask."""
    boxes, largest = contour_boxes(mask)
    result: npt.NDArray[np.int64] = boxes[largest].copy()
    return result


def box_from_score_map(score_map: npt.NDArray[np.generic], t: float) -> npt.NDArray[np.int64]:
    """The RPOL box of a ``[0, 1]`` score map at relative threshold ``t``.

    uint8 truncation, threshold at ``int(t * max)``, largest contour.
    """
    return largest_box(threshold_mask(to_uint8_map(score_map), t))


def iou_inclusive(
    a: npt.NDArray[np.integer] | npt.NDArray[np.floating] | Sequence[Sequence[float]],
    b: npt.NDArray[np.integer] | npt.NDArray[np.floating] | Sequence[Sequence[float]],
) -> npt.NDArray[np.float64]:
    """Pairwise IoU ``(N, M)`` of boxes ``a (N, 4)`` and ``b (M, 4)``.

    Inclusive-pixel convention of wsolevaluation's ``calculate_multiple_iou``:
    a box covers the pixels ``x0..x1`` and ``y0..y1``, so its width is
    ``x1 - x0 + 1`` and ``[0, 0, 0, 0]`` is one pixel. Boxes that share no
    pixel have IoU 0; identical boxes have IoU 1. A single box may be given
    as shape ``(4,)``. A pair whose union is not positive (only possible
    with malformed boxes, ``x1 < x0``) gets IoU 0 rather than NaN.
    """
    boxes_a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    boxes_b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0])
    iy0 = np.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1])
    ix1 = np.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2])
    iy1 = np.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3])
    intersection = np.maximum(0.0, ix1 - ix0 + 1) * np.maximum(0.0, iy1 - iy0 + 1)
    area_a = (boxes_a[:, 2] - boxes_a[:, 0] + 1) * (boxes_a[:, 3] - boxes_a[:, 1] + 1)
    area_b = (boxes_b[:, 2] - boxes_b[:, 0] + 1) * (boxes_b[:, 3] - boxes_b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - intersection
    safe_union = np.where(union > 0, union, 1.0)
    result: npt.NDArray[np.float64] = np.where(union > 0, intersection / safe_union, 0.0)
    return result


def _bounding_box(contour: cv2.typing.MatLike, width: int, height: int) -> npt.NDArray[np.int64]:
    """``[x, y, x + w, y + h]`` from ``cv2.boundingRect``, clipped to the image.

    ``x + w`` is one past the last foreground column, so under the inclusive
    convention the box is one pixel wider (and taller) than the blob. The
    reference keeps that offset and only clips it at the image border, where
    ``x + w`` would be ``W``, a column outside the image; the clip to
    ``W - 1`` (``H - 1``) keeps every box inside the image. Both are kept
    here so the accuracies match wsolevaluation's to the pixel.
    """
    x, y, w, h = cv2.boundingRect(contour)
    return np.array([x, y, min(x + w, width - 1), min(y + h, height - 1)], dtype=np.int64)


def _check_2d(array: npt.NDArray[np.generic], name: str) -> None:
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (H, W) array, got shape {array.shape}")
