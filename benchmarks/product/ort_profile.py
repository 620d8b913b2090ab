"""Where an ONNX graph's time goes in ONNX Runtime: per operator type and the slowest nodes.

Runs the graph on random frames of its input shape (batch 1) with ONNX Runtime's profiler on,
then sums the profiler's kernel times per operator type and per node, per run. Torch-free.

Usage: python -m benchmarks.product.ort_profile exp/model.int8.onnx [--threads 2] [--runs 40] [--top 10]
                                        [--json-out FILE]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from rpol_edge.core.files import write_text_atomic

ORT_TYPES = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32, "tensor(float16)": np.float16}


def profile(path: Path, threads: int, runs: int, warmup: int = 10) -> dict:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = str(Path(tmp) / "prof")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        shape = [1 if not isinstance(d, int) else d for d in inp.shape]
        dtype = ORT_TYPES[inp.type]
        x = np.random.default_rng(0).integers(0, 256, shape).astype(dtype)
        for _ in range(warmup):
            sess.run(None, {inp.name: x})
        ms = []
        for _ in range(runs):
            t = time.perf_counter()
            sess.run(None, {inp.name: x})
            ms.append((time.perf_counter() - t) * 1e3)
        events = json.loads(Path(sess.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    by_node: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
            by_node[e["name"].removesuffix("_kernel_time")] += e["dur"]
    calls = runs + warmup  # the profiler records the warm-up runs too
    return {
        "model": str(path),
        "threads": threads,
        "runs": runs,
        "run_ms_p50": round(float(np.median(ms)), 3),
        "kernel_ms_per_run": round(sum(by_op.values()) / calls / 1e3, 3),
        "ops_ms_per_run": {k: round(v / calls / 1e3, 3) for k, v in by_op.most_common()},
        "nodes_ms_per_run": {k: round(v / calls / 1e3, 3) for k, v in by_node.most_common()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    rec = profile(args.model, args.threads, args.runs)
    p50, kernels = rec["run_ms_p50"], rec["kernel_ms_per_run"]
    print(f"{args.model}: run p50 {p50:.2f} ms, kernels {kernels:.2f} ms per run")
    for op, v in list(rec["ops_ms_per_run"].items())[: args.top]:
        print(f"  {op:24s} {v:7.3f} ms")
    print("  slowest nodes:")
    for node, v in list(rec["nodes_ms_per_run"].items())[: args.top]:
        print(f"  {node[:70]:70s} {v:7.3f} ms")
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
