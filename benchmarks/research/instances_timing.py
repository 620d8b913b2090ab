"""Host time of the instance rules per frame: median and p95, one thread, warmed up.

Uses the raw responses (and feature grids) of the multi-object canvases and the photos from
benchmarks/research/instances.py's feature cache (w* fitted on all photos), so the timed inputs are real
maps. The post-processing runs on the host next to any runtime, so it is timed alone: numpy/BLAS
limited to one thread, 3 warm-up passes, then every frame timed over --repeats passes.

``--detect largest,all`` times what the product runs instead: `rpol_edge.results.detection.detect`
on the exported graph's outputs (score map, mask and peak, made from the same raw responses as the
graph makes them: benchmarks/research/instances.py `graph_outputs`), boxes mapped back to a 640 x 480 frame.

Usage: python -m benchmarks.research.instances_timing --root ../shared/data/raccoon \
    --cache /work/cache/instances \
           --rules largest,peaks_rel0.0_keep0.5_prom0.2 --out benchmarks/results/instances_timing.json
       python -m benchmarks.research.instances_timing ... --rules "" --detect largest,all \
           [--stride16 dilated] ...
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.host_timing import timed  # noqa: E402
from benchmarks.research.instance_data import build_data, fit_w, load_sets, responses  # noqa: E402
from benchmarks.research.instance_detectors import candidates, graph_outputs  # noqa: E402
from benchmarks.research.instances import machine  # noqa: E402
from rpol_edge.core.geometry import resize_crop  # noqa: E402
from rpol_edge.results.detection import detect  # noqa: E402


def summary(a: np.ndarray, n: int) -> dict[str, Any]:
    """Every timed call; and per frame the best of its passes, which takes out what other work
    on the machine added (on a shared 2-core machine the tails of the first set are its load)."""
    best = a.reshape(-1, n).min(axis=0)
    return {
        "frames": len(a),
        "median_ms": round(float(np.median(a)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
        "best_of_passes_median_ms": round(float(np.median(best)), 3),
        "best_of_passes_p95_ms": round(float(np.percentile(best, 95)), 3),
        "best_of_passes_max_ms": round(float(best.max()), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--rules", required=True, help="comma-separated candidate names of instances.py")
    ap.add_argument("--detect", default="", help="comma-separated box modes of detect (largest, all)")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument(
        "--stride16", choices=("", "plain", "dilated"), default="", help="Lite0 at output stride 16"
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    data = build_data(load_sets(args.root, 448, 0, 5, 42), args.size, args.stride16, args.cache, 0)
    w = fit_w(data["photos"].feats)
    cands = candidates()
    rows = {}
    for set_name in ("multi", "photos"):
        d = data[set_name]
        raws = responses(d.feats, w)
        feats = d.feats.astype(np.float32)
        jobs: list[tuple[str, Any]] = []
        for name in [n for n in args.rules.split(",") if n]:
            det = cands[name][1]
            jobs.append((name, lambda i, det=det, a=raws, f=feats: det(a[i], f[i], args.size)))
        if args.detect:
            outputs = [(*graph_outputs(raw, args.size), float(raw.max())) for raw in raws]
            cells = raws.shape[1]
            t = resize_crop(np.zeros((480, 640, 3), np.uint8), round(args.size * 480 / 448), args.size)[1]
            for mode in args.detect.split(","):

                def run(i: int, mode: str = mode, o: Any = outputs, t: Any = t, c: int = cells) -> None:
                    detect(o[i][0], o[i][1], t, 0.0, mode, c, o[i][2])

                jobs.append((f"detect_{mode}", run))
        for name, run in jobs:
            rows[f"{set_name}/{name}"] = summary(timed(run, len(raws), args.repeats), len(raws))
            r = rows[f"{set_name}/{name}"]
            print(
                f"{set_name:7s} {name:42s} median {r['median_ms']:.3f} ms  "
                f"p95 {r['p95_ms']:.3f}  p99 {r['p99_ms']:.3f}  best of passes: "
                f"median {r['best_of_passes_median_ms']:.3f} p95 {r['best_of_passes_p95_ms']:.3f} "
                f"max {r['best_of_passes_max_ms']:.3f}"
            )
    record = {
        "command": "python " + " ".join(sys.argv),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average": os.getloadavg(),
        "input_size": args.size,
        "stride16": args.stride16,
        "grid": list(data["photos"].feats.shape[2:]),
        "rows": rows,
    }
    if args.out:
        from rpol_edge.core.files import write_text_atomic

        write_text_atomic(args.out, json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
