"""Fidelity of every CPU variant against the FP32 graph on ONNX Runtime: the bar a variant must meet
before it may be a default (MaxBoxAccV2, both protocols, within 2 points; mean |d score| <= 0.02;
>= 75 % of boxes at IoU >= 0.9), on the test split and confirmed on the train split.

Variants: ORT INT8 (the CPU recipe), OpenVINO f32 and bf16 on the FP32 graph, OpenVINO on the QDQ
INT8 graph. Fidelity is about outputs, not time, so all run in this one process.

Usage:
    python -m benchmarks.fidelity.openvino_fidelity --exp EXPORT_DIR --root DATA/raccoon \\
        --out benchmarks/results/openvino_fidelity.json
(EXPORT_DIR from `rpol-edge export m.rpol --onnx --int8 --calib-data voc --calib-root DATA/raccoon`.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rpol_edge.bench.runner import machine_record
from rpol_edge.core.files import write_text_atomic
from rpol_edge.evaluate.compare import agreement, dataset_frames
from rpol_edge.evaluate.evaluation import evaluate
from rpol_edge.runtimes import infer_all, open_runtime

BAR = {"maxboxacc_points": 2.0, "mean_abs_score": 0.02, "boxes_iou_090_share": 0.75}
KEYS = ("maxboxacc_v2", "maxboxacc_v2_rpol", "gt_known_loc")


def variants(exp: Path) -> dict[str, tuple[Path, str, dict[str, Any]]]:
    return {
        "ort_fp32": (exp / "model.onnx", "ort", {}),
        "ort_int8": (exp / "model.int8.onnx", "ort", {}),
        "openvino_f32": (exp / "model.onnx", "openvino", {"precision": "f32"}),
        "openvino_bf16": (exp / "model.onnx", "openvino", {"precision": "bf16"}),
        "openvino_int8": (exp / "model.int8.onnx", "openvino", {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exp", type=Path, required=True)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rec: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_record(with_torch=False),
        "bar": BAR,
        "splits": {},
    }
    for split in ("test", "train"):
        res: dict[str, Any] = {}
        base = None
        for name, (path, runtime, opts) in variants(args.exp).items():
            with open_runtime(path, runtime, device="cpu", threads=args.threads, **opts) as rt:
                frames = dataset_frames(rt.meta, "voc", args.root, split)
                out = infer_all(rt, frames)
                metrics = evaluate(rt, "voc", args.root, split, workers=2).metrics
                row: dict[str, Any] = {
                    "runtime": rt.description,
                    **{k: round(float(metrics[k]), 2) for k in KEYS},
                }
            if base is None:
                base, base_metrics = out, row
            a = agreement(base, out)
            row.update(mean_abs_score=round(a.mean_abs_map, 5), max_abs_score=round(a.max_abs_map, 5),
                       boxes_iou_090=a.boxes_iou_090, boxes_identical=a.boxes_identical, n=a.n)  # fmt: skip
            gap = max(abs(row[k] - base_metrics[k]) for k in ("maxboxacc_v2", "maxboxacc_v2_rpol"))
            row["meets_bar"] = bool(
                gap <= BAR["maxboxacc_points"]
                and a.mean_abs_map <= BAR["mean_abs_score"]
                and a.boxes_iou_090 >= BAR["boxes_iou_090_share"] * a.n
            )
            res[name] = row
            print(split, name, row, flush=True)
        rec["splits"][split] = res
    write_text_atomic(args.out, json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
