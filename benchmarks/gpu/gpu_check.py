"""The one prepared GPU run: torch CUDA plain vs CUDA graph (and what the graph runtime adds:
BatchNorm folding, cuDNN autotuning), FP32 and FP16, against CPU FP32.

The timings are `rpol-edge bench`'s (``rpol_edge.bench``): every configuration is a bench row
(``MODEL@runtime=torch,device=cuda,cuda_graph=...``) timed in its OWN process per batch (1 and 8),
p50/p90/p99 per stage, on the raccoon test photos; ``--rounds`` rounds, configurations interleaved
(order reversed every other round), one section per configuration and round so a run cut short
keeps what it measured; speed-ups are the median of per-round ratios of the inference stage's p50,
with their min-max. What the bench does not do is done here, on the same 40 test photos:
* parity of every configuration against the CPU FP32 reference (its own process too): max/mean
  |d score|, boxes identical, boxes at IoU >= 0.9; and of each graph against its plain twin;
* a kernel profile (torch.profiler, CUDA activity) of one eager forward per configuration named in
  ``PROFILE``: kernels per forward and the GPU time they add up to, the top kernels;
* accuracy per default configuration and, optionally, live FPS on a 640x480 MP4.

Every section runs in its own try/except: an error is recorded in the JSON and the run goes on.
The JSON is rewritten (atomically) after every section, so a run killed at its time limit still
leaves everything measured so far. Sections are skipped once ``--budget-s`` is spent.

Usage (lent GPU machine; see docs/runtimes.md for carrying the model, weights and data):
    python -m benchmarks.gpu.gpu_check --model .gpu/raccoon.rpol --root .gpu/raccoon --out $OUT/gpu_check.json
Dry run of every non-CUDA path here:
    python -m benchmarks.gpu.gpu_check --model m.rpol --root ../shared/data/raccoon --out /tmp/g.json \\
        --device cpu --iters 5 --warmup 1 --live-frames 20 --limit 8 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.bench.runner import BenchConfig, run_bench
from rpol_edge.bench.spec import Spec
from rpol_edge.bench.stats import Row, interleaved, paired_ratio
from rpol_edge.core.files import write_text_atomic
from rpol_edge.core.model_file import read_meta
from rpol_edge.evaluate.compare import agreement, dataset_frames
from rpol_edge.runtimes import Output, Runtime, open_runtime

SPEEDUP_TARGET = 2.5
"""CUDA graph over plain torch CUDA at batch 1."""

PLAIN = {"cuda_graph": False, "fold_bn": False, "cudnn_benchmark": False}
"""The plain torch CUDA runtime the target is measured against: eager, as it was before graphs."""

GRAPH = {**PLAIN, "cuda_graph": True}
CONFIGS: dict[str, dict[str, Any]] = {
    "fp32_plain": {"precision": "fp32", **PLAIN},
    "fp32_graph_only": {"precision": "fp32", **GRAPH},
    "fp32_graph_benchmark": {"precision": "fp32", **GRAPH, "cudnn_benchmark": True},
    "fp32_graph_fold": {"precision": "fp32", **GRAPH, "fold_bn": True},
    "fp32_graph_fold_benchmark": {"precision": "fp32", **GRAPH, "fold_bn": True, "cudnn_benchmark": True},
    "fp32_eager_fold_benchmark": {"precision": "fp32", **PLAIN, "fold_bn": True, "cudnn_benchmark": True},
    "fp16_plain": {"precision": "fp16", **PLAIN},
    "fp16_graph_fold": {"precision": "fp16", **GRAPH, "fold_bn": True},
    "fp16_graph_fold_benchmark": {"precision": "fp16", **GRAPH, "fold_bn": True, "cudnn_benchmark": True},
}
"""Name -> runtime options, every option spelled out (a later change of the runtime's defaults
does not change what a name measured)."""

DEFAULTS = {"fp32": "fp32_graph_fold", "fp16": "fp16_graph_fold"}
"""What ``open_runtime(model, device="cuda", precision=...)`` does with no other option."""

PROFILE = ("fp32_plain", "fp32_graph_fold", "fp16_graph_fold")
"""Configurations whose eager forward is profiled kernel by kernel (graphs replay the same kernels)."""


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


def run_batches(rt: Runtime, frames: np.ndarray, batch: int = 8) -> Output:
    """All frames through ``rt`` in batches of ``batch`` (the last one partial: a padded graph)."""
    parts = [rt.infer(frames[s : s + batch]) for s in range(0, len(frames), batch)]
    return Output(np.concatenate([p.score for p in parts]), np.concatenate([p.mask for p in parts]))


# ----------------------------------------------------------------------------- child processes


def child(job: dict[str, Any]) -> dict[str, Any]:
    """One configuration in this fresh process: open, first call, outputs (or a kernel profile)."""
    with np.load(job["frames"]) as z:
        frames = z["frames"]
    opts = dict(job["options"])
    res: dict[str, Any] = {}
    rt = open_runtime(Path(job["model"]), "torch", device=job["device"], weights=job["weights"], **opts)
    with rt:
        t = time.perf_counter()
        rt.infer(frames[:1])  # the first call captures the batch-1 graph (and autotunes cuDNN)
        res["first_call_ms"] = round((time.perf_counter() - t) * 1e3, 1)
        if job.get("outputs"):  # batches of 8 (what parity compares) and of 1 (a second shape)
            out, one = run_batches(rt, frames, 8), run_batches(rt, frames, 1)
            np.savez(job["outputs"], score=out.score, mask=out.mask, score_b1=one.score, mask_b1=one.mask)
        if job.get("profile"):
            res["profile"] = profile(rt, frames[:1])
        res["runtime"] = rt.description
        res["graph_active"] = bool(getattr(rt, "cuda_graph", False)) and job["device"].startswith("cuda")
        res["graph_self_check_max_abs"] = getattr(rt, "graph_self_check", {})
        res["batchnorms_folded"] = getattr(rt, "folded", 0)
    return res


def profile(rt: Runtime, x: np.ndarray, forwards: int = 10) -> dict[str, Any]:
    """Kernels of ``forwards`` calls (CUDA activity): per forward, how many and their summed time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for _ in range(3):
        rt.infer(x)
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(forwards):
            rt.infer(x)
    kernels = []
    for e in prof.key_averages():
        us = float(getattr(e, "device_time_total", 0.0) or getattr(e, "cuda_time_total", 0.0))
        if us > 0:
            kernels.append({"name": e.key[:120], "count": e.count / forwards, "us": round(us / forwards, 2)})
    kernels.sort(key=lambda k: -k["us"])
    return {
        "kernels_per_forward": round(sum(k["count"] for k in kernels), 1),
        "gpu_us_per_forward": round(sum(k["us"] for k in kernels), 1),
        "top": kernels[:15],
    }


