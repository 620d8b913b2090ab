"""The one prepared GPU run: torch CUDA plain vs CUDA graph, FP32 and FP16, against CPU FP32.

Records, on the raccoon test split (40 real photos):
* parity of every CUDA configuration against the CPU FP32 reference (max/mean |d score|, boxes
  identical, boxes at IoU >= 0.9), and of each graph against its plain twin;
* latency of ``runtime.infer`` (frames already pre-processed; copy in, forward, copy out)
  p50/p90/p99 at batch 1 and 8 for each configuration, and the graph-over-plain speedup;
* accuracy per configuration (time permitting) and, optionally, live FPS on a 640x480 MP4.

Every section runs in its own try/except: an error is recorded in the JSON and the run goes on.
The JSON is rewritten (atomically) after every section, so a run killed at its time limit still
leaves everything measured so far. Sections are skipped once ``--budget-s`` is spent.
GPU timings run before the CPU reference: PyTorch's CPU worker threads keep spinning after an
eager CPU forward and would steal cycles from the launch-bound GPU loop.

Usage (lent GPU machine; see README "CUDA graphs" for carrying the model, weights and data):
    python benchmarks/gpu_check.py --model .gpu/raccoon.rpol --root .gpu/raccoon --out $OUT/gpu_check.json
Dry run of every non-CUDA path here:
    python benchmarks/gpu_check.py --model m.rpol --root ../shared/data/raccoon --out /tmp/g.json \\
        --device cpu --iters 5 --warmup 1 --live-frames 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.artifact import write_text_atomic
from rpol_edge.compare import agreement, dataset_frames
from rpol_edge.inspect import read_meta
from rpol_edge.runtimes import Output, Runtime, open_runtime

SPEEDUP_TARGET = 2.5
"""CUDA graph over plain torch CUDA at batch 1 (issue 11)."""


class Check:
    """The JSON record and the clock: each section is a function run under ``section``."""

    def __init__(self, out: Path, budget_s: float) -> None:
        self.out = out
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + budget_s
        self.rec: dict[str, Any] = {"sections": {}, "errors": {}}

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def section(self, name: str, body: Callable[[], Any], need_s: float = 0.0) -> Any:
        """Run ``body``; its return value (JSON-able) goes under ``name``. Errors are recorded.
        A section that needs ``need_s`` > 0 seconds is skipped when less of the budget is left."""
        if need_s > 0 and self.left() < need_s:
            self.rec["sections"][name] = (
                f"skipped: {self.left():.0f} s of the budget left, needs ~{need_s:.0f}"
            )
            print(f"[{name}] skipped (budget)", flush=True)
            self.save()
            return None
        t = time.perf_counter()
        print(f"[{name}] ...", flush=True)
        try:
            value = body()
        except Exception as exc:  # noqa: BLE001 - recorded; the next section still runs
            self.rec["errors"][name] = f"{type(exc).__name__}: {exc}"
            self.rec["sections"][name] = "error"
            traceback.print_exc()
            value = None
        else:
            if value is not None and not isinstance(value, np.ndarray):  # data stays out of the record
                self.rec[name] = value
            self.rec["sections"][name] = f"ok in {time.perf_counter() - t:.1f} s"
        print(f"[{name}] {self.rec['sections'][name]}", flush=True)
        self.save()
        return value

    def save(self) -> None:
        self.rec["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        write_text_atomic(self.out, json.dumps(self.rec, indent=1, default=str))


def latency(rt: Runtime, frames: np.ndarray, batch: int, iters: int, warmup: int) -> dict[str, Any]:
    """``rt.infer`` wall time per batch (it returns host arrays, so the device is synchronized)."""
    n = len(frames)
    batches = [
        np.ascontiguousarray(frames[[(i * batch + j) % n for j in range(batch)]])
        for i in range(min(iters, 16))
    ]
    times = []
    for i in range(warmup + iters):
        x = batches[i % len(batches)]
        t = time.perf_counter()
        rt.infer(x)
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    ms = np.asarray(times)
    p50 = float(np.percentile(ms, 50))
    return {
        "runtime": rt.description,
        "batch": batch,
        "iters": iters,
        "ms_p50": round(p50, 3),
        "ms_p90": round(float(np.percentile(ms, 90)), 3),
        "ms_p99": round(float(np.percentile(ms, 99)), 3),
        "ms_mean": round(float(ms.mean()), 3),
        "images_per_s_p50": round(batch * 1e3 / p50, 1),
    }


def run_batches(rt: Runtime, frames: np.ndarray, batch: int = 8) -> Output:
    """All frames through ``rt`` in batches of ``batch`` (the last one partial: a padded graph)."""
    parts = [rt.infer(frames[s : s + batch]) for s in range(0, len(frames), batch)]
    return Output(np.concatenate([p.score for p in parts]), np.concatenate([p.mask for p in parts]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="raccoon data (VOC layout)")
    ap.add_argument("--out", type=Path, required=True, help="JSON record")
    ap.add_argument("--model", type=Path, help="fitted .rpol (fit on CUDA here when not given)")
    ap.add_argument("--weights", type=Path, help="backbone checkpoint, if its package is not installed")
    ap.add_argument("--device", default="cuda", help="cuda (the real check) or cpu (a dry run)")
    ap.add_argument("--input-size", type=int, default=448, help="only when fitting here")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--budget-s", type=float, default=240.0, help="stop starting sections after this")
    ap.add_argument("--live-frames", type=int, default=300, help="0: no live section")
    ap.add_argument("--limit", type=int, help="use only the first N test photos (quick dry runs)")
    args = ap.parse_args()
    check = Check(args.out, args.budget_s)
    rec = check.rec
    rec["argv"] = sys.argv[1:]
    workers = min(8, os.cpu_count() or 1)

    def env() -> dict[str, Any]:
        import torch

        info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version()}
        if args.device.startswith("cuda"):
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
            info["cudnn"] = torch.backends.cudnn.version()
        return info

    check.section("env", env)

    def model() -> str:
        if args.model is not None:
            read_meta(args.model)  # a clear error now, not in every section
            return str(args.model)
        from rpol_edge.fit import FitConfig, fit

        path = args.out.parent / "raccoon.rpol"
        cfg = FitConfig(
            "voc", args.root, "train", input_size=args.input_size, device=args.device, workers=workers
        )
        fit(cfg).artifact.save(path)
        return str(path)

    model_path = check.section("model", model)
    if model_path is None:
        return
    model_file = Path(model_path)
    meta = read_meta(model_file)
    frames = check.section(
        "frames", lambda: dataset_frames(meta, "voc", args.root, "test", workers=workers)[: args.limit]
    )
    if frames is None:
        return
    rec["n_frames"] = len(frames)
    outputs: dict[str, Output] = {}

    def reference() -> dict[str, Any]:
        with open_runtime(model_file, "torch", device="cpu", weights=args.weights) as rt:
            outputs["cpu_fp32"] = run_batches(rt, frames, 8)
            return {"runtime": rt.description}

    check.section("cpu_fp32_reference", reference)
    time.sleep(2.0)  # let PyTorch's CPU worker threads stop spinning before the launch-bound timings

    dev = args.device
    configs: dict[str, dict[str, Any]] = {
        "fp32_plain": {"precision": "fp32", "cuda_graph": False},
        "fp32_graph": {"precision": "fp32", "cuda_graph": True},
        "fp16_plain": {"precision": "fp16", "cuda_graph": False},
        "fp16_graph": {"precision": "fp16", "cuda_graph": True},
    }
    for name, opts in configs.items():

        def gpu_section(name: str = name, opts: dict[str, Any] = opts) -> dict[str, Any]:
            rt = open_runtime(model_file, "torch", device=dev, weights=args.weights, **opts)
            with rt:
                t = time.perf_counter()
                rt.infer(frames[:1])  # the first call captures the batch-1 graph
                first_ms = (time.perf_counter() - t) * 1e3
                outputs[name] = run_batches(rt, frames, 8)
                res: dict[str, Any] = {"first_call_ms": round(first_ms, 1)}
                res["latency"] = [latency(rt, frames, b, args.iters, args.warmup) for b in (1, 8)]
                res["runtime"] = rt.description
                res["graph_active"] = rt.description.endswith(" graph")
                res["graph_self_check_max_abs"] = getattr(rt, "graph_self_check", {})
            return res

        check.section(name, gpu_section, need_s=15)

    def parity() -> dict[str, Any]:
        pairs = [(n, "cpu_fp32") for n in configs] + [
            ("fp32_graph", "fp32_plain"),
            ("fp16_graph", "fp16_plain"),
            ("fp16_plain", "fp32_plain"),
        ]
        res = {}
        for a, b in pairs:
            if a in outputs and b in outputs:
                res[f"{a}_vs_{b}"] = agreement(outputs[a], outputs[b]).to_dict()
        return res

    check.section("parity", parity)

    def speedup() -> dict[str, Any]:
        res: dict[str, Any] = {}
        for prec in ("fp32", "fp16"):
            plain, graph = rec.get(f"{prec}_plain"), rec.get(f"{prec}_graph")
            if not plain or not graph:
                continue
            for i, b in enumerate((1, 8)):
                p, g = plain["latency"][i]["ms_p50"], graph["latency"][i]["ms_p50"]
                res[f"{prec}_batch{b}"] = {"plain_ms_p50": p, "graph_ms_p50": g, "speedup": round(p / g, 2)}
        if "fp32_batch1" in res:
            res["target_batch1_fp32"] = SPEEDUP_TARGET
            res["target_met"] = res["fp32_batch1"]["speedup"] >= SPEEDUP_TARGET
        return res

    check.section("speedup", speedup)

    def accuracy() -> dict[str, Any]:
        from rpol_edge.evaluate import evaluate

        res: dict[str, Any] = {}
        for name in ("fp32_graph", "fp16_graph"):
            try:  # one precision failing must not lose the other's numbers
                opts = configs[name]
                with open_runtime(model_file, "torch", device=dev, weights=args.weights, **opts) as rt:
                    m = evaluate(rt, "voc", args.root, "test", workers=workers).metrics
                    res[name] = {k: m[k] for k in ("maxboxacc", "maxboxacc_v2", "maxboxacc_v2_rpol")}
                    res[name]["runtime"] = rt.description
            except Exception as exc:  # noqa: BLE001 - recorded
                res[name] = f"{type(exc).__name__}: {exc}"
        return res

    check.section("accuracy", accuracy, need_s=30)

    if args.live_frames > 0:
        import live_fps  # benchmarks/ is on sys.path when this file is run as a script

        def live() -> dict[str, Any]:
            images = sorted((args.root / "JPEGImages").glob("*.jpg"))
            runs: dict[str, Any] = {}
            for label, graph, save in (
                ("plain", False, False),
                ("graph", True, False),
                ("plain_save", False, True),
                ("graph_save", True, True),
            ):
                try:  # one run failing must not lose the others
                    rt = open_runtime(model_file, "torch", device=dev, weights=args.weights, cuda_graph=graph)
                    runs[label] = live_fps.measure_in_process(rt, images, args.live_frames, save)
                except Exception as exc:  # noqa: BLE001 - recorded
                    runs[label] = f"{type(exc).__name__}: {exc}"
            return runs

        check.section("live", live, need_s=40)

    print(json.dumps({k: rec.get(k) for k in ("env", "sections", "errors", "speedup", "parity")}, indent=1))


if __name__ == "__main__":
    main()
