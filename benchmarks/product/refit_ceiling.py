"""The compute ceiling of refit's speed-up: the backbone alone, PyTorch eager (what `fit` runs)
against the exported model's fit graph on ONNX Runtime (what `refit` runs), on the same
pre-processed frames in one process, one thread each, rounds interleaved. Decoding and resizing
cost both commands the same, so the whole-command ratio (benchmarks.product.refit) can only be lower.

Usage: OMP_NUM_THREADS=1 taskset -c 1 python -m benchmarks.product.refit_ceiling m.rpol m.onnx \
           --root ../shared/data/raccoon --out benchmarks/results/refit_ceiling.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from rpol_edge.bench.runner import machine_record
from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.evaluate.compare import dataset_frames
from rpol_edge.modeling.factory import build_localizer
from rpol_edge.refitting.job import RefitRequest
from rpol_edge.refitting.models import fit_runner, open_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="the fitted .rpol")
    ap.add_argument("onnx", type=Path, help="its exported FP32 .onnx")
    ap.add_argument("--root", type=Path, required=True, help="VOC root; its test split gives the frames")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    art = ModelArtifact.load(args.model)
    loc = build_localizer(art)
    frames = dataset_frames(art.meta, "voc", args.root, "test", workers=0)[: args.frames]
    req = RefitRequest(args.onnx, Path("unused.onnx"), data="voc", root=args.root, threads=1, batch_size=4)
    runner = fit_runner(open_model(args.onnx, "ort"), req)

    def eager() -> None:
        with torch.inference_mode():
            for i in range(0, len(frames), 16):  # fit's batch size
                loc.features(torch.from_numpy(frames[i : i + 16]))

    def graph() -> None:
        for i in range(0, len(frames), 4):  # refit's batch size
            runner.sums(frames[i : i + 4])  # (v, u, norms, cells)

    rounds = []
    with runner:
        eager()  # warm-up
        graph()
        for r in range(args.rounds):
            t0 = time.perf_counter()
            eager()
            t1 = time.perf_counter()
            graph()
            t2 = time.perf_counter()
            row = {"torch_ms": 1000 * (t1 - t0) / len(frames), "ort_ms": 1000 * (t2 - t1) / len(frames)}
            row["ratio"] = row["torch_ms"] / row["ort_ms"]
            rounds.append({k: round(v, 2) for k, v in row.items()})
            torch_ms, ort_ms = row["torch_ms"], row["ort_ms"]
            print(f"round {r}: torch {torch_ms:.1f} ms/frame, ort {ort_ms:.1f}, x{row['ratio']:.2f}")
    record = {
        "command": "python -m benchmarks.product.refit_ceiling " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": machine_record(),
        "input_size": art.meta.input_size,
        "frames": len(frames),
        "rounds": rounds,
        "median_ratio": round(float(np.median([r["ratio"] for r in rounds])), 2),
    }
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
