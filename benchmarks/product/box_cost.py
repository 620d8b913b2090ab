"""Host cost of each box mode per frame: `detect` on a model's real outputs, one thread, warmed up.

The box modes run on the host after the graph, next to any runtime, so they are timed alone: the
model runs once over a split (any runtime), then `rpol_edge.results.detection.detect` is timed on
each frame's score map, mask and peak for every mode (numpy/OpenCV on one thread, 3 untimed passes,
then ``--repeats`` timed ones), boxes mapped back to the frame's own size.

Usage: OMP_NUM_THREADS=1 taskset -c 0 python -m benchmarks.product.box_cost lobby.onnx \
           --data voc --root ../shared/data/caviar-lobby --split test --modes largest,peak,all \
           --out benchmarks/results/scene/box_cost_640.json
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.host_timing import timed  # noqa: E402
from rpol_edge.bench.runner import machine_record  # noqa: E402
from rpol_edge.core.geometry import CropTransform  # noqa: E402
from rpol_edge.data import read_dataset  # noqa: E402
from rpol_edge.data.loader import iterate_batches  # noqa: E402
from rpol_edge.results.detection import box_mode, detect, peak_of  # noqa: E402
from rpol_edge.runtimes import infer_all, open_runtime  # noqa: E402


def time_mode(outputs, transforms, mode: str, cells: int, repeats: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """ms of `detect` per frame and pass (`benchmarks.host_timing.timed`)."""

    def run(i: int) -> None:
        detect(outputs.score[i, 0], outputs.mask[i, 0], transforms[i], 0.0, mode, cells, peak_of(outputs, i))

    return timed(run, len(transforms), repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", default="voc")
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--modes", default="largest,peak,all,objects")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    samples = read_dataset(args.data, args.root, args.split)
    with open_runtime(args.model, args.runtime, device="cpu") as rt:
        meta = rt.meta
        batches = list(iterate_batches(samples, meta.resize_size, meta.input_size, 8, 0))
        frames = np.concatenate([b.frames for b in batches])
        kept = [s for b in batches for s in b.samples]
        outputs = infer_all(rt, frames)
    transforms = []
    for s in kept:
        image = cv2.imread(str(s.path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise SystemExit(f"{s.path}: unreadable")
        h, w = image.shape[:2]
        transforms.append(CropTransform(src_w=w, src_h=h, resize=meta.resize_size, crop=meta.input_size))
    record = {
        "command": "python -m benchmarks.product.box_cost " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": machine_record(with_torch=False),
        "model": args.model.name,
        "input_size": meta.input_size,
        "frames": len(kept),
        "modes": {},
    }
    for mode in args.modes.split(","):
        _, cells = box_mode(meta, mode)
        ms = time_mode(outputs, transforms, mode, cells, args.repeats)
        row = {"p50_ms": round(float(np.median(ms)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}
        record["modes"][mode] = row
        print(f"{mode:8s} p50 {row['p50_ms']:.3f} ms  p95 {row['p95_ms']:.3f} ms  ({len(ms)} calls)")
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
