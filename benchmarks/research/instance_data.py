"""The instance study's data: the three sets (photos, scale-shifted and multi-object canvases) per
fold, their backbone features (cached), and w* fitted without labels."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.research.multi_object import build_folds
from benchmarks.research.operating_point_stats import folds
from benchmarks.research.scale_shift import build_canvases
from rpol_edge.backbones.timm_backbone import BackboneSpec, build_backbone
from rpol_edge.core.geometry import resize_crop
from rpol_edge.core.wstar import FeatureSums, solve
from rpol_edge.data import read_dataset
from rpol_edge.data.images import load_rgb
from rpol_edge.modeling.localizer import Localizer

SETS = ("photos", "shifted", "multi")


@dataclass
class Data:
    feats: np.ndarray  # (N, C, h, w) float16
    boxes: list[np.ndarray]  # network-frame GT
    fold: np.ndarray  # (N,) fold of each image
    area: list[np.ndarray]  # per GT box: share of the crop


def frames_for(
    items: list[tuple[np.ndarray, np.ndarray]], k: int, s: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    frames, boxes = [], []
    for image, b in items:
        frame, t = resize_crop(image, s, k)
        frames.append(frame)
        boxes.append(t.boxes_to_input(b))
    return np.stack(frames), boxes


def load_sets(root: Path, k: int, seed: int, n_folds: int, per_fold: int) -> dict[str, Any]:
    samples = read_dataset("voc", root, "train") + read_dataset("voc", root, "test")
    fold_of = np.zeros(len(samples), np.int64)
    for f, idx in enumerate(folds(len(samples), n_folds, seed)):
        fold_of[idx] = f
    photos = [(load_rgb(x.path), np.asarray(x.boxes)) for x in samples]
    shifted = [(c.image, c.boxes) for c in build_canvases(samples, seed)]
    multi_folds = build_folds(samples, n_folds, per_fold, seed)
    multi = [(c.image, c.boxes) for fold in multi_folds for c in fold]
    multi_fold = np.array([f for f, fold in enumerate(multi_folds) for _ in fold])
    return {
        "photos": (photos, fold_of),
        "shifted": (shifted, fold_of),
        "multi": (multi, multi_fold),
        "names": [x.image_id for x in samples],
    }


def extract(module: torch.nn.Module, mean: Any, std: Any, k: int, frames: np.ndarray) -> np.ndarray:
    loc = Localizer(module, torch.zeros(1, 8), mean, std, k, 0.5)
    out = []
    with torch.inference_mode():
        for i in range(0, len(frames), 8):
            out.append(loc.features(torch.from_numpy(frames[i : i + 8])).float().numpy().astype(np.float16))
    return np.concatenate(out)


def set_lite_stride16(model: torch.nn.Module, dilated: bool) -> None:
    blocks: Any = model.blocks  # timm's EfficientNet: a Sequential of stages
    blocks[5][0].conv_dw.stride = (1, 1)
    if not dilated:
        return
    for block in [*list(blocks[5])[1:], *list(blocks[6])]:
        conv = block.conv_dw
        conv.dilation = (2, 2)
        conv.padding = tuple(2 * (k - 1) // 2 for k in conv.kernel_size)


def build_data(
    raw_sets: dict[str, Any], k: int, stride16: str, cache: Path | None, seed: int
) -> dict[str, Data]:
    s = int(round(k * 480 / 448))
    bb = build_backbone(BackboneSpec("lite0", "", 32), k)
    if stride16:
        # EfficientNet-Lite0's last stride-2 depthwise conv (stage 5) at stride 1: output stride 16,
        # the pretrained weights unchanged: "plain" as the ResNet recipe (no dilation), "dilated"
        # with the later depthwise convs dilated by 2 so their receptive fields stay the trained ones.
        set_lite_stride16(bb.module.model, dilated=stride16 == "dilated")
    out: dict[str, Data] = {}
    for name in SETS:
        items, fold = raw_sets[name]
        frames, boxes = frames_for(items, k, s)
        names = ",".join(raw_sets["names"])
        key = f"{name}|lite0|{bb.weights_sha256}|{k}|{s}|{stride16}|{seed}|{len(items)}|{names}"
        path = cache / f"feats_{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy" if cache else None
        if path is not None and path.is_file():
            feats = np.load(path)
        else:
            t0 = time.time()
            feats = extract(bb.module, bb.mean, bb.std, k, frames)
            print(
                f"  features {name} {k} stride16={stride16}: {feats.shape} in {time.time() - t0:.0f} s",
                flush=True,
            )
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, feats)
        area = [((b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)) / (k * k) for b in boxes]
        out[name] = Data(feats, boxes, np.asarray(fold), area)
    return out


def fit_w(feats: np.ndarray) -> np.ndarray:
    f = feats.astype(np.float64)
    n = np.linalg.norm(f, axis=1, keepdims=True)
    v = f.mean(axis=(2, 3))
    u = (f / np.maximum(n, 1e-12)).mean(axis=(2, 3))
    w, _ = solve(FeatureSums(v.sum(0, keepdims=True), u.sum(0, keepdims=True), np.array([len(f)])))
    return np.asarray(w, np.float64).reshape(-1)


def responses(feats: np.ndarray, w: np.ndarray) -> np.ndarray:
    f = feats.astype(np.float32)
    a = np.einsum("nchw,c->nhw", f, w.astype(np.float32))
    return (a / np.maximum(np.linalg.norm(f, axis=1), 1e-12)).astype(np.float64)
