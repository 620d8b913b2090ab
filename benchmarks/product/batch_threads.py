"""What batching can buy on this CPU: milliseconds per frame at batch 1 and 4, with 1 and 2
inference threads, ONNX Runtime and OpenVINO, each configuration in its own process, rounds
interleaved (the VM drifts), medians of the per-round medians.

Usage: python -m benchmarks.product.batch_threads MODEL.onnx [--rounds 3] [--iters 20] --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from statistics import median

CHILD = """
import json, sys, time
import numpy as np
from rpol_edge.runtimes import infer_all, open_runtime
model, runtime, threads, iters = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
batches = [int(b) for b in sys.argv[5].split(",")]
with open_runtime(model, runtime, device="cpu", threads=threads) as rt:
    shape = rt.meta.input_shape()
    out = {}
    for batch in batches:
        x = np.random.default_rng(0).integers(0, 256, (batch, *shape), dtype=np.uint8)
        for _ in range(3):
            infer_all(rt, x)
        ms = []
        for _ in range(iters):
            t0 = time.perf_counter()
            infer_all(rt, x)
            ms.append((time.perf_counter() - t0) * 1e3 / batch)
        out[str(batch)] = sorted(ms)[len(ms) // 2]
print(json.dumps(out))
"""


def ms_per_frame(
    model: Path | str, runtime: str, threads: int, iters: int, batches: tuple[int, ...] = (1, 4)
) -> dict[str, float]:
    """Median milliseconds per frame at each batch size, measured in a fresh process."""
    cmd = [sys.executable, "-c", CHILD, str(model), runtime, str(threads), str(iters)]
    res = subprocess.run([*cmd, ",".join(map(str, batches))], check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    configs = [(rt, t) for rt in ("ort", "openvino") for t in (1, 2)]
    runs: dict[str, list[dict[str, float]]] = {f"{rt}/{t}": [] for rt, t in configs}
    loads = []
    for _ in range(args.rounds):  # interleaved: every configuration once a round
        for rt, t in configs:
            loads.append(load())
            runs[f"{rt}/{t}"].append(ms_per_frame(args.model, rt, t, args.iters))
    loads.append(load())
    table = {k: {b: round(median(r[b] for r in v), 2) for b in ("1", "4")} for k, v in runs.items()}
    from rpol_edge.bench.runner import machine_record

    rec = {
        "date": date.today().isoformat(),
        "time": time.strftime("%H:%M UTC", time.gmtime()),
        "machine": machine_record(with_torch=False),  # CPU, the kernel-deciding flags, runtime versions
        "command": " ".join(sys.argv),
        "load_1min": {"min": min(loads), "max": max(loads), "each_run": [round(x, 2) for x in loads]},
        "ms_per_frame_median": table,
        "rounds": runs,
    }
    tmp = args.out.with_name(args.out.name + ".tmp")  # written whole or not at all
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    tmp.replace(args.out)
    for k, v in table.items():
        print(f"{k:12s} batch 1: {v['1']:6.2f} ms/frame   batch 4: {v['4']:6.2f} ms/frame")


if __name__ == "__main__":
    main()
