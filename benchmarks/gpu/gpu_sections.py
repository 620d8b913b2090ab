"""The sections of the GPU check, in the order it runs them; each returns what goes in the record
under its name (``gpu_check`` runs each under ``Check.section``)."""

from __future__ import annotations

import argparse
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu.gpu_child import spawn
from benchmarks.gpu.gpu_configs import CONFIGS, DEFAULTS, PLAIN, PROFILE, SPEEDUP_TARGET
from rpol_edge.bench.runner import BenchConfig, run_bench
from rpol_edge.bench.spec import Spec
from rpol_edge.bench.stats import Row, paired_ratio
from rpol_edge.core.model_file import read_meta
from rpol_edge.evaluate.compare import agreement, dataset_frames
from rpol_edge.runtimes import Output, open_runtime


@dataclass
class GpuRun:
    """What the sections share: the options, the configurations chosen, and what earlier sections made."""

    args: argparse.Namespace
    names: list[str]
    workers: int
    rec: dict[str, Any]
    model_file: Path = Path()
    scratch: Path = Path()
    outputs: dict[str, Path] = field(default_factory=dict)
    """Configuration (and ``cpu_fp32``) -> its saved outputs."""
    timed: dict[str, dict[int, dict[int, Row]]] = field(default_factory=dict)
    """name -> round -> batch -> the bench row (a round that failed is absent, not shifted)."""

    @property
    def frames_file(self) -> Path:
        return self.scratch / "frames.npz"

    def base_job(self) -> dict[str, Any]:
        weights = self.args.weights
        return {"model": str(self.model_file), "weights": str(weights) if weights else None,
                "frames": str(self.frames_file)}  # fmt: skip


def env_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version()}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def model_section(args: argparse.Namespace, workers: int) -> str:
    """The model given (read once: a clear error now, not in every section), else one fitted here."""
    if args.model is not None:
        read_meta(args.model)
        return str(args.model)
    from rpol_edge.fitting.fitter import FitConfig, fit

    path = args.out.parent / "raccoon.rpol"
    cfg = FitConfig(
        "voc", args.root, "train", input_size=args.input_size, device=args.device, workers=workers
    )
    fit(cfg).artifact.save(path)
    return str(path)


def frames_section(run: GpuRun) -> dict[str, Any]:
    meta = read_meta(run.model_file)
    frames = dataset_frames(meta, "voc", run.args.root, "test", workers=run.workers)[: run.args.limit]
    np.savez(run.frames_file, frames=frames)
    return {"n_frames": len(frames)}


def reference(run: GpuRun) -> dict[str, Any]:
    path = run.scratch / "cpu_fp32.npz"
    job = {**run.base_job(), "device": "cpu", "options": {"precision": "fp32", "fold_bn": False}}
    job["outputs"] = str(path)
    res = spawn(job, timeout_s=180)
    run.outputs["cpu_fp32"] = path
    return {"runtime": res["runtime"]}


def outputs_section(run: GpuRun, name: str) -> dict[str, Any]:
    path = run.scratch / f"{name}.npz"
    job = {**run.base_job(), "device": run.args.device, "options": CONFIGS[name], "outputs": str(path)}
    res = spawn(job, 120)
    run.outputs[name] = path
    run.rec.setdefault("configs_opened", {})[name] = res
    return {"runtime": res["runtime"], "first_call_ms": res["first_call_ms"]}


def timing(run: GpuRun, photos: list[Path], name: str, r: int) -> dict[str, Any]:
    """One bench row (own process per batch), so a run cut short keeps every round so far."""
    args = run.args
    opts = {"runtime": "torch", "device": args.device, "weights": args.weights, **CONFIGS[name]}
    cfg = BenchConfig(
        [Spec("model", run.model_file, opts, label=name)], photos, batches=[1, 8], iters=args.iters,
        warmup=args.warmup, device=args.device, reference=False, backbone=False,
        work_dir=run.scratch / "bench",
    )  # fmt: skip
    rows = run_bench(cfg)
    bad = [row.reason for row in rows if not row.available]
    if bad:
        raise RuntimeError(bad[0])
    run.timed.setdefault(name, {})[r] = {row.batch: row for row in rows}
    run.rec.setdefault("configs_measured", {}).setdefault(name, []).extend(row.to_dict() for row in rows)
    return {"round": r + 1, "infer_p50_ms": [row.ms["infer"]["p50"] for row in rows]}


