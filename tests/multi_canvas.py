"""Frames with several raccoons: four bundled sample photos tiled 2 x 2 (real photos, real animals).

With the `sample_model` fixture (input 224, a 7 x 7 grid) ``--boxes all`` finds two boxes on the
tiles that start at photos 2, 8 and 10 (by name order) and one on most others: frames where the
instance rule has something to separate, and where every runtime must separate them alike.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.conftest import SAMPLE

PHOTOS = sorted((SAMPLE / "JPEGImages").glob("*.jpg"))


def tiled(first: int, side: int = 224) -> np.ndarray:
    """BGR (2 side, 2 side, 3): sample photos first .. first + 3, each resized to side x side."""
    canvas = np.zeros((2 * side, 2 * side, 3), np.uint8)
    for k in range(4):
        y, x = divmod(k, 2)
        image = cv2.imread(str(PHOTOS[first + k]))
        canvas[y * side : (y + 1) * side, x * side : (x + 1) * side] = cv2.resize(image, (side, side))
    return canvas


def write_tiles(folder: Path, firsts: tuple[int, ...] = (2, 8, 10)) -> list[Path]:
    """PNG files of `tiled` (lossless, so every reader sees the same pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for first in firsts:
        path = folder / f"tiles_{first}.png"
        cv2.imwrite(str(path), tiled(first))
        paths.append(path)
    return paths
