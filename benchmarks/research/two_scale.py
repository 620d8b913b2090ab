"""Two input sizes for one image: the top box from the 448 pass (``largest``, as ``--boxes all``
has it), the other instances from a pass at a larger size, where small animals cover more grid
cells. w* fitted once, on the 448 features of the photos (label-free, per fold); the same folds,
sets, metrics and bootstrap as benchmarks/research/instances.py, boxes compared in the 448 crop (both
crops are the same share of the image: resize K * 480 / 448, center K).

Usage: python -m benchmarks.research.two_scale --root ../shared/data/raccoon --cache /work/cache/instances \
           [--large 640] --out benchmarks/results/two_scale.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.research.instance_data import SETS, build_data, fit_w, load_sets, responses
from benchmarks.research.instance_detectors import graph_outputs, product_all_peak
from benchmarks.research.instances import machine, metrics, score_set
from rpol_edge.results.boxes import iou_inclusive, largest_box
from rpol_edge.results.instances import ALL_BOXES, TOP_IOU, map_instances

BASE = 448


def two_scale(large: int) -> Any:
    def run(pair: tuple[np.ndarray, np.ndarray], _feats: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        r_base, r_large = pair
        s, m = graph_outputs(r_base, BASE)
        if not m.any():
            return np.zeros((0, 4), np.int64), np.zeros(0)
        top = largest_box(m)
        top_score = float(s[top[1] : top[3] + 1, top[0] : top[2] + 1].mean()) * max(float(r_base.max()), 0.0)
        s2, m2 = graph_outputs(r_large, large)
        found, scores = map_instances(s2, m2, r_large.shape[0], ALL_BOXES, "box")
        if len(found):
            found = np.clip(np.round(found * (BASE - 1) / (large - 1)).astype(np.int64), 0, BASE - 1)
            scores = scores * max(float(r_large.max()), 0.0)
            keep = iou_inclusive(top, found)[0] < TOP_IOU
            found, scores = found[keep], np.minimum(scores[keep], top_score * (1 - 1e-6))
        return np.concatenate([top[None], found]), np.concatenate([[top_score], scores])

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--large", type=int, default=640)
    ap.add_argument("--bootstrap", type=int, default=300)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    raw_sets = load_sets(args.root, BASE, 0, 5, 42)
    base, big = (
        build_data(raw_sets, BASE, "", args.cache, 0),
        build_data(raw_sets, args.large, "", args.cache, 0),
    )
    raws: dict[str, dict[int, np.ndarray]] = {}
    for name in SETS:
        raws[name] = {
            BASE: np.zeros((len(base[name].feats), *base[name].feats.shape[2:])),
            args.large: np.zeros((len(big[name].feats), *big[name].feats.shape[2:])),
        }
    for f in range(5):
        w = fit_w(base["photos"].feats[base["photos"].fold != f])
        for name in SETS:
            sel = base[name].fold == f
            raws[name][BASE][sel] = responses(base[name].feats[sel], w)
            raws[name][args.large][sel] = responses(big[name].feats[sel], w)
    rng = np.random.default_rng(0)
    rows: dict[str, Any] = {}
    for cname in ("all_448", f"two_scale_448_{args.large}"):
        rows[cname] = {}
        for name in SETS:
            gts = base[name].boxes
            if cname == "all_448":
                p = score_set(product_all_peak, raws[name][BASE], base[name].feats, gts, BASE)
            else:
                pairs = list(zip(raws[name][BASE], raws[name][args.large], strict=True))
                p = score_set(two_scale(args.large), pairs, [None] * len(pairs), gts, BASE)  # type: ignore[arg-type]
            m = metrics(p, np.arange(len(gts)))
            boots = rng.integers(0, len(gts), size=(args.bootstrap, len(gts)))
            bs = [metrics(p, b) for b in boots]
            rows[cname][name] = {
                **{k: round(v, 2) for k, v in m.items()},
                **{
                    f"{k}_ci95": [round(float(x), 1) for x in np.percentile([b[k] for b in bs], [2.5, 97.5])]
                    for k in ("top_gt_known", "ap50", "recall50", "precision50")
                },
            }
            print(cname, name, {k: round(v, 1) for k, v in m.items()}, flush=True)
    rec = {
        "command": "python " + " ".join(sys.argv),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