def worst_images(a: Output, b: Output, k: int = 3) -> list[dict[str, Any]]:
    """The ``k`` images whose maps differ most: index, max and mean |d score|, differing mask pixels."""
    d = np.abs(a.score.astype(np.float64) - b.score.astype(np.float64)).reshape(len(a.score), -1)
    order = np.argsort(-d.max(axis=1))[:k]
    masks = (a.mask != b.mask).reshape(len(a.mask), -1).sum(axis=1)
    return [
        {"image": int(i), "max": float(d[i].max()), "mean": float(d[i].mean()), "mask_pixels": int(masks[i])}
        for i in order
    ]


def parity(run: GpuRun) -> dict[str, Any]:
    outputs, names = run.outputs, run.names

    def load(name: str, suffix: str = "") -> Output:
        with np.load(outputs[name]) as z:
            key = "score" + suffix if "score" + suffix in z else "score"
            return Output(z[key], z[key.replace("score", "mask")])

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


def speedup(run: GpuRun) -> dict[str, Any]:
    """Every configuration over fp32_plain (the baseline), per batch, on the inference stage
    (what the target is set for: host pre/post are the same in every configuration), rounds
    paired: the median of per-round ratios of infer p50 and their min-max."""
    res: dict[str, Any] = {}
    timed = run.timed
    plain = timed.get("fp32_plain") or {}
    for b in (1, 8):
        for name in run.names:
            mine = timed.get(name, {})
            both = sorted(set(plain) & set(mine))  # rounds that both completed
            base = [plain[r][b].ms["infer"]["p50"] for r in both]
            runs = [mine[r][b].ms["infer"]["p50"] for r in both]
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


def profiles(run: GpuRun) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for name in PROFILE:
        if name not in run.names:
            continue
        opts = {**CONFIGS[name], "cuda_graph": False}
        try:
            res[name] = spawn(
                {**run.base_job(), "device": run.args.device, "options": opts, "profile": True}, 120
            )
        except Exception as exc:  # noqa: BLE001 - recorded; the next profile still runs
            res[name] = f"{type(exc).__name__}: {exc}"
    return res


def accuracy(run: GpuRun) -> dict[str, Any]:
    from rpol_edge.evaluate.evaluation import evaluate

    args = run.args
    res: dict[str, Any] = {}
    for name in DEFAULTS.values():
        try:  # one precision failing must not lose the other's numbers
            opts = CONFIGS[name]
            with open_runtime(
                run.model_file, "torch", device=args.device, weights=args.weights, **opts
            ) as rt:
                m = evaluate(rt, "voc", args.root, "test", workers=run.workers).metrics
                res[name] = {k: m[k] for k in ("maxboxacc", "maxboxacc_v2", "maxboxacc_v2_rpol")}
                res[name]["runtime"] = rt.description
        except Exception as exc:  # noqa: BLE001 - recorded
            res[name] = f"{type(exc).__name__}: {exc}"
    return res


def live(run: GpuRun) -> dict[str, Any]:
    from benchmarks.product import live_fps

    args = run.args
    images = sorted((args.root / "JPEGImages").glob("*.jpg"))
    runs: dict[str, Any] = {}
    for label, opts, save in (
        ("default", CONFIGS[DEFAULTS["fp32"]], False),
        ("default_save", CONFIGS[DEFAULTS["fp32"]], True),
        ("plain", PLAIN, False),
    ):
        try:  # one run failing must not lose the others
            rt = open_runtime(run.model_file, "torch", device=args.device, weights=args.weights, **opts)
            runs[label] = live_fps.measure_in_process(rt, images, args.live_frames, save)
        except Exception as exc:  # noqa: BLE001 - recorded
            runs[label] = f"{type(exc).__name__}: {exc}"
    return runs
