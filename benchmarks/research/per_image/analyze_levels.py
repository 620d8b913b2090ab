"""Probe of the maps: per GT object, which levels relative to the object's own local peak give a
box (the component around that peak) with IoU >= 0.5; the share of objects any level serves and
the share each single level serves, on the raccoon photos and the canvases."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.research.per_image.data import input_size, prepare
from benchmarks.research.per_image.maps import components, minmax_clamped, scale_box, stat_box, upsample
from rpol_edge.results.boxes import iou_inclusive

WORK = 112
LEVELS = np.round(np.arange(0.0, 0.96, 0.05), 2)


def object_levels(up: np.ndarray, gt: np.ndarray, size: int) -> np.ndarray:
    """Per level: whether the component around the object's own peak boxes it at IoU >= 0.5."""
    b = np.round(gt * (WORK - 1) / (size - 1)).astype(int)
    sub = up[b[1] : b[3] + 1, b[0] : b[2] + 1]
    if sub.size == 0 or sub.max() <= 0:
        return np.zeros(len(LEVELS), bool)
    py, px = np.unravel_index(np.argmax(sub), sub.shape)
    py, px = py + b[1], px + b[0]
    p = up[py, px]
    row = []
    for r in LEVELS:
        lab, st = components(up > max(r * p, 1e-9))
        bb = scale_box(stat_box(st[lab[py, px]], WORK), WORK, size)
        row.append(iou_inclusive(bb, gt[None])[0, 0] >= 0.5)
    return np.array(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cache", type=Path, required=True, help="folder of cache_features' npz files")
    ap.add_argument("--tag", default="448", help="cache tag (default 448)")
    args = ap.parse_args()
    size = input_size(args.tag)
    sets = prepare(args.cache, args.tag)
    for s in ("photos", "multi"):
        d = sets[s]
        good = [
            object_levels(upsample(minmax_clamped(a), WORK), gt, size)
            for i, a in enumerate(d["raw"])
            for gt in d["boxes"][i]
        ]
        g = np.array(good)
        print(s, "objects", len(g), "any", g.any(1).mean().round(3))
        print("  per level", dict(zip(LEVELS.tolist(), g.mean(0).round(2).tolist(), strict=True)))


if __name__ == "__main__":
    main()
