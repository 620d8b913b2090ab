"""refit (an exported model's own runtime, no PyTorch) against `rpol-edge fit` (PyTorch eager).

1. Parity on raccoon train: a model fitted on raccoon *test* is exported (FP32 ONNX, INT8 QDQ
   ONNX, OpenVINO IR) and refitted on raccoon train; tau and w* are compared with `fit` on raccoon
   train, and every refitted model is evaluated on raccoon test beside the fit's own export.
   The INT8 model is refitted twice: sums from its INT8 backbone, and from the FP32 graph
   (``--features-from``).
2. Speed and memory: `fit` and `refit` on the same 160 photos, each command in its own process,
   rounds interleaved; wall time of the whole process and its peak RSS (VmHWM).
3. A fixed camera: the raccoon model refitted on caviar-lobby train (time order), evaluated on
   caviar-lobby test, beside the raccoon model as it was and `fit` on the same frames.

Every command is the CLI's. Usage (about 10 minutes on 2 CPU cores):
    python -m benchmarks.product.refit --raccoon ../shared/data/raccoon --caviar ../shared/data/caviar-lobby \
        --out benchmarks/results/refit.json [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.peak_memory import AT_EXIT, reported_peak_mb
from rpol_edge.bench.runner import machine_record
from rpol_edge.core.files import write_text_atomic

RUNNER = (
    AT_EXIT
    + """
import sys, time
def _job():
    sys.stderr.write("JOB_S %.3f\\n" % (time.perf_counter() - t0))
_atexit.register(_job)
from rpol_edge.cli.app import main
t0 = time.perf_counter()
sys.argv = ["rpol-edge", *sys.argv[1:]]
main()
"""
)
"""`rpol-edge ARGS` in a fresh interpreter that reports, at exit, its peak resident set (VmHWM) and
the seconds after Python and the CLI app were loaded (the command itself, its own imports - torch
for `fit`, onnx / onnxruntime / openvino for `refit` - included)."""


def cli(*args: object) -> dict[str, Any]:
    """One command in its own process: wall seconds, peak RSS (MB), load average before it."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", RUNNER, *map(str, args)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"rpol-edge {' '.join(map(str, args))} failed:\n{res.stderr[-2000:]}")
    job = [float(ln.split()[1]) for ln in res.stderr.splitlines() if ln.startswith("JOB_S")]
    return {
        "wall_s": round(wall, 2),
        "command_s": round(job[-1], 2),
        "peak_rss_mb": reported_peak_mb(res.stderr),
        "load1_before": load,
    }


def meta_and_w(path: Path) -> tuple[Any, np.ndarray]:
    """The record and w* of a .rpol, .onnx or .xml."""
    if path.suffix == ".rpol":
        from rpol_edge.core.artifact import ModelArtifact

        a = ModelArtifact.load(path)
        return a.meta, a.w
    if path.suffix == ".xml":
        import openvino as ov

        from rpol_edge.core.ir_meta import ir_meta
        from rpol_edge.refitting.ov_graph import head_weight as ov_head

        model = ov.Core().read_model(str(path))
        meta = ir_meta(model, path)
        return meta, ov_head(model, meta, str(path))
    import onnx

    from rpol_edge.core.onnx_meta import read_onnx_meta
    from rpol_edge.refitting.onnx_graph import head_weight

    meta = read_onnx_meta(path)
    return meta, head_weight(onnx.load(str(path)), meta, str(path))


def compare(path: Path, ref: Path) -> dict[str, float]:
    m, w = meta_and_w(path)
    r, wr = meta_and_w(ref)
    w, wr = np.ravel(w).astype(np.float64), np.ravel(wr).astype(np.float64)
    return {
        "tau": m.tau,
        "tau_fit": r.tau,
        "tau_rel_diff": abs(m.tau - r.tau) / r.tau,
        "cosine_w": float(w @ wr / np.linalg.norm(w) / np.linalg.norm(wr)),
        "n_images": m.n_images,
    }


def evaluate(model: Path, root: Path, out: Path, runtime: str = "auto") -> dict[str, Any]:
    cli(
        "eval", model, "--data", "voc", "--root", root, "--split", "test", "--runtime", runtime, "--json", out
    )
    got = json.loads(out.read_text())
    return {k: got[k] for k in ("n_images", "gt_known_loc", "maxboxacc_v2", "operating_point") if k in got}


def prepare_models(d: Path, raccoon: Path, rac: list[Any]) -> None:
    """The models: fit on raccoon train (the reference) and on raccoon test (the start), exported."""
    cli("fit", *rac, "--split", "train", "-o", d / "fit_train.rpol")
    cli("fit", *rac, "--split", "test", "-o", d / "start.rpol")
    calib = ["--calib-data", "voc", "--calib-root", raccoon]
    cli("export", d / "start.rpol", "--int8", *calib, "--openvino", "--batch", "1:8:16", "-o", d / "start")
    cli("export", d / "fit_train.rpol", "--int8", *calib, "--batch", "1:8:16", "-o", d / "ref")


def parity_raccoon(d: Path, rac: list[Any]) -> dict[str, Any]:
    """Each refit of the start model on raccoon train against the fit on raccoon train."""
    refits: dict[str, tuple[Path, Path, list[Any]]] = {
        "ort_fp32": (d / "start/model.onnx", d / "r_ort.onnx", []),
        "openvino_ir_fp32": (d / "start/model.xml", d / "r_ov.xml", []),
        "ort_int8_own_sums": (d / "start/model.int8.onnx", d / "r_int8.onnx", ["--runtime", "ort"]),
        "ort_int8_fp32_sums": (
            d / "start/model.int8.onnx",
            d / "r_int8_fp32.onnx",
            ["--runtime", "ort", "--features-from", d / "start/model.onnx"],
        ),
    }
    parity: dict[str, Any] = {}
    for name, (src, dst, extra) in refits.items():
        cli("refit", src, "-o", dst, *rac, "--split", "train", *extra)
        parity[name] = compare(dst, d / "fit_train.rpol")
    return parity


