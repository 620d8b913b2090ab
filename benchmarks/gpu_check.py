"""GPU checks in one run (for a lent CUDA machine): torch CUDA FP32 vs FP16 parity on real photos,
CPU vs CUDA parity, accuracy per precision, and latency rows. Writes JSON records.

Usage: python benchmarks/gpu_check.py --root DATA/raccoon --out results.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rpol_edge.bench import BenchConfig, parse_spec, run_bench
from rpol_edge.compare import agreement, dataset_frames
from rpol_edge.data import read_dataset
from rpol_edge.evaluate import evaluate
from rpol_edge.fit import FitConfig, fit
from rpol_edge.runtimes import infer_all, open_runtime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--input-size", type=int, default=448)
    args = ap.parse_args()
    rec: dict[str, object] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    model = args.out.parent / "raccoon.rpol"
    t0 = time.perf_counter()
    fit(
        FitConfig("voc", args.root, "train", input_size=args.input_size, device="cuda", workers=8)
    ).artifact.save(model)
    rec["fit_seconds_cuda"] = round(time.perf_counter() - t0, 2)

    samples = read_dataset("voc", args.root, "test")
    outs = {}
    for name, opts in {
        "cpu_fp32": {"device": "cpu"},
        "cuda_fp32": {"device": "cuda"},
        "cuda_fp16": {"device": "cuda", "precision": "fp16"},
    }.items():
        with open_runtime(model, "torch", **opts) as rt:
            frames = dataset_frames(rt.meta, "voc", args.root, "test", workers=8)
            outs[name] = infer_all(rt, frames)
            rec[f"eval_{name}"] = evaluate(rt, "voc", args.root, "test", workers=8).metrics
    # Latency: the one benchmark (reference pipeline, bare backbone, FP32 and FP16; own processes).
    cfg = BenchConfig(
        specs=[parse_spec(str(model)), parse_spec(f"{model}@precision=fp16")],
        images=[s.path for s in samples], batches=[1, 8], iters=50, warmup=10, device="cuda",
        work_dir=args.out.parent / "bench_work",
    )  # fmt: skip
    rec["bench"] = [r.to_dict() for r in run_bench(cfg)]
    rec["parity_cuda_fp32_vs_cpu_fp32"] = agreement(outs["cuda_fp32"], outs["cpu_fp32"]).to_dict()
    rec["parity_cuda_fp16_vs_cuda_fp32"] = agreement(outs["cuda_fp16"], outs["cuda_fp32"]).to_dict()
    args.out.write_text(json.dumps(rec, indent=1, default=str))
    print(json.dumps({k: v for k, v in rec.items() if k.startswith(("parity", "gpu", "fit"))}, indent=1))


if __name__ == "__main__":
    main()
