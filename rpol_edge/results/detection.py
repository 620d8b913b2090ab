"""Per-image prediction: box in original pixels (JSON) and an overlay PNG, from any runtime."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rpol_edge.core.files import write_bytes_atomic, write_text_atomic
from rpol_edge.core.geometry import CropTransform
from rpol_edge.core.metadata import BOX_CHOICES, BOX_MODES, ModelMeta
from rpol_edge.core.prepare import prepare
from rpol_edge.data.images import ImageError, load_rgb
from rpol_edge.results.boxes import boxes_from_mask
from rpol_edge.results.instances import all_boxes, object_boxes
from rpol_edge.results.overlay import render
from rpol_edge.results.score_grid import grid_cells
from rpol_edge.runtimes import Output, Runtime, infer_all

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Detection:
    box: Box | None
    """x0, y0, x1, y1 in original-frame pixels (inclusive); None for "no object": the mask is
    empty, or covers less than ``min_area`` of the input crop. With several boxes: the first."""
    score: float
    """The (top) box's evidence, 0 without a box: ``largest`` and ``all``, the mean of the score map
    inside it, in [0, 1]; ``objects``, its instance's mean response (`object_boxes`)."""
    input_box: Box | None
    boxes: list[tuple[Box, float]] = field(default_factory=list)
    """Every box with its score, best first, in original-frame pixels: the one box of
    ``largest`` (empty for "no object"), one per object for ``all`` and ``objects``."""


def check_boxes(boxes: str) -> str:
    if boxes not in BOX_MODES:
        raise ValueError(f"boxes={boxes!r}: choose {BOX_CHOICES}")
    return boxes


def box_mode(meta: ModelMeta, boxes: str | None) -> tuple[str, int]:
    """The box mode asked for (None: the model's recorded one) and the feature grid's cells per
    side, which ``all`` and ``objects`` recover from the score map."""
    mode = check_boxes(meta.boxes if boxes is None else boxes)
    return mode, grid_cells(meta.input_size, meta.feature_stride)


def detect(
    score: np.ndarray,
    mask: np.ndarray,
    transform: CropTransform,
    min_area: float = 0.0,
    boxes: str = "largest",
    cells: int = 0,
    peak: float | None = None,
) -> Detection:
    """The one post-processing step every runtime shares: the mask and score map -> boxes.

    ``boxes`` (`BOX_MODES`): ``largest`` (the largest contour of the mask), ``peak`` (the region
    holding the score map's maximum: `peak_region_box`), ``all`` (the largest box
    first, then one per other object: rpol_edge/results/instances.py `all_boxes`) or ``objects``
    (one box per object, the strongest first: `object_boxes`); the last two work from the score
    map and mask and need ``cells``, the feature grid's cells per side (`box_mode`). ``min_area``:
    the share of the K x K crop the mask's largest region must cover for any object to be
    reported (0: any non-empty mask is one).
    ``peak``: the graph's peak output for this map, which puts the scores of ``all`` and
    ``objects`` on one scale across images; ``largest`` does not use it."""
    found, scores = crop_boxes(score, mask, min_area, boxes, cells, peak)
    if not len(found):
        return Detection(None, 0.0, None)
    orig = transform.boxes_to_original(found)
    listed = [(_box(o), float(s)) for o, s in zip(orig, scores, strict=True)]
    return Detection(listed[0][0], listed[0][1], _box(found[0]), listed)


