"""Per-image prediction: box in original pixels (JSON) and an overlay PNG, from any runtime."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rpol_edge.core.boxes import boxes_from_mask
from rpol_edge.core.files import write_bytes_atomic, write_text_atomic
from rpol_edge.core.geometry import CropTransform
from rpol_edge.core.prepare import prepare
from rpol_edge.data.images import ImageError, load_rgb
from rpol_edge.evaluate.overlay import render
from rpol_edge.runtimes import Runtime, infer_all


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int] | None
    """x0, y0, x1, y1 in original-frame pixels (inclusive); None for "no object": the mask is
    empty, or covers less than ``min_area`` of the input crop."""
    score: float
    """Mean of the score map inside the box, in [0, 1] (0 without a box)."""
    input_box: tuple[int, int, int, int] | None


def detect(score: np.ndarray, mask: np.ndarray, transform: CropTransform, min_area: float = 0.0) -> Detection:
    """The one post-processing step every runtime shares: largest contour of the mask -> box.

    ``min_area``: the share of the K x K crop the mask's largest region must cover for an object to
    be reported (0: any non-empty mask is one)."""
    if not mask.any() or (min_area > 0 and largest_region(mask) < min_area * mask.size):
        return Detection(None, 0.0, None)
    b = boxes_from_mask(mask, multi_contour=False)[0]
    x0, y0, x1, y1 = (int(v) for v in b)
    inside = float(score[y0 : y1 + 1, x0 : x1 + 1].mean())
    orig = transform.boxes_to_original(b)[0]
    return Detection(tuple(int(v) for v in orig), inside, (x0, y0, x1, y1))  # type: ignore[arg-type]


def largest_region(mask: np.ndarray) -> int:
    """Pixels of the mask's largest 8-connected region: the one the box is drawn around, so specks
    that only add up to a large area are not an object."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(mask, np.uint8), connectivity=8)
    return int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0


def detection_record(d: Detection) -> dict[str, Any]:
    """The fields every JSON output shares (docs/outputs.md): ``object`` false means no box."""
    return {"object": d.box is not None, "box": list(d.box) if d.box else None, "score": round(d.score, 6)}


def check_min_area(min_area: float) -> float:
    if not 0.0 <= min_area < 1.0:
        raise ValueError(f"--min-area {min_area}: a share of the input crop in [0, 1)")
    return min_area


def predict_files(
    runtime: Runtime,
    images: Sequence[Path],
    out_dir: Path,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    min_area: float = 0.0,
) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """Write ``<stem>.png`` (overlay) and ``<stem>.json`` per image, and every record in one
    ``predictions.jsonl``; returns the records and the skips."""
    meta = runtime.meta
    if meta.n_heads != 1:
        raise ValueError("predict needs a class-agnostic model (a class-wise fit localizes a known class)")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a folder: give -o a folder for the overlays and JSON")
    records: list[dict[str, Any]] = []
    skipped: list[tuple[Path, str]] = []
    names = output_names(images)
    out_dir.mkdir(parents=True, exist_ok=True)
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
        prepped = [prepare(img, meta, is_rgb=True) for _, img in loaded]
        out = infer_all(runtime, np.stack([f for f, _ in prepped]))
        for i, ((path, image), (_, t)) in enumerate(zip(loaded, prepped, strict=True)):
            d = detect(out.score[i, 0], out.mask[i, 0], t, min_area)
            rec = {"image": str(path), "width": t.src_w, "height": t.src_h, **detection_record(d)}
            stem = out_dir / names[path]
            overlay = render(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), out.score[i, 0], t, d.box)
            write_bytes_atomic(stem.with_suffix(".png"), encode_png(overlay))
            write_text_atomic(stem.with_suffix(".json"), json.dumps(rec, indent=1))
            records.append(rec)
        if progress:
            progress(min(start + batch_size, len(images)), len(images))
    if images and not records:
        raise ImageError(f"none of the {len(images)} image(s) could be read ({skipped[0][1]})")
    write_text_atomic(out_dir / JSONL_NAME, "".join(json.dumps(r) + "\n" for r in records))
    return records, skipped


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
