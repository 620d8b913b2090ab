"""The query side of explain: a query image's features and map (one backbone pass), and its query
points (given in original-image pixels, or the map's peak and lowest cell) as feature cells."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rpol_edge.core.geometry import CropTransform, resize_crop
from rpol_edge.data.images import load_rgb
from rpol_edge.explain.representers import Query, unit_map
from rpol_edge.modeling.localizer import Localizer


def point_to_cell(x: float, y: float, t: CropTransform, grid: tuple[int, int]) -> tuple[int, int]:
    """Original-image pixel (x, y) -> the (row, col) feature cell that sees it in the network crop."""
    px = x * t.scale_x - t.offset
    py = y * t.scale_y - t.offset
    if not (0 <= px < t.crop and 0 <= py < t.crop):
        raise ValueError(
            f"--point {x:g},{y:g} falls outside the {t.crop}x{t.crop} center crop the model sees "
            f"(image {t.src_w}x{t.src_h})"
        )
    gh, gw = grid
    return min(int(py * gh / t.crop), gh - 1), min(int(px * gw / t.crop), gw - 1)


def cell_to_point(row: int, col: int, t: CropTransform, grid: tuple[int, int]) -> tuple[float, float]:
    """Centre of a feature cell in original-image pixels."""
    gh, gw = grid
    px = (col + 0.5) * t.crop / gw
    py = (row + 0.5) * t.crop / gh
    return (px + t.offset) / t.scale_x, (py + t.offset) / t.scale_y


def query_features(
    loc: Localizer, meta_resize: int, meta_input: int, image: np.ndarray
) -> tuple[np.ndarray, CropTransform, np.ndarray]:
    frame, t = resize_crop(image, meta_resize, meta_input)
    with torch.inference_mode():
        x = torch.from_numpy(frame[None])
        f = loc.features(x)
        score, *_ = loc.localize(f)  # the map from these features: one backbone pass
    return f[0].double().numpy(), t, score[0].numpy()


@dataclass
class QueryView:
    path: Path
    image: np.ndarray
    transform: CropTransform
    score: np.ndarray
    grid: tuple[int, int]
    queries: list[Query]


def query_view(
    loc: Localizer, meta: Any, w: np.ndarray, h_idx: int, path: Path, points: list[tuple[float, float]]
) -> QueryView:
    """One query image: its features, its map, and its query points (given, or peak and lowest)."""
    image = load_rgb(path)
    fq, transform, score = query_features(loc, meta.resize_size, meta.input_size, image)
    unit_q, _ = unit_map(fq)
    grid = (int(unit_q.shape[1]), int(unit_q.shape[2]))
    act = np.einsum("c,chw->hw", w, unit_q)  # a before the clamp, per cell
    cells: list[tuple[float, float, int, int, str]] = []
    if points:
        cells = [(x, y, *point_to_cell(x, y, transform, grid), "given") for x, y in points]
    else:
        for source, flat in (("peak", int(np.argmax(act))), ("lowest", int(np.argmin(act)))):
            row, col = divmod(flat, grid[1])
            cells.append((*cell_to_point(row, col, transform, grid), row, col, source))
    queries = [
        Query(x, y, (row, col), source, unit_q[:, row, col].copy(), float(act[row, col]))
        for x, y, row, col, source in cells
    ]
    return QueryView(path, image, transform, score[h_idx], grid, queries)


__all__ = ["QueryView", "cell_to_point", "point_to_cell", "query_features", "query_view"]
