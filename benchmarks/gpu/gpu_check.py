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
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.gpu import gpu_sections as sec
from benchmarks.gpu.gpu_child import child
from benchmarks.gpu.gpu_configs import CONFIGS
from benchmarks.gpu.gpu_record import Check
from rpol_edge.bench.stats import interleaved


def parser() -> argparse.ArgumentParser:
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
    return ap


def main() -> None:
    ap = parser()
    args = ap.parse_args()
    if args.child:
        job = json.loads(args.child)
        Path(job["result"]).write_text(json.dumps(child(job), default=str))
        return
    if args.root is None or args.out is None:
        ap.error("--root and --out are required")
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown --configs {unknown}: choose from {list(CONFIGS)}")
    check = Check(args.out, args.budget_s)
    check.rec["argv"] = sys.argv[1:]
    check.rec["configs"] = {n: CONFIGS[n] for n in names}
    run = sec.GpuRun(args, names, min(8, os.cpu_count() or 1), check.rec)
    check.section("env", lambda: sec.env_info(args.device))
    model_path = check.section("model", lambda: sec.model_section(args, run.workers))
    if model_path is None:
        return
    run.model_file = Path(model_path)
    run.scratch = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    if check.section("frames", lambda: sec.frames_section(run)) is None:
        return
    check.section("cpu_fp32_reference", lambda: sec.reference(run))
    for name in names:
        check.section(f"outputs {name}", partial(sec.outputs_section, run, name), need_s=15)
    timings(check, run)
    check.section("parity", lambda: sec.parity(run))
    check.section("speedup", lambda: sec.speedup(run))
    if args.device.startswith("cuda"):
        check.section("profile", lambda: sec.profiles(run), need_s=30)
    check.section("accuracy", lambda: sec.accuracy(run), need_s=30)
    if args.live_frames > 0:
        check.section("live", lambda: sec.live(run), need_s=40)
    print(json.dumps(summary(check.rec), indent=1))


def timings(check: Check, run: sec.GpuRun) -> None:
    """``--rounds`` rounds of bench rows, configurations interleaved, one section per row."""
    from rpol_edge.data import read_dataset

    args = run.args
    photos = [x.path for x in read_dataset("voc", args.root, "test")][: args.limit]
    for r in range(max(1, args.rounds)):
        for name in interleaved(run.names, r):
            check.section(f"{name}#{r + 1}", partial(sec.timing, run, photos, name, r), need_s=15)


def summary(rec: dict[str, Any]) -> dict[str, Any]:
    """What is printed at the end: the sections, errors, parity and the batch-1 speed-ups."""
    out = {k: rec.get(k) for k in ("env", "sections", "errors", "parity")}
    out["speedup_batch1"] = {
        k: {x: v[x] for x in ("speedup", "range") if x in v}
        for k, v in (rec.get("speedup") or {}).items()
        if k.endswith("batch1")
    }
    return out


if __name__ == "__main__":
    main()