def crop_boxes(
    score: np.ndarray,
    mask: np.ndarray,
    min_area: float = 0.0,
    boxes: str = "largest",
    cells: int = 0,
    peak: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`detect` in the K x K crop: boxes (k, 4) int64 and their scores (k,), best first (what
    ``eval`` scores against the ground truth, which lives in the same frame)."""
    empty = (np.zeros((0, 4), np.int64), np.zeros(0))
    if not mask.any() or (min_area > 0 and largest_region(mask) < min_area * mask.size):
        return empty
    mode = check_boxes(boxes)
    if mode == "peak":
        return peak_region_box(score, mask)
    if mode != "largest":
        if cells <= 0:
            raise ValueError(f"boxes={mode!r} needs the feature grid size (cells per side)")
        return (
            all_boxes(score, mask, cells, peak=peak)
            if mode == "all"
            else object_boxes(score, mask, cells, peak)
        )
    b = boxes_from_mask(mask, multi_contour=False)[0]
    x0, y0, x1, y1 = (int(v) for v in b)
    return b[None], np.array([float(score[y0 : y1 + 1, x0 : x1 + 1].mean())])


def peak_region_box(score: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The box of the mask's 8-connected region that holds the score map's maximum, with the mean
    score inside it: the strongest evidence, not the widest (a fixed camera's small objects).
    Only that region is traced (a flood fill from the peak), not every region of the mask."""
    m = (np.asarray(mask) != 0).astype(np.uint8)  # a copy (the fill writes into it), any non-zero is 1
    at = int(np.argmax(score))
    if not m.flat[at]:  # the map's maximum outside the mask (no rule here does that): the mask's own
        at = int(np.argmax(np.where(m > 0, score, -np.inf)))
    y, x = divmod(at, m.shape[1])
    _, _, _, (x, y, w, h) = cv2.floodFill(m, None, (x, y), 2, flags=8)  # 8-connected
    # The reference's box convention, as `largest` draws it (results/boxes.py `_bounding_box`).
    x1, y1 = min(x + w, m.shape[1] - 1), min(y + h, m.shape[0] - 1)
    return np.array([[x, y, x1, y1]], np.int64), np.array([float(score[y : y1 + 1, x : x1 + 1].mean())])


def peak_of(out: Output, i: int, head: int = 0) -> float | None:
    """Frame ``i``'s peak response for ``head``, or None from a graph without that output."""
    return None if out.peak is None else float(out.peak[i, head])


def _box(b: np.ndarray) -> Box:
    x0, y0, x1, y1 = (int(v) for v in b)
    return (x0, y0, x1, y1)


def largest_region(mask: np.ndarray) -> int:
    """Pixels of the mask's largest 8-connected region: the one the box is drawn around, so specks
    that only add up to a large area are not an object."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(mask, np.uint8), connectivity=8)
    return int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0


def detection_record(d: Detection) -> dict[str, Any]:
    """The fields every JSON output shares (docs/outputs.md): ``object`` false means no box."""
    # A Detection made with its top box only (a remote worker's answer) lists that box.
    listed = d.boxes or ([(d.box, d.score)] if d.box is not None else [])
    return {
        "object": d.box is not None,
        "box": list(d.box) if d.box else None,
        "score": round(d.score, 6),
        "boxes": [{"box": list(b), "score": round(s, 6)} for b, s in listed],
    }


def check_min_area(min_area: float) -> float:
    if not 0.0 <= min_area < 1.0:
        raise ValueError(f"min_area={min_area}: a share of the input crop in [0, 1)")
    return min_area


Found = tuple[Detection, CropTransform, np.ndarray]
"""One frame's detection, its crop transform and its K x K score map (for the overlay)."""


def detect_images(
    runtime: Runtime, images: Sequence[np.ndarray], min_area: float = 0.0, boxes: str | None = "largest"
) -> list[Found]:
    """RGB frames of any size -> their detections in original pixels: the shared pre-processing,
    one batched inference and `detect`. What ``predict`` and the Triton worker both run.
    ``boxes``: one of `BOX_MODES`, or None for the model's recorded mode."""
    mode, cells = box_mode(runtime.meta, boxes)
    prepped = [prepare(img, runtime.meta, is_rgb=True) for img in images]
    out = infer_all(runtime, np.stack([f for f, _ in prepped]))
    return [
        (
            detect(out.score[i, 0], out.mask[i, 0], t, min_area, mode, cells, peak_of(out, i)),
            t,
            out.score[i, 0],
        )
        for i, (_, t) in enumerate(prepped)
    ]


def predict_files(
    runtime: Runtime,
    images: Sequence[Path],
    out_dir: Path,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    min_area: float = 0.0,
    boxes: str | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """Write ``<stem>.png`` (overlay) and ``<stem>.json`` per image, and every record in one
    ``predictions.jsonl``; returns the records and the skips. ``boxes``: see `detect_images`."""
    meta = runtime.meta
    if meta.n_heads != 1:
        raise ValueError("predict needs a class-agnostic model (a class-wise fit localizes a known class)")
    box_mode(meta, boxes)  # a bad mode is refused before any image is read
    return write_predictions(
        lambda imgs: detect_images(runtime, imgs, min_area, boxes), images, out_dir, batch_size, progress
    )


def write_predictions(
    detector: Callable[[list[np.ndarray]], list[Found]],
    images: Sequence[Path],
    out_dir: Path,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """The files of `predict_files` for any ``detector`` (a local runtime, a Triton server): images
    that cannot be read are skipped and counted, the rest written as they come back. ``out_dir`` is
    created by the first file written into it: a call that fails before any result leaves none."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a folder: give -o a folder for the overlays and JSON")
    records: list[dict[str, Any]] = []
    skipped: list[tuple[Path, str]] = []
    names = output_names(images)
    for start in range(0, len(images), batch_size):
        loaded = []
        for path in images[start : start + batch_size]:
            try:
                loaded.append((path, load_rgb(path)))
            except ImageError as exc:
                skipped.append((path, str(exc)))
        if not loaded:
            if progress:
                progress(min(start + batch_size, len(images)), len(images))
            continue
        try:
            found = detector([img for _, img in loaded])
        except Exception:
            if records:  # a detector that failed mid-run (a server gone): what it answered stays listed
                write_text_atomic(out_dir / JSONL_NAME, "".join(json.dumps(r) + "\n" for r in records))
            raise
        for (path, image), (d, t, score_map) in zip(loaded, found, strict=True):
            rec = {"image": str(path), "width": t.src_w, "height": t.src_h, **detection_record(d)}
            stem = out_dir / names[path]
            overlay = render(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), score_map, t, d.box, more=others(d))
            write_bytes_atomic(stem.with_suffix(".png"), encode_png(overlay))
            write_text_atomic(stem.with_suffix(".json"), json.dumps(rec, indent=1))
            records.append(rec)
        if progress:
            progress(min(start + batch_size, len(images)), len(images))
    if images and not records:
        raise ImageError(f"none of the {len(images)} image(s) could be read ({skipped[0][1]})")
    write_text_atomic(out_dir / JSONL_NAME, "".join(json.dumps(r) + "\n" for r in records))
    return records, skipped


def others(d: Detection) -> list[Box]:
    """The boxes after the top one, drawn thinner in an overlay."""
    return [b for b, _ in d.boxes[1:]]


JSONL_NAME = "predictions.jsonl"
"""All records of one predict call, one JSON object per line, in input order."""


def output_names(images: Sequence[Path]) -> dict[Path, str]:
    """File stems for the outputs, suffixed where two inputs share one (a.jpg / a.png, d1/x / d2/x)."""
    names: dict[Path, str] = {}
    seen: dict[str, int] = {}
    for path in images:
        stem = path.stem
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        names[path] = stem if n == 0 else f"{stem}_{n}"
    return names


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise OSError("could not encode PNG")
    return bytes(buf.tobytes())
