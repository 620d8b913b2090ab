"""One configuration of the GPU check in a fresh process: open the runtime, first call, outputs (or a
kernel profile). ``spawn`` runs it as ``python -m benchmarks.gpu.gpu_check --child JOB``."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.launch import module_command, repo_env
from rpol_edge.runtimes import Output, Runtime, open_runtime


def run_batches(rt: Runtime, frames: np.ndarray, batch: int = 8) -> Output:
    """All frames through ``rt`` in batches of ``batch`` (the last one partial: a padded graph)."""
    parts = [rt.infer(frames[s : s + batch]) for s in range(0, len(frames), batch)]
    return Output(np.concatenate([p.score for p in parts]), np.concatenate([p.mask for p in parts]))


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
            module_command("benchmarks.gpu.gpu_check", "--child", json.dumps(job)),
            capture_output=True, text=True, timeout=timeout_s, env=repo_env(),
        )  # fmt: skip
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"child rc={proc.returncode}: " + " | ".join(tail))
        return json.loads(out.read_text())
