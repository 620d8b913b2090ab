"""Export a fitted model to ONNX and check its boxes against the PyTorch model, public API only.

    python examples/02_export_and_compare.py MODEL.rpol [IMAGE_FOLDER]

IMAGE_FOLDER defaults to the bundled sample's photos.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import rpol_edge


def iou(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int] | None) -> float:
    if a is None or b is None:
        return float(a == b)
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(w, 0) * max(h, 0)
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area - inter)


model = Path(sys.argv[1])
folder = Path(sys.argv[2]) if len(sys.argv) > 2 else rpol_edge.SAMPLE_ROOT / "JPEGImages"
photos = sorted(folder.glob("*.jpg"))[:8]

with tempfile.TemporaryDirectory() as tmp:
    files = rpol_edge.export(model, tmp, batch=(1, 4, 8))
    print(f"exported {', '.join(p.name for p in files.values())}")
    with rpol_edge.load(model, "torch", device="cpu") as ref, rpol_edge.load(files["onnx"]) as cand:
        ious = [iou(ref.predict(p).box, cand.predict(p).box) for p in photos]
        gap = max(
            float(abs(ref.predict(p).score_map - cand.predict(p).score_map).max()) for p in photos[:2]
        )
        print(f"{cand.description}: box IoU with torch min {min(ious):.3f} over {len(ious)} photos, "
              f"max |score map difference| {gap:.2e}")
