"""Which ONNX Runtime INT8 recipe for the CPU: each choice measured against the FP32 graph.

    python -m benchmarks.fidelity.int8_search --model m.rpol --root ../shared/data/raccoon \
        --out benchmarks/results/int8_search.json

For every variant (a `Recipe`): quantize (calibrated on the train split), then on the test split
MaxBoxAccV2 (both protocols), mean/max |d score| against FP32 and boxes identical / IoU >= 0.9; and
batch-1 latency, each variant timed in its own fresh process (ORT timed next to torch threads runs
slower), ``--repeats`` rounds interleaved over the variants, median of the per-process medians.
The machine is shared, so latencies are noisy: read the speedups, not the milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.launch import REPO, module_command, repo_env
from rpol_edge.bench.runner import cpu_record
from rpol_edge.core.files import file_sha256, write_text_atomic
from rpol_edge.exporters.int8 import CPU_RECIPE, Recipe

BASE = Recipe()
"""The recipe before this search (QDQ, per-channel, U8S8, MinMax, every backbone Conv)."""

CLIP_ADD = ("Conv", "Clip", "Add")
VARIANTS: dict[str, Recipe] = {
    "before: QDQ U8S8 per-ch MinMax Conv": BASE,
    "per-tensor weights": replace(BASE, per_channel=False),
    "reduce_range": replace(BASE, reduce_range=True),
    "S8S8 symmetric act.": replace(BASE, activation="s8", symmetric_activations=True),
    "QOperator format": replace(BASE, format="qoperator"),
    # The histogram calibrators hold every activation of every image in memory (about 230 MB per
    # 448 image here): 16 images, against MinMax on the same 16.
    "MinMax 16 images": replace(BASE, count=16),
    "Entropy 16 images": replace(BASE, calibration="entropy", count=16),
    "Percentile 16 images": replace(BASE, calibration="percentile", count=16),
    "last conv FP32": replace(BASE, keep_float=("last_conv",)),
    "stem FP32": replace(BASE, keep_float=("stem",)),
    "depthwise FP32": replace(BASE, keep_float=("depthwise",)),
    "+Clip": replace(BASE, ops=("Conv", "Clip")),
    "+Clip+Add": replace(BASE, ops=CLIP_ADD),
    "+Clip+Add last conv FP32": replace(BASE, ops=CLIP_ADD, keep_float=("last_conv",)),
    "+Clip+Add last conv+stem FP32": replace(BASE, ops=CLIP_ADD, keep_float=("last_conv", "stem")),
}
"""Single changes from BASE, then combinations; the one equal to CPU_RECIPE is marked in the table."""


def time_one(path: Path, iters: int, warmup: int, image: Path) -> dict[str, float]:
    """Batch-1 latency of one ONNX file in this (fresh) process, through the package's runtime."""
    from rpol_edge.core.geometry import resize_crop
    from rpol_edge.data.images import load_rgb
    from rpol_edge.runtimes.ort_runtime import OrtRuntime

    rt = OrtRuntime(path)
    frame, _ = resize_crop(load_rgb(image), rt.meta.resize_size, rt.meta.input_size)
    x = frame[None]
    times = []
    with rt:
        for _ in range(warmup):
            rt.infer(x)
        for _ in range(iters):
            t0 = time.perf_counter()
            rt.infer(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return {"p50": float(np.median(times)), "p95": float(np.percentile(times, 95))}


def accuracy(path: Path, fp32: Any, root: Path) -> tuple[dict[str, Any], Any]:
    from rpol_edge.evaluate.compare import agreement, dataset_frames
    from rpol_edge.evaluate.evaluation import evaluate
    from rpol_edge.runtimes import infer_all
    from rpol_edge.runtimes.ort_runtime import OrtRuntime

    with OrtRuntime(path) as rt:
        metrics = evaluate(rt, "voc", root, "test", workers=0).metrics
        out = infer_all(rt, dataset_frames(rt.meta, "voc", root, "test", workers=0))
    row = {
        "maxboxacc": metrics["maxboxacc"],
        "maxboxacc_v2": metrics["maxboxacc_v2"],
        "maxboxacc_v2_rpol": metrics["maxboxacc_v2_rpol"],
    }
    if fp32 is not None:
        a = agreement(fp32, out)
        row.update(
            mean_abs_d=a.mean_abs_map, max_abs_d=a.max_abs_map, boxes_identical=a.boxes_identical,
            boxes_iou_090=a.boxes_iou_090, n=a.n,
        )  # fmt: skip
    return row, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="fitted .rpol (448, raccoon train)")
    p.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "raccoon")
    p.add_argument("--work", type=Path, default=Path("int8_search_work"), help="quantized files (kept)")
    p.add_argument("--out", type=Path, default=None, help="JSON record")
    p.add_argument("--only", default="", help="variant names separated by ; (default: all)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--time-one", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--image", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.time_one is not None:
        print(json.dumps(time_one(args.time_one, args.iters, args.warmup, args.image)))
        return
    if args.model is None:
        p.error("--model is required")

    from rpol_edge.exporters.onnx_export import export_onnx

    args.work.mkdir(parents=True, exist_ok=True)
    fp32 = args.work / "model.onnx"
    if not fp32.is_file():
        export_onnx(args.model, fp32, batch=(1, 1, 1))
    names = [n for n in VARIANTS if not args.only or n in args.only.split(";")]
    files, seconds = quantize_variants(names, fp32, args.work, args.root)
    rows = accuracy_rows(names, files, seconds, args.work, args.root)
    if args.repeats < 1:  # accuracy only
        print(json.dumps(rows, indent=1))
        return
    time_variants(rows, files, args)
    print_table(rows)
    if args.out:
        record = {
            "command": " ".join(sys.argv),
            "machine": cpu_record()["cpu"] or platform.machine(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "loadavg_1m": os.getloadavg()[0],
            "repeats": args.repeats,
            "iters": args.iters,
            "rows": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, json.dumps(record, indent=1))


def quantize_variants(
    names: list[str], fp32: Path, work: Path, root: Path
) -> tuple[dict[str, Path], dict[str, float]]:
    """Each variant's INT8 file in ``work`` (kept, and reused while its recipe is unchanged), and the
    seconds of the quantizations done now."""
    from rpol_edge.exporters.int8 import quantize_int8

    files: dict[str, Path] = {"FP32": fp32}
    seconds: dict[str, float] = {}
    for i, name in enumerate(names):
        path = work / f"v{i:02d}.int8.onnx"
        recipe_file = path.with_suffix(".json")
        recipe = VARIANTS[name]
        if not (path.is_file() and recipe_file.is_file() and recipe_file.read_text() == recipe.to_json()):
            t0 = time.perf_counter()
            quantize_int8(fp32, path, "voc", root, "train", recipe=recipe)
            seconds[name] = time.perf_counter() - t0
            write_text_atomic(recipe_file, recipe.to_json())
        files[name] = path
        print(f"quantized {name} -> {path}", file=sys.stderr)
    return files, seconds


def accuracy_rows(
    names: list[str], files: dict[str, Path], seconds: dict[str, float], work: Path, root: Path
) -> dict[str, dict[str, Any]]:
    """Accuracy and parity with FP32 per variant, cached in ``work`` by each file's sha256."""
    rows: dict[str, dict[str, Any]] = {}
    cache = work / "accuracy.json"  # per-file accuracy rows, keyed by the file's sha256
    known: dict[str, dict[str, Any]] = json.loads(cache.read_text()) if cache.is_file() else {}
    digests = {name: file_sha256(path) for name, path in files.items()}
    ref_out = None
    if any(digests[n] not in known for n in files):
        known[digests["FP32"]], ref_out = accuracy(files["FP32"], None, root)
    rows["FP32"] = dict(known[digests["FP32"]])
    for name in names:
        if digests[name] not in known:
            known[digests[name]], _ = accuracy(files[name], ref_out, root)
            write_text_atomic(cache, json.dumps(known, indent=1))
        rows[name] = dict(known[digests[name]])
        rows[name]["recipe"] = asdict(VARIANTS[name])
        rows[name]["chosen"] = VARIANTS[name] == CPU_RECIPE
        if name in seconds:
            rows[name]["quantize_s"] = round(seconds[name], 1)
        print(f"evaluated {name}", file=sys.stderr)
    return rows


def time_variants(rows: dict[str, dict[str, Any]], files: dict[str, Path], args: argparse.Namespace) -> None:
    """p50 ms per variant, each timing its own process, rounds interleaved; the speed-up over FP32."""
    image = sorted((args.root / "JPEGImages").glob("*.jpg"))[0]
    runs: dict[str, list[float]] = {n: [] for n in files}
    for _ in range(args.repeats):
        for name, path in files.items():  # interleaved: a noisy minute hits every variant alike
            cmd = module_command(
                "benchmarks.fidelity.int8_search", "--time-one", str(path), "--image", str(image)
            )
            cmd += ["--iters", str(args.iters), "--warmup", str(args.warmup)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=repo_env())
            runs[name].append(json.loads(res.stdout.strip().splitlines()[-1])["p50"])
    for name, ms in runs.items():
        rows[name]["ms_p50_runs"] = [round(m, 2) for m in ms]
        rows[name]["ms_p50"] = round(statistics.median(ms), 2)
    base_ms = rows["FP32"]["ms_p50"]
    for row in rows.values():
        row["speedup"] = round(base_ms / row["ms_p50"], 2)


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    print(f"{'variant':42s} {'ms':>6s} {'x FP32':>6s} {'V2':>6s} {'V2rpol':>6s} {'|d|':>6s} =box  .9")
    for name, r in rows.items():
        print(
            f"{name:42s} {r['ms_p50']:6.2f} {r['speedup']:6.2f} {r['maxboxacc_v2']:6.2f} "
            f"{r['maxboxacc_v2_rpol']:6.2f} {r.get('mean_abs_d', 0.0):6.4f} "
            f"{r.get('boxes_identical', 40):4d} {r.get('boxes_iou_090', 40):4d}"
            + ("  <- CPU_RECIPE" if r.get("chosen") else "")
        )


if __name__ == "__main__":
    main()