def raccoon_metrics(d: Path, raccoon: Path) -> dict[str, Any]:
    return {
        "fit_fp32_onnx (reference)": evaluate(d / "ref/model.onnx", raccoon, d / "m0.json", "ort"),
        "fit_int8_onnx": evaluate(d / "ref/model.int8.onnx", raccoon, d / "m1.json", "ort"),
        "start_fp32_onnx (fit on raccoon test)": evaluate(
            d / "start/model.onnx", raccoon, d / "m2.json", "ort"
        ),
        "refit_ort_fp32": evaluate(d / "r_ort.onnx", raccoon, d / "m3.json", "ort"),
        "refit_openvino_ir_fp32": evaluate(d / "r_ov.xml", raccoon, d / "m4.json", "openvino"),
        "refit_int8_own_sums (ort)": evaluate(d / "r_int8.onnx", raccoon, d / "m5.json", "ort"),
        "refit_int8_fp32_sums (ort)": evaluate(d / "r_int8_fp32.onnx", raccoon, d / "m6.json", "ort"),
    }


def speed_jobs(d: Path, rac: list[Any]) -> dict[str, list[Any]]:
    """The timed commands: fit with torch, and each refit (ORT / OpenVINO, FP32 / INT8)."""
    train = [*rac, "--split", "train"]
    return {
        "fit_torch": ["fit", *train, "-o", d / "t.rpol"],
        "refit_ort_fp32": ["refit", d / "start/model.onnx", "-o", d / "t1.onnx", *train],
        "refit_openvino_fp32_ir": ["refit", d / "start/model.xml", "-o", d / "t2.xml", *train],
        "refit_openvino_int8": [
            "refit",
            d / "start/model.int8.onnx",
            "-o",
            d / "t3.onnx",
            *train,
            "--runtime",
            "openvino",
        ],  # fmt: skip
        "refit_ort_int8": [
            "refit",
            d / "start/model.int8.onnx",
            "-o",
            d / "t4.onnx",
            *train,
            "--runtime",
            "ort",
        ],
    }


def speed_summary(speed: dict[str, list[dict[str, Any]]], images: int = 160) -> dict[str, dict[str, Any]]:
    """Per command: best images/s (wall and command), peak RSS, and the speed-ups over fit."""
    summary = {}
    for name, runs in speed.items():
        best = min(r["wall_s"] for r in runs)
        summary[name] = {
            "wall_s_runs": [r["wall_s"] for r in runs],
            "command_s_runs": [r["command_s"] for r in runs],
            "images_per_s_best": round(images / best, 2),
            "images_per_s_command_best": round(images / min(r["command_s"] for r in runs), 2),
            "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
            "load1_before_runs": [round(r["load1_before"], 2) for r in runs],
        }
    fit_best = summary["fit_torch"]["images_per_s_best"]
    fit_cmd = summary["fit_torch"]["images_per_s_command_best"]
    for name in summary:
        summary[name]["speedup_vs_fit"] = round(summary[name]["images_per_s_best"] / fit_best, 2)
        summary[name]["speedup_vs_fit_command"] = round(
            summary[name]["images_per_s_command_best"] / fit_cmd, 2
        )
    return summary


def caviar_lobby(d: Path, caviar: Path) -> dict[str, Any]:
    """The raccoon model refitted on the lobby camera's train frames, against a fit there."""
    cav = ["--data", "voc", "--root", caviar]
    cli("refit", d / "ref/model.onnx", "-o", d / "lobby.onnx", *cav, "--split", "train")
    cli("fit", *cav, "--split", "train", "-o", d / "lobby_fit.rpol")
    return {
        "refit_vs_fit_on_train": compare(d / "lobby.onnx", d / "lobby_fit.rpol"),
        "test_metrics": {
            "raccoon_model_as_is (ort)": evaluate(d / "ref/model.onnx", caviar, d / "c0.json", "ort"),
            "refit_on_lobby_train (ort)": evaluate(d / "lobby.onnx", caviar, d / "c1.json", "ort"),
            "fit_on_lobby_train (torch)": evaluate(d / "lobby_fit.rpol", caviar, d / "c2.json", "torch"),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--raccoon", type=Path, required=True)
    ap.add_argument("--caviar", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rac: list[Any] = ["--data", "voc", "--root", args.raccoon]
    record: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_record(with_torch=False),
        "command": " ".join(sys.argv),
        "input_size": 448,
        "backbone": "lite0",
    }
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        prepare_models(d, args.raccoon, rac)
        # 1. parity and raccoon-test metrics
        record["parity_raccoon_train"] = parity_raccoon(d, rac)
        record["raccoon_test_metrics"] = raccoon_metrics(d, args.raccoon)
        # 2. speed and memory, interleaved rounds, each command its own process
        jobs = speed_jobs(d, rac)
        speed: dict[str, list[dict[str, Any]]] = {k: [] for k in jobs}
        for _ in range(args.rounds):
            for name, cmd in jobs.items():
                speed[name].append(cli(*cmd) | {"images": 160})
        record["speed_raccoon_train_160"] = speed_summary(speed)
        # 3. caviar-lobby: the raccoon model refitted on the lobby camera's train frames
        record["caviar_lobby"] = caviar_lobby(d, args.caviar)
    record["load1_end"] = os.getloadavg()[0]
    write_text_atomic(args.out, json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
