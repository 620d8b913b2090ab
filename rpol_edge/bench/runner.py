"""The one benchmark: every runtime x precision x batch, with latency per stage, throughput, size,
peak memory and (optionally) accuracy/parity with the reference pipeline.

Measured the same way here and on a Jetson:
- each row runs in its OWN process (spawned): PyTorch's spinning OpenMP workers made ONNX Runtime
  about 1.7x slower when both ran in one process (measured on a 2-core VM, see the benchmarks page);
- warm-up iterations first; devices are synchronized before a clock is read (runtimes return host
  arrays; the bare torch backbone calls ``torch.cuda.synchronize``);
- real images, decoded once, pre-processed in the loop by the shared code.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.bench.pipelines import (
    backbone_onnx_fits,
    evaluate_pipeline,
    export_backbone_onnx,
    open_pipeline,
)
from rpol_edge.bench.spec import STAGES, Spec
from rpol_edge.bench.stats import (
    SAMPLES,
    Row,
    interleaved,
    merge_rounds,
    paired_speedup,
    peak_rss_mb,
    summarize,
)


def run_row(job: dict[str, Any]) -> dict[str, Any]:
    """Child-process entry: time one pipeline at one batch; returns a Row dict (or its reason)."""
    spec: Spec = job["spec"]
    batch = int(job["batch"])
    row = Row(job["label"], spec.kind, spec.runtime, "", batch)
    try:
        p = open_pipeline(spec, batch)
    except Exception as exc:  # a runtime that cannot be created here is a row with its reason
        row.available, row.reason = False, f"{exc.__class__.__name__}: {exc}".splitlines()[0]
        return row.to_dict()
    try:
        from rpol_edge.data.images import load_rgb

        row.precision = p.precision if spec.kind != "backbone" else "fp32"
        row.device = p.device
        row.artifact_mb = p.weights_mb
        images = [load_rgb(Path(f)) for f in job["images"]]
        if p.frame_size:
            import cv2

            images = [cv2.resize(img, p.frame_size, interpolation=cv2.INTER_AREA) for img in images]
            if not p.images_rgb:
                images = [np.ascontiguousarray(img[..., ::-1]) for img in images]
        # Only torch rows read torch's CUDA memory counter: importing torch into an ORT or TensorRT
        # row would put a second CUDA runtime in the timed process (and fail where torch is absent).
        torch_cuda = p.cuda and spec.runtime == "torch"
        if torch_cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        times: dict[str, list[float]] = {s: [] for s in STAGES}
        warmup, iters = int(job["warmup"]), int(job["iters"])
        for it in range(warmup + iters):
            chunk = [images[(it * batch + j) % len(images)] for j in range(batch)]
            t0 = time.perf_counter()
            x = p.pre(chunk)
            t1 = time.perf_counter()
            y = p.infer(x)
            t2 = time.perf_counter()
            p.post(y)
            t3 = time.perf_counter()
            if it >= warmup:
                times["pre"].append(t1 - t0)
                times["infer"].append(t2 - t1)
                times["post"].append(t3 - t2)
        row.ms, row.throughput = summarize(times, batch)
        row.iters = iters
        row.round_total_p50 = [row.ms["total"]["p50"]]
        row.peak_rss_mb = peak_rss_mb()
        if torch_cuda:
            import torch

            row.peak_cuda_mb = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        # Eval feeds K x K crops of the labelled split; a raw-frame graph takes whole frames.
        if job.get("eval") and p.outputs is not None and not p.frame_size:
            row.accuracy = evaluate_pipeline(p, job["eval"], Path(job["maps"]) if job.get("maps") else None)
    except Exception as exc:
        row.available, row.reason = False, f"{exc.__class__.__name__}: {exc}".splitlines()[0]
    finally:
        p.close()
    data = row.to_dict()
    if row.available:
        data[SAMPLES] = {s: [round(t, 7) for t in v] for s, v in times.items()}
    return data


@dataclass
class BenchConfig:
    specs: list[Spec]
    images: list[Path]
    batches: list[int] = field(default_factory=lambda: [1])
    iters: int = 30
    warmup: int = 5
    device: str = "auto"
    threads: int | None = None
    reference: bool = True
    backbone: bool = True
    work_dir: Path = Path("bench_work")
    eval_data: str = ""
    eval_root: Path | None = None
    eval_split: str = "test"
    rounds: int = 1
    """Every row is timed this many times, each time in a new process, rows interleaved (order
    reversed every other round) so a machine that drifts hits all rows alike."""


def _size_mb(path: Path) -> float:
    return round(path.stat().st_size / 2**20, 2) if path.is_file() else 0.0


def plan_rows(cfg: BenchConfig) -> list[tuple[Spec, str]]:
    """Every (spec, label) to time: reference and bare backbones first, then the given specs."""
    from rpol_edge.runtimes import RUNTIMES, resolve_device

    rows: list[tuple[Spec, str]] = []
    rpol = next((s.path for s in cfg.specs if s.path.suffix == ".rpol"), None)
    # Resolving "auto" for torch probes CUDA through torch: only when there are torch rows, so a
    # bench of exported graphs alone never imports torch.
    common: dict[str, Any] = {"device": resolve_device(RUNTIMES["torch"], cfg.device) if rpol else cfg.device}
    if cfg.threads:
        common["threads"] = cfg.threads
    if rpol is not None and cfg.reference:
        rows.append((Spec("reference", rpol, dict(common)), "reference pipeline"))
    if rpol is not None and cfg.backbone:
        rows.append((Spec("backbone", rpol, dict(common)), "bare backbone, torch"))
        if any(s.runtime == "ort" for s in cfg.specs):
            # Named by the fitted backbone's weights, so a cache from another model is never reused.
            from rpol_edge.core.model_file import read_meta

            onnx_path = cfg.work_dir / read_meta(rpol).weights_sha256[:12] / f"{rpol.stem}.backbone.onnx"
            ort_dev = resolve_device(RUNTIMES["ort"], cfg.device)
            spec = Spec(
                "backbone", rpol, {**common, "runtime": "ort", "device": ort_dev, "onnx": str(onnx_path)}
            )
            rows.append((spec, "bare backbone, ort"))
    for s in cfg.specs:
        opts = dict(s.options)
        if s.runtime in ("torch", "ort"):
            opts.setdefault("device", cfg.device)
            if cfg.threads:
                opts.setdefault("threads", cfg.threads)
        rows.append((Spec(s.kind, s.path, opts, s.label), s.label))
    return rows


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> list[Row]:
    """Time every planned row at every batch, each in a fresh spawned process, in sequence."""
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    eval_args: dict[str, Any] | None = None
    planned = plan_rows(cfg)
    for spec, _ in planned:
        if spec.kind == "backbone" and "onnx" in spec.options:
            batch = (1, 1, 1) if cfg.batches == [1] else (1, max(cfg.batches), max(cfg.batches))
            path = Path(spec.options["onnx"])
            if not backbone_onnx_fits(path, batch):  # a cached graph of an earlier --batch is refreshed
                export_backbone_onnx(spec.path, path, batch)
    if cfg.eval_data and cfg.eval_root:
        from rpol_edge.core.model_file import read_meta

        meta = read_meta(next(s.path for s in cfg.specs))
        eval_args = {
            "data": cfg.eval_data, "root": str(cfg.eval_root), "split": cfg.eval_split,
            "threshold": meta.threshold, "resize": meta.resize_size,
        }  # fmt: skip
    ctx = get_context("spawn")
    parts: dict[tuple[int, int], list[dict[str, Any]]] = {}
    evaluated: set[tuple[int, int]] = set()
    for r in range(max(1, cfg.rounds)):
        for i, (spec, label) in interleaved(list(enumerate(planned)), r):
            for n in cfg.batches:
                if progress:
                    progress(
                        f"{label} batch {n}" + (f", round {r + 1}/{cfg.rounds}" if cfg.rounds > 1 else "")
                    )
                first_pass = r == 0 and n == cfg.batches[0]
                evaluate = eval_args is not None and first_pass and spec.kind != "backbone"
                scratch = cfg.work_dir / f"maps_{i}_{n}.npz"
                if evaluate:
                    scratch.unlink(missing_ok=True)  # never an earlier run's maps
                    evaluated.add((i, n))
                job: dict[str, Any] = {
                    "spec": spec, "label": label, "batch": n, "images": [str(p) for p in cfg.images],
                    "iters": cfg.iters, "warmup": cfg.warmup, "eval": eval_args if evaluate else None,
                    "maps": str(scratch) if evaluate else None,
                }  # fmt: skip
                with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                    parts.setdefault((i, n), []).append(pool.submit(run_row, job).result())
    rows: list[Row] = []
    maps: dict[int, Path] = {}
    first_i = next((i for i, (spec, _) in enumerate(planned) if spec.kind == "model"), None)
    lead: dict[int, Row] = {}
    for i, (spec, _) in enumerate(planned):
        for n in cfg.batches:
            row = merge_rounds(parts[(i, n)])
            art = (
                Path(spec.options["onnx"])
                if spec.kind == "backbone" and "onnx" in spec.options
                else spec.path
            )
            row.artifact = str(art)
            row.artifact_mb = round(_size_mb(art) + row.artifact_mb, 2)  # + a .rpol's backbone
            scratch = cfg.work_dir / f"maps_{i}_{n}.npz"
            if (i, n) in evaluated and row.available and scratch.is_file():
                maps[len(rows)] = scratch
            else:
                scratch.unlink(missing_ok=True)
            if i == first_i:
                lead[n] = row
            rows.append(row)
    _derive(rows, maps, lead)
    return rows


def _derive(rows: list[Row], maps: dict[int, Path], lead: dict[int, Row] | None = None) -> None:
    """Speed-up over the reference and over the first spec's row (``lead``: batch -> it), overhead
    over the bare backbone of the same runtime (same batch, p50 totals and p50 inference), and
    parity of every evaluated row with the reference."""
    from rpol_edge.evaluate.compare import agreement
    from rpol_edge.runtimes import Output

    def find(kind: str, runtime: str | None, batch: int) -> Row | None:
        for r in rows:
            if (
                r.kind == kind
                and r.available
                and r.batch == batch
                and (runtime is None or r.runtime == runtime)
            ):
                return r
        return None

    ref_maps: Output | None = None
    ref = next((i for i, r in enumerate(rows) if r.kind == "reference" and i in maps), None)
    if ref is not None:
        with np.load(str(maps[ref])) as z:
            ref_maps = Output(z["score"], z["mask"])
    for i, r in enumerate(rows):
        if not r.available:
            continue
        base = find("reference", None, r.batch)
        if base is not None:
            r.speedup_vs_reference = paired_speedup(base, r)[0]
        first = (lead or {}).get(r.batch)
        if first is not None and first.available and r.kind == "model" and first is not r:
            r.speedup_vs_first, r.speedup_vs_first_range = paired_speedup(first, r)
        floor = find("backbone", r.runtime, r.batch)
        if floor is not None and r.kind != "backbone":
            r.overhead_vs_backbone = round(r.ms["infer"]["p50"] / floor.ms["infer"]["p50"], 3)
        if i in maps and ref_maps is not None:
            with np.load(str(maps[i])) as z:
                a = agreement(ref_maps, Output(z["score"], z["mask"]))
            r.parity = {
                "max_abs_score": round(a.max_abs_map, 6),
                "boxes_identical": a.boxes_identical,
                "boxes_iou_090": a.boxes_iou_090,
                "n": a.n,
            }
    for path in maps.values():
        path.unlink(missing_ok=True)


CPU_FLAGS = (
    "avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_fp16",
)  # fmt: skip
"""The flags that decide which CPU kernels the runtimes use (VNNI for INT8, BF16/AMX for bf16)."""


def cpu_record(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """CPU model and the kernel-relevant flags: the ranking of CPU runtimes depends on them."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return {"cpu": platform.processor()}
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return {"cpu": model, "cpu_flags": [f for f in CPU_FLAGS if f in flags]}


def machine_record(with_torch: bool = True) -> dict[str, Any]:
    """What the numbers were measured on (CPU, cores, GPU, versions). ``with_torch=False`` when no
    row ran on torch: importing it only to read its version would defeat a torch-free deployment."""
    rec: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        **cpu_record(),
    }
    try:
        if not with_torch:
            raise ImportError
        import torch

        rec["torch"] = torch.__version__
        if torch.cuda.is_available():
            rec["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import onnxruntime

        rec["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        import openvino

        rec["openvino"] = openvino.__version__.split("-")[0]
    except ImportError:
        pass
    return rec
