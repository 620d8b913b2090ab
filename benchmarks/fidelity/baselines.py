"""Label-free comparison rows for the results table: a centered box of a fixed fraction of the crop.

Scored with the same metrics code and the same resize/crop protocol as `rpol-edge eval`.
Usage: python -m benchmarks.fidelity.baselines --root ../shared/data/raccoon --split test [--input-size 448]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from rpol_edge.core.geometry import CropTransform
from rpol_edge.data import read_dataset
from rpol_edge.evaluate.metrics import BoxAccuracy
from rpol_edge.fitting.fitter import default_resize


def centered_map(k: int, fraction: float) -> np.ndarray:
    m = np.zeros((k, k), np.float32)
    pad = int(round(k * (1 - fraction) / 2))
    m[pad : k - pad, pad : k - pad] = 1.0
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="voc")
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--input-size", type=int, default=448)
    ap.add_argument("--fractions", default="0.6,0.7,0.8,0.9,1.0")
    args = ap.parse_args()
    k, s = args.input_size, default_resize(args.input_size)
    samples = read_dataset(args.data, args.root, args.split)
    sizes = [Image.open(x.path).size for x in samples]
    for frac in (float(f) for f in args.fractions.split(",")):
        acc = BoxAccuracy(operating_threshold=0.5)
        m = centered_map(k, frac)
        for x, (w, h) in zip(samples, sizes, strict=True):
            acc.add(m, CropTransform(w, h, s, k).boxes_to_input(x.boxes))
        r = acc.result()
        row = {
            "baseline": f"centered box {frac:.0%}",
            # The box is the same at every threshold, so GT-known at 0.5 is its label-free accuracy.
            **{
                k: r[k]
                for k in ("n_images", "gt_known_loc", "maxboxacc", "maxboxacc_v2", "maxboxacc_v2_rpol")
            },
        }  # type: ignore[literal-required]
        print(json.dumps(row))


if __name__ == "__main__":
    main()