def spawn(job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run ``child(job)`` in a new Python process; its JSON result (or the error it died with)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        job = {**job, "result": str(out)}
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(job)],
            capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"child rc={proc.returncode}: " + " | ".join(tail))
        return json.loads(out.read_text())


def worst_images(a: Output, b: Output, k: int = 3) -> list[dict[str, Any]]:
    """The ``k`` images whose maps differ most: index, max and mean |d score|, differing mask pixels."""
    d = np.abs(a.score.astype(np.float64) - b.score.astype(np.float64)).reshape(len(a.score), -1)
    order = np.argsort(-d.max(axis=1))[:k]
    masks = (a.mask != b.mask).reshape(len(a.mask), -1).sum(axis=1)
    return [
        {"image": int(i), "max": float(d[i].max()), "mean": float(d[i].mean()), "mask_pixels": int(masks[i])}
        for i in order
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, help="raccoon data (VOC layout)")
    ap.add_argument("--out", type=Path, help="JSON record")
    ap.add_argument("--model", type=Path, help="fitted .rpol (fit on CUDA here when not given)")
    ap.add_argument("--weights", type=Path, help="backbone checkpoint, if its package is not installed")
    ap.add_argument("--device", default="cuda", help="cuda (the real check) or cpu (a dry run)")
    ap.add_argument("--input-size", type=int, default=448, help="only when fitting here")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2, help="processes per configuration, interleaved")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names from CONFIGS")
    ap.add_argument("--budget-s", type=float, default=240.0, help="stop starting sections after this")
    ap.add_argument("--live-frames", type=int, default=300, help="0: no live section")
    ap.add_argument("--limit", type=int, help="use only the first N test photos (quick dry runs)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        job = json.loads(args.child)
        Path(job["result"]).write_text(json.dumps(child(job), default=str))
        return
    if args.root is None or args.out is None:
        ap.error("--root and --out are required")
    check = Check(args.out, args.budget_s)
    rec = check.rec
    rec["argv"] = sys.argv[1:]
    workers = min(8, os.cpu_count() or 1)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown --configs {unknown}: choose from {list(CONFIGS)}")
    rec["configs"] = {n: CONFIGS[n] for n in names}

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
        from rpol_edge.fitting.fitter import FitConfig, fit

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
    scratch = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    frames_file = scratch / "frames.npz"

    def frames_section() -> dict[str, Any]:
        frames = dataset_frames(meta, "voc", args.root, "test", workers=workers)[: args.limit]
        np.savez(frames_file, frames=frames)
        return {"n_frames": len(frames)}

    if check.section("frames", frames_section) is None:
        return
    base_job: dict[str, Any] = {
        "model": str(model_file), "weights": str(args.weights) if args.weights else None,
        "frames": str(frames_file),
    }  # fmt: skip
    outputs: dict[str, Path] = {}

    def reference() -> dict[str, Any]:
        path = scratch / "cpu_fp32.npz"
        job = {**base_job, "device": "cpu", "options": {"precision": "fp32", "fold_bn": False}}
        job["outputs"] = str(path)
        res = spawn(job, timeout_s=180)
        outputs["cpu_fp32"] = path
        return {"runtime": res["runtime"]}

    check.section("cpu_fp32_reference", reference)

    def outputs_section(name: str) -> dict[str, Any]:
        path = scratch / f"{name}.npz"
        res = spawn({**base_job, "device": args.device, "options": CONFIGS[name], "outputs": str(path)}, 120)
        outputs[name] = path
        rec.setdefault("configs_opened", {})[name] = res
        return {"runtime": res["runtime"], "first_call_ms": res["first_call_ms"]}

    for name in names:
        check.section(f"outputs {name}", lambda name=name: outputs_section(name), need_s=15)

    from rpol_edge.data import read_dataset

    photos = [x.path for x in read_dataset("voc", args.root, "test")][: args.limit]
    timed: dict[str, dict[int, dict[int, Row]]] = {n: {} for n in names}
    """name -> round -> batch -> the bench row (a round that failed is absent, not shifted)."""

    for r in range(max(1, args.rounds)):
        for name in interleaved(names, r):

            def timing(name: str = name, r: int = r) -> dict[str, Any]:
                """One bench row (own process per batch), so a run cut short keeps every round so far."""
                opts = {"runtime": "torch", "device": args.device, "weights": args.weights, **CONFIGS[name]}
                cfg = BenchConfig(
                    [Spec("model", model_file, opts, label=name)], photos, batches=[1, 8], iters=args.iters,
                    warmup=args.warmup, device=args.device, reference=False, backbone=False,
                    work_dir=scratch / "bench",
                )  # fmt: skip
                rows = run_bench(cfg)
                bad = [row.reason for row in rows if not row.available]
                if bad:
                    raise RuntimeError(bad[0])
                timed[name][r] = {row.batch: row for row in rows}
                rec.setdefault("configs_measured", {}).setdefault(name, []).extend(
                    row.to_dict() for row in rows
                )
                return {"round": r + 1, "infer_p50_ms": [row.ms["infer"]["p50"] for row in rows]}

            check.section(f"{name}#{r + 1}", timing, need_s=15)

    def parity() -> dict[str, Any]:
        from rpol_edge.runtimes import Output as Out

        def load(name: str, suffix: str = "") -> Out:
            with np.load(outputs[name]) as z:
                key = "score" + suffix if "score" + suffix in z else "score"
                return Out(z[key], z[key.replace("score", "mask")])

        pairs = [(n, "cpu_fp32") for n in names]
        pairs += [(n, "fp32_plain") for n in names if n.startswith("fp32") and n != "fp32_plain"]
        pairs += [(n, "fp16_plain") for n in names if n.startswith("fp16") and n != "fp16_plain"]
        res = {}
        for a, b in pairs:
            if a in outputs and b in outputs:
                x, y = load(a), load(b)
                res[f"{a}_vs_{b}"] = {**agreement(x, y).to_dict(), "worst": worst_images(x, y)}
        for n in names:  # the same configuration at batch 1: another shape, maybe other kernels
            if n in outputs and "cpu_fp32" in outputs:
                x, y = load(n, "_b1"), load("cpu_fp32")
                res[f"{n}_batch1_vs_cpu_fp32"] = {**agreement(x, y).to_dict(), "worst": worst_images(x, y)}
        return res

    check.section("parity", parity)

    def speedup() -> dict[str, Any]:
        """Every configuration over fp32_plain (the baseline), per batch, on the inference stage
        (what the target is set for: host pre/post are the same in every configuration), rounds
        paired: the median of per-round ratios of infer p50 and their min-max."""
        res: dict[str, Any] = {}
        plain = timed.get("fp32_plain") or {}
        for b in (1, 8):
            for name in names:
                both = sorted(set(plain) & set(timed[name]))  # rounds that both completed
                base = [plain[r][b].ms["infer"]["p50"] for r in both]
                runs = [timed[name][r][b].ms["infer"]["p50"] for r in both]
                ratio = paired_ratio(base, runs)
                if ratio is not None and name != "fp32_plain":
                    res[f"{name}_batch{b}"] = {
                        "rounds": [r + 1 for r in both], "plain_infer_p50_ms": base, "infer_p50_ms": runs,
                        "speedup": ratio[0], "range": ratio[1],
                    }  # fmt: skip
        head = res.get(f"{DEFAULTS['fp32']}_batch1")
        if head:
            res["target_batch1_fp32"] = SPEEDUP_TARGET
            res["target_met"] = head["speedup"] >= SPEEDUP_TARGET
            res["target_met_every_round"] = head["range"][0] >= SPEEDUP_TARGET
        return res

    check.section("speedup", speedup)

    def profiles() -> dict[str, Any]:
        res: dict[str, Any] = {}
        for name in PROFILE:
            if name not in names:
                continue
            opts = {**CONFIGS[name], "cuda_graph": False}
            try:
                res[name] = spawn({**base_job, "device": args.device, "options": opts, "profile": True}, 120)
            except Exception as exc:  # noqa: BLE001 - recorded; the next profile still runs
                res[name] = f"{type(exc).__name__}: {exc}"
        return res

    if args.device.startswith("cuda"):
        check.section("profile", profiles, need_s=30)

    def accuracy() -> dict[str, Any]:
        from rpol_edge.evaluate.evaluation import evaluate

        res: dict[str, Any] = {}
        for name in DEFAULTS.values():
            try:  # one precision failing must not lose the other's numbers
                opts = CONFIGS[name]
                with open_runtime(
                    model_file, "torch", device=args.device, weights=args.weights, **opts
                ) as rt:
                    m = evaluate(rt, "voc", args.root, "test", workers=workers).metrics
                    res[name] = {k: m[k] for k in ("maxboxacc", "maxboxacc_v2", "maxboxacc_v2_rpol")}
                    res[name]["runtime"] = rt.description
            except Exception as exc:  # noqa: BLE001 - recorded
                res[name] = f"{type(exc).__name__}: {exc}"
        return res

    check.section("accuracy", accuracy, need_s=30)

    if args.live_frames > 0:
        from benchmarks.product import (
            live_fps,  # benchmarks/ is on sys.path when this file is run as a script
        )

        def live() -> dict[str, Any]:
            images = sorted((args.root / "JPEGImages").glob("*.jpg"))
            runs: dict[str, Any] = {}
            for label, opts, save in (
                ("default", CONFIGS[DEFAULTS["fp32"]], False),
                ("default_save", CONFIGS[DEFAULTS["fp32"]], True),
                ("plain", PLAIN, False),
            ):
                try:  # one run failing must not lose the others
                    rt = open_runtime(model_file, "torch", device=args.device, weights=args.weights, **opts)
                    runs[label] = live_fps.measure_in_process(rt, images, args.live_frames, save)
                except Exception as exc:  # noqa: BLE001 - recorded
                    runs[label] = f"{type(exc).__name__}: {exc}"
            return runs

        check.section("live", live, need_s=40)

    summary = {k: rec.get(k) for k in ("env", "sections", "errors", "parity")}
    summary["speedup_batch1"] = {
        k: {x: v[x] for x in ("speedup", "range") if x in v}
        for k, v in (rec.get("speedup") or {}).items()
        if k.endswith("batch1")
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
